using Daxfs.Branching.Format;
using Daxfs.Branching.Index;

namespace Daxfs.Branching;

public sealed partial class Branch
{
    private T Change<T>(Func<View, T> change) => Store.Locked(() =>
    {
        Store.CheckWritable(State);
        return change(State.View);
    });

    private void Change(Action<View> change) => Change(v => { change(v); return 0; });

    private View Emit(RecordKind kind, int bodyLength, Store.BodyWriter write, string path)
        => Store.Emit(State, kind, bodyLength, write, path);

    /// <summary>The directory and name of <paramref name="path"/>, which must not exist yet (EEXIST; ENOTDIR for a parent that is not a directory).</summary>
    private static (long Parent, string Name) FreshName(View v, string path)
    {
        var (parent, name) = ResolveParent(v, path);
        if (v.KindOf(parent) != NodeKind.Directory)
            ThrowHelper.IO(FileSystemError.NotADirectory, path);
        if (v.Lookup(parent, name) != 0)
            ThrowHelper.IO(FileSystemError.Exists, path);
        return (parent, name);
    }

    private View CreateNode(View v, string path, RecordKind kind, uint mode, string target)
    {
        var (parent, name) = FreshName(v, path);
        long ino = v.NextIno;
        var parentInfo = v.Info(parent);
        uint uid = 0, gid = parentInfo.Gid;
        var acls = InheritAcls(v, parent, kind switch { RecordKind.Mkdir => NodeKind.Directory, RecordKind.Symlink => NodeKind.Symlink, _ => NodeKind.File }, ref mode, 0);
        int len = RecordCodec.EncodeCreate(default, parent, ino, mode, uid, gid, name, target);
        return EmitAcls(Emit(kind, len, b => RecordCodec.EncodeCreate(b, parent, ino, mode, uid, gid, name, target), path), ino, acls);
    }

    /// <summary>Creates an empty regular file (mode default 0644).</summary>
    public void CreateFile(string path, uint mode = 0x1A4) => Change(v => CreateNode(v, path, RecordKind.CreateFile, mode, ""));

    /// <summary>Creates a directory (mode default 0755); with <paramref name="parents"/>, missing parents too and no error if it exists.</summary>
    public void CreateDirectory(string path, uint mode = 0x1ED, bool parents = false) => Change(v =>
    {
        if (!parents)
        {
            CreateNode(v, path, RecordKind.Mkdir, mode, "");
            return;
        }
        var parts = Names.Split(path);
        string prefix = "";
        foreach (var part in parts)
        {
            prefix += "/" + part;
            long ino;
            try { ino = Resolve(v, prefix); }
            catch (DaxfsIOException ex) when (ex.Error == FileSystemError.NotFound) { ino = 0; }
            if (ino == 0)
                v = CreateNode(v, prefix, RecordKind.Mkdir, mode, "");
            else if (v.KindOf(ino) != NodeKind.Directory)
                ThrowHelper.IO(FileSystemError.NotADirectory, prefix);
        }
    });

    /// <summary>
    /// Creates a FIFO, socket or device node at <paramref name="path"/> (format version 3 regions): the branch holds
    /// its name, owner, mode and, for a device, its number (<paramref name="device"/>, as the C library's dev_t
    /// encodes it); the kernel serves it where the branch is mounted or exported.
    /// </summary>
    public void CreateSpecialFile(string path, NodeKind kind, uint mode = 0x1A4, long device = 0)
    {
        if (!View.IsSpecial(kind))
            throw new ArgumentException($"{kind} is not a FIFO, socket or device node", nameof(kind));
        if (!Store.WritesVersion3)
            ThrowHelper.IO(FileSystemError.InvalidArgument, path, "FIFOs, sockets and device nodes need a region of format version 3 (this one is version 2)");
        Change(v =>
        {
            var (parent, name) = FreshName(v, path);
            long ino = v.NextIno;
            uint typed = ModeBits.Of(kind) | (mode & ModeBits.PermMask), gid = v.Info(parent).Gid;
            long dev = View.IsDevice(kind) ? device : 0;
            int len = RecordCodec.EncodeMknod(default, parent, ino, typed, 0, gid, name, dev);
            Emit(RecordKind.Mknod, len, b => RecordCodec.EncodeMknod(b, parent, ino, typed, 0, gid, name, dev), path);
        });
    }

