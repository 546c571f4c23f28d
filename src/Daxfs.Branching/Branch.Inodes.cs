using Daxfs.Branching.Format;
using Daxfs.Branching.Index;

namespace Daxfs.Branching;

/// <summary>Attributes of an inode for adapters that address files by inode number (the mount).</summary>
internal readonly record struct InodeAttributes(long Ino, NodeKind Kind, uint Mode, uint Uid, uint Gid, long Size, long MtimeNs, long CtimeNs, int Nlink, long AtimeNs = 0, long Rdev = 0);

/// <summary>
/// The branch addressed by inode numbers and names within a directory, as a kernel file system interface
/// does. Used by the mount adapter; every call has the same checks and errors as the path API.
/// </summary>
public sealed partial class Branch
{
    internal const long RootInode = View.RootIno;

    private static InodeAttributes Attr(in InodeInfo i) => new(i.Ino, i.Kind, i.Perm, i.Uid, i.Gid, i.Size, i.MtimeNs, i.CtimeNs, i.Nlink, i.AtimeNs, i.Rdev);

    /// <summary>The branch's current view, after checking it is usable (re-reading the region if another process changed it).</summary>
    internal object CurrentViewToken() => ReadView().Token;

    internal InodeAttributes GetAttributes(long ino)
    {
        var v = ReadView();
        if (!v.Exists(ino))
            ThrowHelper.IO(FileSystemError.NotFound, $"inode {ino}");
        var i = v.Info(ino);
        return Attr(in i);
    }

    /// <summary>
    /// The entry <paramref name="name"/> of directory <paramref name="parent"/>; false when the directory has no
    /// such entry (not an exception: the mount answers such lookups often, every .gitignore a tool probes for).
    /// </summary>
    internal bool TryLookupChild(long parent, string name, out InodeAttributes attributes)
    {
        var v = ReadView();
        RequireDir(v, parent);
        long ino = v.Lookup(parent, name);
        if (ino == 0)
        {
            attributes = default;
            return false;
        }
        var i = v.Info(ino);
        attributes = Attr(in i);
        return true;
    }

    internal List<(string Name, InodeAttributes Attributes)> ReadDirectory(long ino)
    {
        var v = ReadView();
        RequireDir(v, ino);
        var list = new List<(string, InodeAttributes)>();
        foreach (var (name, child) in v.Entries(ino))
        {
            var i = v.Info(child);
            list.Add((name, Attr(in i)));
        }
        return list;
    }

    internal long ParentOf(long dirIno)
    {
        var v = ReadView();
        RequireDir(v, dirIno);
        return v.ParentOf(dirIno);
    }

    private static void RequireDir(View v, long ino)
    {
        if (!v.Exists(ino))
            ThrowHelper.IO(FileSystemError.NotFound, $"inode {ino}");
        if (v.KindOf(ino) != NodeKind.Directory)
            ThrowHelper.IO(FileSystemError.NotADirectory, $"inode {ino}");
    }

    /// <remarks>SAFETY: see <see cref="ReadResult"/>.</remarks>
    internal ReadResult ReadInode(long ino, long offset, long length)
    {
        var v = ReadView();
        if (!v.Exists(ino))
            ThrowHelper.IO(FileSystemError.NotFound, $"inode {ino}");
        RequireFile(v, ino, $"inode {ino}");
        var d = FileData.Of(v, ino);
        return Clip(Store, in d, offset, length, $"inode {ino}");
    }

    internal string ReadLinkInode(long ino)
    {
        var v = ReadView();
        if (!v.Exists(ino) || v.KindOf(ino) != NodeKind.Symlink)
            ThrowHelper.IO(FileSystemError.InvalidArgument, $"inode {ino}", "not a symbolic link");
        return v.LinkTarget(ino);
    }

