using Daxfs.Branching.Format;

namespace Daxfs.Branching.Index;

/// <summary>
/// Applies one delta-log record to a view, giving the next view. The same code serves a live operation
/// (before its record is published) and the replay of a log on open, so both always agree. A record
/// whose preconditions fail raises <see cref="DaxfsIOException"/>; a live operation passes the user's path
/// for the message, and replay turns the error into a <see cref="CorruptionException"/>.
/// </summary>
internal static class ViewOps
{
    public static View Apply(View v, Rec r, string? path)
    {
        string P() => path ?? $"inode {r.Ino}";
        switch (r.Kind)
        {
            case RecordKind.CreateFile:
            case RecordKind.Mkdir:
            case RecordKind.Symlink:
            case RecordKind.Mknod:
                return Create(v, r, path ?? r.Name);
            case RecordKind.Remove:
                return Remove(v, r.ParentIno, r.Name, r.TimeNs, path ?? r.Name, keepOpen: (((RemoveFlags)r.Flags) & RemoveFlags.KeepOpen) != 0);
            case RecordKind.SetXattr:
            case RecordKind.RemoveXattr:
            {
                if (XattrTable.NameProblem(r.Name) is { } why)
                    ThrowHelper.IO(FileSystemError.InvalidArgument, P(), why);
                if (!v.Exists(r.Ino))
                    ThrowHelper.IO(FileSystemError.NotFound, P());
                var n = v.NodeOf(r.Ino);
                var attrs = n.Xattrs ?? XattrTable.Empty;
                bool has = attrs.ContainsKey(r.Name);
                if (r.Kind == RecordKind.RemoveXattr || (r.Flags == 2 && !has))
                {
                    if (!has)
                        ThrowHelper.IO(FileSystemError.NoData, P(), $"no attribute {r.Name}");
                    if (r.Kind == RecordKind.RemoveXattr)
                        attrs = attrs.Remove(r.Name);
                }
                if (r.Kind == RecordKind.SetXattr)
                {
                    if (r.Flags == 1 && has)
                        ThrowHelper.IO(FileSystemError.Exists, P(), $"attribute {r.Name} exists");
                    attrs = attrs.SetItem(r.Name, r.Value);
                }
                n = n with { Xattrs = attrs.Count == 0 ? null : attrs, CtimeNs = r.TimeNs };
                return v.With(LongMap.Set(v.Nodes, n.Ino, n), v.NextIno);
            }
            case RecordKind.Link:
            {
                // A hard link: the inode gains a name; its ctime and the directory's mtime and ctime move.
                CheckName(r.Name, path ?? r.Name);
                var dir = DirNode(v, r.ParentIno, path ?? r.Name);
                if (dir.Entries!.ContainsKey(r.Name))
                    ThrowHelper.IO(FileSystemError.Exists, path ?? r.Name);
                if (!v.Exists(r.Ino))
                    ThrowHelper.IO(FileSystemError.NotFound, P());
                var target = v.NodeOf(r.Ino);
                if (target.Kind == NodeKind.Directory)
                    ThrowHelper.IO(FileSystemError.NotPermitted, path ?? r.Name, "a directory cannot have a second name");
                if (target.IsOrphan)
                    ThrowHelper.IO(FileSystemError.NotFound, path ?? r.Name, "the file has no name left to link to");
                if (target.Links >= FormatConstants.MaxLinks)
                    ThrowHelper.IO(FileSystemError.TooManyNames, path ?? r.Name, $"the file has {target.Links} names, the most it can have");
                dir = dir with { Entries = dir.Entries.Add(r.Name, r.Ino), Size = dir.Size + 1, MtimeNs = r.TimeNs, CtimeNs = r.TimeNs };
                target = target with { Links = target.Links + 1, CtimeNs = r.TimeNs, ParentIno = r.ParentIno };
                return v.With(LongMap.Set(LongMap.Set(v.Nodes, dir.Ino, dir), target.Ino, target), v.NextIno);
            }
            case RecordKind.Release:
            {
                // A file kept open after its last name went: the last handle closed, and it goes now.
                if (!v.TryGetNode(r.Ino, out var orphan) || orphan.IsTombstone || !orphan.IsOrphan)
                    ThrowHelper.IO(FileSystemError.InvalidArgument, P(), "not a file kept open after its last name went");
                var rest = v.Base.Contains(r.Ino) ? LongMap.Set(v.Nodes, r.Ino, Node.Tombstone(r.Ino)) : LongMap.Remove(v.Nodes, r.Ino);
                return v.With(rest, v.NextIno);
            }
            case RecordKind.Rename:
                return Rename(v, r, path ?? r.Name);
            case RecordKind.Write:
            {
                var n = FileNode(v, r.Ino, P());
                if (r.FileOffset < 0 || r.FileOffset > FormatConstants.MaxFileSize - r.PayloadLength)
                    ThrowHelper.IO(FileSystemError.FileTooLarge, P(), $"write at {r.FileOffset}");
                long end = r.FileOffset + r.PayloadLength;
                n = n with
                {
                    Extents = ExtentMap.Write(n.Extents, r.FileOffset, r.PayloadLength, r.PayloadOffset, r.Offset),
                    Size = Math.Max(n.Size, end),
                    MtimeNs = r.TimeNs,
                    CtimeNs = r.TimeNs,
                };
                return v.With(LongMap.Set(v.Nodes, n.Ino, n), v.NextIno);
            }
            case RecordKind.Truncate:
            {
                var n = FileNode(v, r.Ino, P());
                if (r.Size < 0 || r.Size > FormatConstants.MaxFileSize)
                    ThrowHelper.IO(FileSystemError.InvalidArgument, P(), $"size {r.Size}");
                n = n with
                {
                    Extents = r.Size < n.Size ? ExtentMap.Truncate(n.Extents, r.Size) : n.Extents,
                    Size = r.Size,
                    MtimeNs = r.TimeNs,
                    CtimeNs = r.TimeNs,
                };
                return v.With(LongMap.Set(v.Nodes, n.Ino, n), v.NextIno);
            }
            case RecordKind.SetAttr:
            {
                if (!v.Exists(r.Ino))
                    ThrowHelper.IO(FileSystemError.NotFound, P());
                var n = v.NodeOf(r.Ino);
                var mask = (AttrMask)r.Mask;
                n = n with
                {
                    Perm = mask.HasFlag(AttrMask.Mode) ? r.Mode & ModeBits.PermMask : n.Perm,
                    Uid = mask.HasFlag(AttrMask.Uid) ? r.Uid : n.Uid,
                    Gid = mask.HasFlag(AttrMask.Gid) ? r.Gid : n.Gid,
                    MtimeNs = mask.HasFlag(AttrMask.Mtime) ? r.MtimeNs : n.MtimeNs,
                    AtimeNs = mask.HasFlag(AttrMask.Atime) ? r.AtimeNs : n.AtimeNs,
                    CtimeNs = r.TimeNs,
                };
                return v.With(LongMap.Set(v.Nodes, n.Ino, n), v.NextIno);
            }
            default:
                throw new InvalidOperationException($"record kind {r.Kind} does not change a tree");
        }
    }