    /// <summary>
    /// Gives the file (or symlink, FIFO, socket or device node) at <paramref name="existing"/> a second name,
    /// <paramref name="path"/>: a hard link. Both names are one inode: a change through one shows through the
    /// other, and removing one keeps the other. Directories cannot be linked. Format version 3 regions.
    /// </summary>
    public void CreateHardLink(string existing, string path)
    {
        ArgumentNullException.ThrowIfNull(existing);
        if (!Store.WritesVersion3)
            ThrowHelper.IO(FileSystemError.NotPermitted, path, "hard links need a region of format version 3 (this one is version 2)");
        Change(v =>
        {
            long ino = Resolve(v, existing);
            var (parent, name) = ResolveParent(v, path);
            if (v.KindOf(parent) != NodeKind.Directory)
                ThrowHelper.IO(FileSystemError.NotADirectory, path);
            int len = RecordCodec.EncodeLink(default, parent, ino, name);
            Emit(RecordKind.Link, len, b => RecordCodec.EncodeLink(b, parent, ino, name), path);
        });
    }

    /// <summary>The extended attributes of <paramref name="path"/> (user.*, trusted.*, security.*, and POSIX ACLs as system.posix_acl_*).</summary>
    public IReadOnlyDictionary<string, byte[]> GetExtendedAttributes(string path)
    {
        var v = ReadView();
        return v.Xattrs(Resolve(v, path));
    }

    /// <summary>Sets extended attribute <paramref name="name"/> of <paramref name="path"/> (format version 3 regions; a value of at most 64 KiB).</summary>
    public void SetExtendedAttribute(string path, string name, ReadOnlySpan<byte> value)
    {
        var v = ReadView();
        SetXattr(Resolve(v, path), name, value, 0);
    }

    /// <summary>Removes extended attribute <paramref name="name"/> of <paramref name="path"/>.</summary>
    /// <exception cref="DaxfsIOException">ENODATA (<see cref="FileSystemError.NoData"/>) when it has no such attribute.</exception>
    public void RemoveExtendedAttribute(string path, string name)
    {
        var v = ReadView();
        RemoveXattr(Resolve(v, path), name);
    }

    /// <summary>Creates symbolic link <paramref name="path"/> pointing at <paramref name="target"/>.</summary>
    public void CreateSymlink(string path, string target)
    {
        ArgumentNullException.ThrowIfNull(target);
        Change(v => CreateNode(v, path, RecordKind.Symlink, 0x1FF, target));
    }

    /// <summary>
    /// Writes <paramref name="data"/> at <paramref name="offset"/> of file <paramref name="path"/>, extending it
    /// (with a hole) if the offset is past the end. With <paramref name="create"/>, a missing file is created.
    /// The bytes are copied once, into the branch's log.
    /// </summary>
    public void Write(string path, long offset, ReadOnlySpan<byte> data, bool create = true)
    {
        if (offset < 0)
            ThrowHelper.IO(FileSystemError.InvalidArgument, path, $"negative offset {offset}");
        Store.EnterChange();
        try
        {
            Store.CheckWritable(State);
            WriteCore(State.View, path, offset, data, create, append: false);
        }
        catch (Exception ex) when (Store.PoisonIfBroken(ex))
        {
            throw;
        }
        finally
        {
            Store.ExitChange(changed: true);
        }
    }

    /// <summary>Appends <paramref name="data"/> at the end of <paramref name="path"/> (created if missing).</summary>
    public void Append(string path, ReadOnlySpan<byte> data)
    {
        Store.EnterChange();
        try
        {
            Store.CheckWritable(State);
            WriteCore(State.View, path, 0, data, create: true, append: true);
        }
        catch (Exception ex) when (Store.PoisonIfBroken(ex))
        {
            throw;
        }
        finally
        {
            Store.ExitChange(changed: true);
        }
    }