    /// <summary>
    /// Creates a file, directory, symlink, FIFO, socket or device node named <paramref name="name"/> in directory
    /// <paramref name="parent"/>; <paramref name="rdev"/> is a device node's number. FIFOs, sockets and devices
    /// need format version 3.
    /// </summary>
    /// <remarks>
    /// <paramref name="umask"/> (the caller's, when the kernel hands it over apart) applies unless the directory has
    /// a default ACL, which then shapes the new inode instead (see <see cref="InheritAcls"/>), in the same change.
    /// </remarks>
    internal InodeAttributes CreateInode(long parent, string name, NodeKind kind, uint mode, uint uid, uint gid, string target, long rdev = 0, uint umask = 0)
    {
        Names.Validate(name, name);
        if (View.IsSpecial(kind) && !Store.WritesVersion3)
            ThrowHelper.IO(FileSystemError.InvalidArgument, name, "FIFOs, sockets and device nodes need a region of format version 3 (this one is version 2)");
        return Change(v =>
        {
            RequireDir(v, parent);
            if (v.Lookup(parent, name) != 0)
                ThrowHelper.IO(FileSystemError.Exists, name);
            long ino = v.NextIno;
            var acls = InheritAcls(v, parent, kind, ref mode, umask);
            View next;
            if (View.IsSpecial(kind))
            {
                uint typed = ModeBits.Of(kind) | (mode & ModeBits.PermMask);
                long dev = View.IsDevice(kind) ? rdev : 0;
                int mlen = RecordCodec.EncodeMknod(default, parent, ino, typed, uid, gid, name, dev);
                next = Emit(RecordKind.Mknod, mlen, b => RecordCodec.EncodeMknod(b, parent, ino, typed, uid, gid, name, dev), name);
            }
            else
            {
                var kindRecord = kind switch { NodeKind.Directory => RecordKind.Mkdir, NodeKind.Symlink => RecordKind.Symlink, _ => RecordKind.CreateFile };
                int len = RecordCodec.EncodeCreate(default, parent, ino, mode, uid, gid, name, target);
                next = Emit(kindRecord, len, b => RecordCodec.EncodeCreate(b, parent, ino, mode, uid, gid, name, target), name);
            }
            next = EmitAcls(next, ino, acls);
            var i = next.Info(ino);
            return Attr(in i);
        });
    }

    /// <summary>
    /// What a new inode in directory <paramref name="parent"/> takes from the directory's default ACL, as Linux's
    /// posix_acl_create does: the default masked by the mode becomes its access ACL (when it says more than the
    /// mode), a new directory gets the default too, and <paramref name="mode"/> is masked by the ACL. Without a
    /// default ACL, <paramref name="umask"/> applies. Symlinks take neither.
    /// </summary>
    internal static (byte[]? Access, byte[]? Default) InheritAcls(View v, long parent, NodeKind kind, ref uint mode, uint umask)
    {
        if (kind == NodeKind.Symlink)
            return (null, null);
        if (!v.Xattrs(parent).TryGetValue(PosixAcl.DefaultName, out var parentDefault))
        {
            mode &= ~(umask & 0x1FF);
            return (null, null);
        }
        var (access, perm) = PosixAcl.Inherit(parentDefault, mode & 0x1FF);
        mode = (mode & ~0x1FFu) | perm;
        return (access, kind == NodeKind.Directory ? parentDefault : null);
    }

    /// <summary>Appends the ACL records <see cref="InheritAcls"/> chose for the new inode <paramref name="ino"/>.</summary>
    internal View EmitAcls(View v, long ino, (byte[]? Access, byte[]? Default) acls)
    {
        foreach (var (name, value) in new[] { (PosixAcl.DefaultName, acls.Default), (PosixAcl.AccessName, acls.Access) })
        {
            if (value is null) continue;
            int len = RecordCodec.EncodeSetXattr(default, ino, 0, name, value);
            v = Emit(RecordKind.SetXattr, len, b => RecordCodec.EncodeSetXattr(b, ino, 0, name, value), $"inode {ino}");
        }
        return v;
    }