    private static Node FileNode(View v, long ino, string path)
    {
        if (!v.Exists(ino))
            ThrowHelper.IO(FileSystemError.NotFound, path);
        var n = v.NodeOf(ino);
        if (n.Kind == NodeKind.Directory)
            ThrowHelper.IO(FileSystemError.IsADirectory, path);
        if (n.Kind != NodeKind.File)
            ThrowHelper.IO(FileSystemError.InvalidArgument, path, "not a regular file");
        return n;
    }

    private static Node DirNode(View v, long ino, string path)
    {
        if (!v.Exists(ino))
            ThrowHelper.IO(FileSystemError.NotFound, path);
        var n = v.NodeOf(ino);
        if (n.Kind != NodeKind.Directory)
            ThrowHelper.IO(FileSystemError.NotADirectory, path);
        return n;
    }

    private static void CheckName(string name, string path)
    {
        byte[] bytes;
        try { bytes = Names.Utf8.GetBytes(name); }
        catch (System.Text.EncoderFallbackException) { ThrowHelper.IO(FileSystemError.InvalidArgument, path, "name is not valid Unicode"); return; }
        string? why = Names.CheckUtf8(bytes);
        if (why is not null)
            ThrowHelper.IO(bytes.Length > FormatConstants.MaxNameLength ? FileSystemError.NameTooLong : FileSystemError.InvalidArgument, path, why);
    }