    /// <summary>
    /// Replaces the whole content of the file at <paramref name="path"/> atomically within the branch: in one change
    /// (no other change, in any process, comes between its records), the data is written under a temporary name
    /// beside it (<c>.daxfs-put-</c> and a checksum of the name), given the old file's mode and owner, then renamed
    /// over it, and that rename is the commit point. A reader, a commit, another process or a crash sees the old
    /// content or the new, never part of it. A temporary left by a crash stays visible under its own name until the
    /// next replace of the same path removes it. The file gets a new inode (as with an editor's save).
    /// </summary>
    /// <exception cref="DaxfsIOException">The path names a directory or a symbolic link (only a file's content is replaced).</exception>
    public void ReplaceFile(string path, ReadOnlySpan<byte> data)
    {
        ArgumentNullException.ThrowIfNull(path);
        Store.EnterChange();
        bool tempMade = false;
        long parent = 0;
        string tempName = "";
        try
        {
            Store.CheckWritable(State);
            Store.CheckRoom(data.Length, path);
            var v = State.View;
            (parent, string name) = ResolveParent(v, path);
            if (v.KindOf(parent) != NodeKind.Directory)
                ThrowHelper.IO(FileSystemError.NotADirectory, path);
            long old = v.Lookup(parent, name);
            if (old != 0 && v.KindOf(old) != NodeKind.File)
                ThrowHelper.IO(v.KindOf(old) == NodeKind.Directory ? FileSystemError.IsADirectory : FileSystemError.InvalidArgument, path);
            tempName = $".daxfs-put-{Crc32C.Compute(System.Text.Encoding.UTF8.GetBytes(name)):x8}";
            string tempPath = (path.TrimEnd('/') is var t && t.LastIndexOf('/') is var slash && slash >= 0 ? t[..(slash + 1)] : "") + tempName;
            if (v.Lookup(parent, tempName) != 0)
            {
                // Left by a replace that crashed: no replace is under way (this one holds the lock).
                int rl = RecordCodec.EncodeRemove(default, parent, tempName);
                v = Emit(RecordKind.Remove, rl, b => RecordCodec.EncodeRemove(b, parent, tempName), tempPath);
            }
            var info = old != 0 ? v.Info(old) : default;
            v = CreateNode(v, tempPath, RecordKind.CreateFile, old != 0 ? info.Perm : 0x1A4, "");
            tempMade = true;
            WriteCore(v, tempPath, 0, data, create: false, append: false);
            v = State.View;
            if (old != 0)
            {
                long temp = v.Lookup(parent, tempName);
                v = Emit(RecordKind.SetAttr, 32, b => RecordCodec.EncodeSetAttr(b, temp, AttrMask.Uid | AttrMask.Gid, 0, info.Uid, info.Gid, 0), tempPath);
            }
            int len = RecordCodec.EncodeRename(default, parent, tempName, parent, name, RenameFlags.None);
            Emit(RecordKind.Rename, len, b => RecordCodec.EncodeRename(b, parent, tempName, parent, name, RenameFlags.None), tempPath + " -> " + path);
            tempMade = false;
        }
        catch (Exception ex) when (Store.PoisonIfBroken(ex))
        {
            throw;
        }
        catch (DaxfsException) when (tempMade)
        {
            // The region filled (or the like) part way: take the temporary back, best effort, then report.
            try
            {
                int rl = RecordCodec.EncodeRemove(default, parent, tempName);
                Emit(RecordKind.Remove, rl, b => RecordCodec.EncodeRemove(b, parent, tempName), tempName);
            }
            catch (DaxfsException)
            {
                // Left for the next replace of this path to remove.
            }
            throw;
        }
        finally
        {
            Store.ExitChange(changed: true);
        }
    }

    /// <summary>Replaces the content of <paramref name="path"/> with <paramref name="data"/> (created if missing).</summary>
    /// <remarks>Several records: a crash part way can leave part of it. <see cref="ReplaceFile"/> is all-or-nothing.</remarks>
    public void WriteAllBytes(string path, ReadOnlySpan<byte> data)
    {
        Store.EnterChange();
        try
        {
            Store.CheckWritable(State);
            Store.CheckRoom(data.Length, path);
            var v = State.View;
            long ino = LookupOrCreate(ref v, path, create: true);
            if (v.Info(ino).Size != 0)
                v = Emit(RecordKind.Truncate, 16, b => RecordCodec.EncodeTruncate(b, ino, 0), path);
            WriteCore(v, path, 0, data, create: false, append: false);
        }
        catch (Exception ex) when (Store.PoisonIfBroken(ex))
        {
            throw;
        }
        finally
        {
            Store.ExitChange(changed: true);
        }
    }

    private long LookupOrCreate(ref View v, string path, bool create)
    {
        long ino;
        try
        {
            ino = Resolve(v, path);
        }
        catch (DaxfsIOException ex) when (ex.Error == FileSystemError.NotFound && create)
        {
            v = CreateNode(v, path, RecordKind.CreateFile, 0x1A4, "");
            ino = Resolve(v, path);
        }
        RequireFile(v, ino, path);
        return ino;
    }