    /// <summary>
    /// Removes entry <paramref name="name"/> of <paramref name="parent"/>; <paramref name="directory"/> says whether
    /// it must be one (rmdir) or must not (unlink). With <paramref name="keepOpen"/> (a process still has the file
    /// open) a non-directory stays, nameless with a link count of 0, until <see cref="ReleaseInode"/>; on a
    /// region of format version 2 it goes at once, as before.
    /// </summary>
    internal void RemoveEntry(long parent, string name, bool directory, bool keepOpen = false) => Change(v =>
    {
        RequireDir(v, parent);
        long ino = v.Lookup(parent, name);
        if (ino == 0)
            ThrowHelper.IO(FileSystemError.NotFound, name);
        bool isDir = v.KindOf(ino) == NodeKind.Directory;
        if (directory && !isDir)
            ThrowHelper.IO(FileSystemError.NotADirectory, name);
        if (!directory && isDir)
            ThrowHelper.IO(FileSystemError.IsADirectory, name);
        var flags = keepOpen && !isDir && Store.WritesVersion3 ? RemoveFlags.KeepOpen : RemoveFlags.None;
        int len = RecordCodec.EncodeRemove(default, parent, name, flags);
        Emit(RecordKind.Remove, len, b => RecordCodec.EncodeRemove(b, parent, name, flags), name);
    });

    /// <summary>The extended attributes of inode <paramref name="ino"/>.</summary>
    internal IReadOnlyDictionary<string, byte[]> GetXattrs(long ino)
    {
        var v = ReadView();
        if (!v.Exists(ino))
            ThrowHelper.IO(FileSystemError.NotFound, $"inode {ino}");
        return v.Xattrs(ino);
    }

    /// <summary>Sets extended attribute <paramref name="name"/> of inode <paramref name="ino"/>; <paramref name="flags"/>: 1 create only (EEXIST), 2 replace only (ENODATA). Format version 3.</summary>
    internal void SetXattr(long ino, string name, ReadOnlySpan<byte> value, uint flags)
    {
        if (XattrTable.NameProblem(name) is { } why)
            ThrowHelper.IO(XattrTable.KnownNamespace(name) ? FileSystemError.InvalidArgument : FileSystemError.NotSupported, name, why);
        (uint Perm, bool Minimal)? acl = null;
        if (name == PosixAcl.AccessName && (acl = PosixAcl.Mode(value)) is null)
            ThrowHelper.IO(FileSystemError.InvalidArgument, name, "not a valid POSIX ACL");
        if (value.Length > XattrTable.MaxValue)
            ThrowHelper.IO(FileSystemError.FileTooLarge, name, $"an attribute value has at most {XattrTable.MaxValue} bytes");
        if (!Store.WritesVersion3)
            ThrowHelper.IO(FileSystemError.NotSupported, name, "extended attributes need a region of format version 3 (this one is version 2)");
        byte[] copy = value.ToArray();
        Change(v =>
        {
            if (acl is { } a)
            {
                // An access ACL sets the mode's permission bits (the group bits from its mask); one that says no
                // more than the mode is not kept as an attribute, as on any Linux file system.
                if (!v.Exists(ino))
                    ThrowHelper.IO(FileSystemError.NotFound, $"inode {ino}");
                uint perm = (v.Info(ino).Perm & ~0x1FFu) | a.Perm;
                if (perm != v.Info(ino).Perm)
                    v = Emit(RecordKind.SetAttr, 32, b => RecordCodec.EncodeSetAttr(b, ino, AttrMask.Mode, perm, 0, 0, 0), $"inode {ino}");
                if (a.Minimal)
                {
                    if (v.Xattrs(ino).ContainsKey(name))
                    {
                        int rl = RecordCodec.EncodeRemoveXattr(default, ino, name);
                        Emit(RecordKind.RemoveXattr, rl, b => RecordCodec.EncodeRemoveXattr(b, ino, name), $"inode {ino}");
                    }
                    return;
                }
            }
            int len = RecordCodec.EncodeSetXattr(default, ino, flags, name, copy);
            Emit(RecordKind.SetXattr, len, b => RecordCodec.EncodeSetXattr(b, ino, flags, name, copy), $"inode {ino}");
        });
    }