    private static View Create(View v, Rec r, string path)
    {
        CheckName(r.Name, path);
        var dir = DirNode(v, r.ParentIno, path);
        if (dir.Entries!.ContainsKey(r.Name))
            ThrowHelper.IO(FileSystemError.Exists, path);
        if (r.Ino < v.NextIno || v.Exists(r.Ino))
            ThrowHelper.IO(FileSystemError.InvalidArgument, path, $"inode {r.Ino} is not a fresh number (next is {v.NextIno})");
        var kind = r.Kind switch
        {
            RecordKind.Mkdir => NodeKind.Directory,
            RecordKind.Symlink => NodeKind.Symlink,
            RecordKind.Mknod => View.KindOfMode(r.Mode),
            _ => NodeKind.File,
        };
        if (kind == NodeKind.Symlink && (r.Target.Length == 0 || RecordCodec.Utf8Length(r.Target) > FormatConstants.MaxLinkTarget || r.Target.Contains('\0', StringComparison.Ordinal)))
            ThrowHelper.IO(FileSystemError.InvalidArgument, path, "symlink target must be 1..4095 bytes without NUL");
        var node = new Node
        {
            Ino = r.Ino,
            Kind = kind,
            Perm = r.Mode & ModeBits.PermMask,
            Uid = r.Uid,
            Gid = r.Gid,
            MtimeNs = r.TimeNs,
            CtimeNs = r.TimeNs,
            AtimeNs = r.TimeNs,
            Size = kind == NodeKind.Symlink ? RecordCodec.Utf8Length(r.Target) : 0,
            Entries = kind == NodeKind.Directory ? Node.EmptyEntries : null,
            ParentIno = r.ParentIno,
            Target = kind == NodeKind.Symlink ? r.Target : null,
            Rdev = View.IsDevice(kind) ? r.Size : 0,
        };
        dir = dir with
        {
            Entries = dir.Entries.Add(r.Name, r.Ino),
            Size = dir.Size + 1,
            Subdirs = dir.Subdirs + (kind == NodeKind.Directory ? 1 : 0),
            MtimeNs = r.TimeNs,
            CtimeNs = r.TimeNs,
        };
        var nodes = LongMap.Set(LongMap.Set(v.Nodes, dir.Ino, dir), node.Ino, node);
        return v.With(nodes, r.Ino + 1);
    }

    private static View Remove(View v, long parentIno, string name, long timeNs, string path, bool keepOpen = false)
    {
        var dir = DirNode(v, parentIno, path);
        if (!dir.Entries!.TryGetValue(name, out long child))
            ThrowHelper.IO(FileSystemError.NotFound, path);
        var kind = v.KindOf(child);
        if (kind == NodeKind.Directory && v.Info(child).Size != 0)
            ThrowHelper.IO(FileSystemError.NotEmpty, path);
        dir = dir with
        {
            Entries = dir.Entries.Remove(name),
            Size = dir.Size - 1,
            Subdirs = dir.Subdirs - (kind == NodeKind.Directory ? 1 : 0),
            MtimeNs = timeNs,
            CtimeNs = timeNs,
        };
        var nodes = LongMap.Set(v.Nodes, dir.Ino, dir);
        if (kind != NodeKind.Directory && v.NodeOf(child) is { Links: > 1 } linked)
        {
            // One of several names: the inode stays, with one name fewer.
            return v.With(LongMap.Set(nodes, child, linked with { Links = linked.Links - 1, CtimeNs = timeNs }), v.NextIno);
        }
        if (keepOpen && kind != NodeKind.Directory)
        {
            // Still open somewhere: the inode stays, with no name (link count 0), until a Release record.
            var kept = v.NodeOf(child) with { ParentIno = Node.NoParent, Links = 0, CtimeNs = timeNs };
            return v.With(LongMap.Set(nodes, child, kept), v.NextIno);
        }
        // A base inode stays in the image: mark it gone so lookups by number (open handles) miss it too.
        nodes = v.Base.Contains(child) ? LongMap.Set(nodes, child, Node.Tombstone(child)) : LongMap.Remove(nodes, child);
        return v.With(nodes, v.NextIno);
    }