    private void WriteCore(View v, string path, long offset, ReadOnlySpan<byte> data, bool create, bool append)
    {
        Store.CheckRoom(data.Length, path);
        long ino = LookupOrCreate(ref v, path, create);
        if (append)
            offset = v.Info(ino).Size;
        if (offset > FormatConstants.MaxFileSize - data.Length)
            ThrowHelper.IO(FileSystemError.FileTooLarge, path);
        for (int done = 0; done < data.Length;)
            done += Store.EmitWriteFitting(State, ino, offset + done, data[done..], path);
    }

    /// <summary>Sets the size of file <paramref name="path"/>: shorter drops bytes, longer adds a hole of zeros.</summary>
    public void Truncate(string path, long size)
    {
        if (size < 0 || size > FormatConstants.MaxFileSize)
            ThrowHelper.IO(FileSystemError.InvalidArgument, path, $"size {size}");
        Change(v =>
        {
            long ino = Resolve(v, path);
            RequireFile(v, ino, path);
            Emit(RecordKind.Truncate, 16, b => RecordCodec.EncodeTruncate(b, ino, size), path);
        });
    }

    /// <summary>
    /// Removes <paramref name="path"/>: a file or symlink, an empty directory, or with <paramref name="recursive"/>
    /// a directory and everything under it.
    /// </summary>
    public void Delete(string path, bool recursive = false) => Change(v =>
    {
        var (parent, name) = ResolveParent(v, path);
        long ino = v.Lookup(parent, name);
        if (ino == 0)
            ThrowHelper.IO(FileSystemError.NotFound, path);
        if (recursive && v.KindOf(ino) == NodeKind.Directory)
            v = DeleteChildren(v, ino, path);
        int len = RecordCodec.EncodeRemove(default, parent, name);
        Emit(RecordKind.Remove, len, b => RecordCodec.EncodeRemove(b, parent, name), path);
    });

    private View DeleteChildren(View v, long dir, string path)
    {
        foreach (var (name, child) in v.Entries(dir).ToList())
        {
            string childPath = path.TrimEnd('/') + "/" + name;
            if (v.KindOf(child) == NodeKind.Directory)
                v = DeleteChildren(v, child, childPath);
            int len = RecordCodec.EncodeRemove(default, dir, name);
            v = Emit(RecordKind.Remove, len, b => RecordCodec.EncodeRemove(b, dir, name), childPath);
        }
        return v;
    }

    /// <summary>
    /// Renames <paramref name="from"/> to <paramref name="to"/> with POSIX rules: an existing file is replaced by
    /// a file, an empty directory by a directory; a directory cannot move into itself. With
    /// <paramref name="noReplace"/>, an existing target is an error.
    /// </summary>
    public void Rename(string from, string to, bool noReplace = false) => Change(v =>
    {
        var (sp, sn) = ResolveParent(v, from);
        var (dp, dn) = ResolveParent(v, to);
        var flags = noReplace ? RenameFlags.NoReplace : RenameFlags.None;
        int len = RecordCodec.EncodeRename(default, sp, sn, dp, dn, flags);
        Emit(RecordKind.Rename, len, b => RecordCodec.EncodeRename(b, sp, sn, dp, dn, flags), from + " -> " + to);
    });

    /// <summary>Sets the permission bits of <paramref name="path"/>.</summary>
    public void Chmod(string path, uint mode) => SetAttr(path, AttrMask.Mode, mode, 0, 0, 0);

    /// <summary>Sets the owner and group of <paramref name="path"/>.</summary>
    public void Chown(string path, uint uid, uint gid) => SetAttr(path, AttrMask.Uid | AttrMask.Gid, 0, uid, gid, 0);

    /// <summary>Sets the modification time of <paramref name="path"/>.</summary>
    public void SetModifiedTime(string path, DateTimeOffset time) => SetAttr(path, AttrMask.Mtime, 0, 0, 0, FileStat.ToNs(time));

    private void SetAttr(string path, AttrMask mask, uint mode, uint uid, uint gid, long mtimeNs) => Change(v =>
    {
        long ino = Resolve(v, path);
        Emit(RecordKind.SetAttr, 32, b => RecordCodec.EncodeSetAttr(b, ino, mask, mode, uid, gid, mtimeNs), path);
    });
}