    /// <summary>
    /// Removes extended attribute <paramref name="name"/> of inode <paramref name="ino"/> (ENODATA when it has none;
    /// a POSIX ACL that is not there is already removed, as on Linux).
    /// </summary>
    internal void RemoveXattr(long ino, string name)
    {
        if (XattrTable.NameProblem(name) is { } why)
            ThrowHelper.IO(XattrTable.KnownNamespace(name) ? FileSystemError.InvalidArgument : FileSystemError.NotSupported, name, why);
        Change(v =>
        {
            if (name is PosixAcl.AccessName or PosixAcl.DefaultName && v.Exists(ino) && !v.Xattrs(ino).ContainsKey(name))
                return;
            int len = RecordCodec.EncodeRemoveXattr(default, ino, name);
            Emit(RecordKind.RemoveXattr, len, b => RecordCodec.EncodeRemoveXattr(b, ino, name), $"inode {ino}");
        });
    }

    /// <summary>Gives non-directory <paramref name="ino"/> the name <paramref name="name"/> in <paramref name="parent"/> too (a hard link; format version 3).</summary>
    internal InodeAttributes LinkInode(long ino, long parent, string name)
    {
        Names.Validate(name, name);
        if (!Store.WritesVersion3)
            ThrowHelper.IO(FileSystemError.NotPermitted, name, "hard links need a region of format version 3 (this one is version 2)");
        return Change(v =>
        {
            int len = RecordCodec.EncodeLink(default, parent, ino, name);
            var next = Emit(RecordKind.Link, len, b => RecordCodec.EncodeLink(b, parent, ino, name), name);
            var i = next.Info(ino);
            return Attr(in i);
        });
    }

    /// <summary>Ends inode <paramref name="ino"/>, kept open after its last name went (see <see cref="RemoveEntry"/>): its last handle closed.</summary>
    internal void ReleaseInode(long ino) => Change(v =>
    {
        if (!v.TryGetNode(ino, out var n) || !n.IsOrphan)
            return; // it has a name again, or is already gone: nothing to end
        Emit(RecordKind.Release, 8, b => RecordCodec.EncodeRelease(b, ino), $"inode {ino}");
    });

    /// <summary>True when inode <paramref name="ino"/> is a file kept open after its last name went.</summary>
    internal bool IsOrphan(long ino) => ReadView().TryGetNode(ino, out var n) && n.IsOrphan;

    /// <summary>
    /// Renames an entry. <paramref name="exchange"/> swaps two existing names (RENAME_EXCHANGE, format version 3
    /// on); <paramref name="keepReplaced"/> keeps a replaced file that is still open, as <see cref="RemoveEntry"/> does.
    /// </summary>
    internal void RenameEntry(long parent, string name, long newParent, string newName, bool noReplace, bool exchange = false, bool keepReplaced = false)
    {
        Names.Validate(newName, newName);
        if (exchange && noReplace)
            ThrowHelper.IO(FileSystemError.InvalidArgument, name, "RENAME_EXCHANGE and RENAME_NOREPLACE exclude each other");
        if (exchange && !Store.WritesVersion3)
            ThrowHelper.IO(FileSystemError.InvalidArgument, name, "exchanging names needs a region of format version 3 (this one is version 2)");
        Change(v =>
        {
            var flags = (noReplace ? RenameFlags.NoReplace : RenameFlags.None) | (exchange ? RenameFlags.Exchange : RenameFlags.None)
                | (keepReplaced && Store.WritesVersion3 ? RenameFlags.KeepReplaced : RenameFlags.None);
            int len = RecordCodec.EncodeRename(default, parent, name, newParent, newName, flags);
            Emit(RecordKind.Rename, len, b => RecordCodec.EncodeRename(b, parent, name, newParent, newName, flags), name + " -> " + newName);
        });
    }