    private static View Rename(View v, Rec r, string path)
    {
        CheckName(r.DstName, path);
        var src = DirNode(v, r.ParentIno, path);
        if (!src.Entries!.TryGetValue(r.Name, out long moving))
            ThrowHelper.IO(FileSystemError.NotFound, path);
        var dst = DirNode(v, r.DstParent, path);
        var kind = v.KindOf(moving);
        if ((((RenameFlags)r.Flags) & RenameFlags.Exchange) != 0)
            return Exchange(v, r, moving, path);
        if (dst.Entries!.TryGetValue(r.DstName, out long existing))
        {
            if ((((RenameFlags)r.Flags) & RenameFlags.NoReplace) != 0)
                ThrowHelper.IO(FileSystemError.Exists, path);
            if (existing == moving)
                return v; // POSIX: renaming a name onto another name of the same file does nothing
            var existingKind = v.KindOf(existing);
            if (kind == NodeKind.Directory && existingKind != NodeKind.Directory)
                ThrowHelper.IO(FileSystemError.NotADirectory, path, "cannot replace a non-directory with a directory");
            if (kind != NodeKind.Directory && existingKind == NodeKind.Directory)
                ThrowHelper.IO(FileSystemError.IsADirectory, path, "cannot replace a directory with a non-directory");
            if (existingKind == NodeKind.Directory && v.Info(existing).Size != 0)
                ThrowHelper.IO(FileSystemError.NotEmpty, path);
        }
        if (kind == NodeKind.Directory)
            NotIntoItself(v, moving, r.DstParent, path);
        var nodes = v.Nodes;
        if (existing != 0)
            v = Remove(v, r.DstParent, r.DstName, r.TimeNs, path, keepOpen: (((RenameFlags)r.Flags) & RenameFlags.KeepReplaced) != 0);
        // Re-read both directories: the removal above may have changed the destination.
        src = v.NodeOf(r.ParentIno);
        src = src with
        {
            Entries = src.Entries!.Remove(r.Name),
            Size = src.Size - 1,
            Subdirs = src.Subdirs - (kind == NodeKind.Directory ? 1 : 0),
            MtimeNs = r.TimeNs,
            CtimeNs = r.TimeNs,
        };
        nodes = LongMap.Set(v.Nodes, src.Ino, src);
        dst = r.DstParent == r.ParentIno ? src : v.With(nodes, v.NextIno).NodeOf(r.DstParent);
        dst = dst with
        {
            Entries = dst.Entries!.Add(r.DstName, moving),
            Size = dst.Size + 1,
            Subdirs = dst.Subdirs + (kind == NodeKind.Directory ? 1 : 0),
            MtimeNs = r.TimeNs,
            CtimeNs = r.TimeNs,
        };
        nodes = LongMap.Set(nodes, dst.Ino, dst);
        var moved = v.With(nodes, v.NextIno).NodeOf(moving);
        moved = moved with { CtimeNs = r.TimeNs, ParentIno = r.DstParent };
        nodes = LongMap.Set(nodes, moving, moved);
        return v.With(nodes, v.NextIno);
    }

    /// <summary>A directory must not move into its own subtree: walks up from <paramref name="destination"/> to the root.</summary>
    private static void NotIntoItself(View v, long directory, long destination, string path)
    {
        long at = destination;
        for (int guard = 0; ; guard++)
        {
            if (at == directory)
                ThrowHelper.IO(FileSystemError.InvalidArgument, path, "cannot move a directory into itself");
            if (at == View.RootIno) break;
            if (guard > 1_000_000)
                ThrowHelper.IO(FileSystemError.InvalidArgument, path, "directory parent chain does not reach the root");
            at = v.ParentOf(at);
        }
    }

    /// <summary>
    /// RENAME_EXCHANGE: both names exist and swap their inodes, whatever their kinds. Neither may be an ancestor
    /// of the other's new place. Both parents' mtime and ctime and both inodes' ctime become the record's time.
    /// </summary>
    private static View Exchange(View v, Rec r, long first, string path)
    {
        var dst = DirNode(v, r.DstParent, path);
        if (!dst.Entries!.TryGetValue(r.DstName, out long second))
            ThrowHelper.IO(FileSystemError.NotFound, path, "an exchange needs both names");
        if (first == second)
            return v;
        bool firstDir = v.KindOf(first) == NodeKind.Directory, secondDir = v.KindOf(second) == NodeKind.Directory;
        if (firstDir) NotIntoItself(v, first, r.DstParent, path);
        if (secondDir) NotIntoItself(v, second, r.ParentIno, path);
        LongMapNode<Node>? nodes;
        if (r.DstParent == r.ParentIno)
        {
            var dir = v.NodeOf(r.ParentIno);
            dir = dir with { Entries = dir.Entries!.SetItem(r.Name, second).SetItem(r.DstName, first), MtimeNs = r.TimeNs, CtimeNs = r.TimeNs };
            nodes = LongMap.Set(v.Nodes, dir.Ino, dir);
        }
        else
        {
            int gained = (secondDir ? 1 : 0) - (firstDir ? 1 : 0); // subdirectories the source directory gains
            var src = v.NodeOf(r.ParentIno);
            src = src with { Entries = src.Entries!.SetItem(r.Name, second), Subdirs = src.Subdirs + gained, MtimeNs = r.TimeNs, CtimeNs = r.TimeNs };
            dst = dst with { Entries = dst.Entries.SetItem(r.DstName, first), Subdirs = dst.Subdirs - gained, MtimeNs = r.TimeNs, CtimeNs = r.TimeNs };
            nodes = LongMap.Set(LongMap.Set(v.Nodes, src.Ino, src), dst.Ino, dst);
        }
        var now = v.With(nodes, v.NextIno);
        var a = now.NodeOf(first) with { ParentIno = r.DstParent, CtimeNs = r.TimeNs };
        var b = now.NodeOf(second) with { ParentIno = r.ParentIno, CtimeNs = r.TimeNs };
        nodes = LongMap.Set(LongMap.Set(nodes, first, a), second, b);
        return v.With(nodes, v.NextIno);
    }

    /// <summary>
    /// The view with each moved run of bytes (a cleaning's copy) served from its new place: for every move, the
    /// bytes of the file the view still maps to the old place now map to the new one. Sizes, times and everything
    /// else stay; bytes the view maps elsewhere (overwritten since) are left alone. Returns the view itself when
    /// nothing of it moved.
    /// </summary>
    public static View MoveExtents(View v, IReadOnlyList<(long Ino, long FileOffset, long Length, long From, long To, long ToRecord)> moves)
    {
        var nodes = v.Nodes;
        bool changed = false;
        var pieces = new List<(long At, long Length, long To, long ToRecord)>();
        foreach (var group in moves.GroupBy(m => m.Ino))
        {
            if (!LongMap.TryGet(nodes, group.Key, out var node) || node.Kind != NodeKind.File)
                continue;
            var extents = node.Extents;
            pieces.Clear();
            foreach (var (_, fileOffset, length, from, to, toRecord) in group)
            {
                long end = fileOffset + length;
                var e = LongMap.Floor(extents, fileOffset);
                if (e is null || e.Key + e.Value.Length <= fileOffset)
                    e = LongMap.Ceiling(extents, fileOffset);
                while (e is not null && e.Key < end)
                {
                    long a = Math.Max(e.Key, fileOffset), b = Math.Min(e.Key + e.Value.Length, end);
                    if (b > a && e.Value.Source + (a - e.Key) == from + (a - fileOffset))
                        pieces.Add((a, b - a, to + (a - fileOffset), toRecord));
                    e = LongMap.Ceiling(extents, e.Key + 1);
                }
            }
            if (pieces.Count == 0)
                continue;
            foreach (var (at, length, to, toRecord) in pieces)
                extents = ExtentMap.Write(extents, at, length, to, toRecord);
            nodes = LongMap.Set(nodes, group.Key, node with { Extents = extents });
            changed = true;
        }
        return changed ? v.With(nodes, v.NextIno) : v;
    }
}