    /// <summary>Writes at an offset of a file given by inode (the bytes are copied once, into the log).</summary>
    internal void WriteInode(long ino, long offset, ReadOnlySpan<byte> data)
    {
        if (offset < 0 || offset > FormatConstants.MaxFileSize - data.Length)
            ThrowHelper.IO(FileSystemError.FileTooLarge, $"inode {ino}");
        Store.EnterChange();
        try
        {
            Store.CheckWritable(State);
            var v = State.View;
            if (!v.Exists(ino))
                ThrowHelper.IO(FileSystemError.NotFound, $"inode {ino}");
            RequireFile(v, ino, $"inode {ino}");
            for (int done = 0; done < data.Length;)
                done += Store.EmitWriteFitting(State, ino, offset + done, data[done..], $"inode {ino}");
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
    /// Changes attributes of an inode: size (files), mode, owner, modification and access time; each only when
    /// given. The access time needs format version 3: a version 2 region keeps it equal to the modification time.
    /// </summary>
    internal InodeAttributes SetInodeAttributes(long ino, long? size, uint? mode, uint? uid, uint? gid, long? mtimeNs, long? atimeNs = null) => Change(v =>
    {
        if (!v.Exists(ino))
            ThrowHelper.IO(FileSystemError.NotFound, $"inode {ino}");
        if (size is { } sz)
        {
            RequireFile(v, ino, $"inode {ino}");
            if (sz < 0 || sz > FormatConstants.MaxFileSize)
                ThrowHelper.IO(FileSystemError.InvalidArgument, $"inode {ino}", $"size {sz}");
            if (v.Info(ino).Size != sz)
                v = Emit(RecordKind.Truncate, 16, b => RecordCodec.EncodeTruncate(b, ino, sz), $"inode {ino}");
        }
        var mask = AttrMask.None;
        if (mode is not null) mask |= AttrMask.Mode;
        if (uid is not null) mask |= AttrMask.Uid;
        if (gid is not null) mask |= AttrMask.Gid;
        if (mtimeNs is not null) mask |= AttrMask.Mtime;
        if (atimeNs is not null && Store.WritesVersion3) mask |= AttrMask.Atime;
        if (mask != AttrMask.None)
        {
            uint m = mode ?? 0, u = uid ?? 0, g = gid ?? 0;
            long t = mtimeNs ?? 0, at = atimeNs ?? 0;
            v = Emit(RecordKind.SetAttr, (mask & AttrMask.Atime) != 0 ? 40 : 32, b => RecordCodec.EncodeSetAttr(b, ino, mask, m, u, g, t, at), $"inode {ino}");
            if (mode is { } chmod && v.Xattrs(ino).TryGetValue(PosixAcl.AccessName, out var acl))
            {
                // A chmod moves the access ACL's owner, mask and other entries with it.
                var moved = PosixAcl.WithMode(acl, chmod);
                int len = RecordCodec.EncodeSetXattr(default, ino, 0, PosixAcl.AccessName, moved);
                v = Emit(RecordKind.SetXattr, len, b => RecordCodec.EncodeSetXattr(b, ino, 0, PosixAcl.AccessName, moved), $"inode {ino}");
            }
        }
        var i = v.Info(ino);
        return Attr(in i);
    });

    /// <summary>True when the branch accepts writes now (live, not main, no live children).</summary>
    internal bool IsWritable
    {
        get
        {
            try
            {
                Store.EnsureCurrent();
                Store.CheckWritable(State);
                return true;
            }
            catch (BranchException)
            {
                return false;
            }
        }
    }
}
