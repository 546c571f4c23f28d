using System.Collections.Concurrent;
using System.Runtime.InteropServices;
using System.Text;
using Daxfs.Branching.Format;
using Daxfs.Branching.Index;

namespace Daxfs.Branching.Fuse;

/// <summary>One handler per operation the kernel sends.</summary>
internal sealed unsafe partial class FuseServer
{
    /// <summary>The hidden control entry at each branch's root: found by name, never listed.</summary>
    public const string ControlName = ".daxfs";

    private void RegisterHandlers()
    {
        _handlers[FuseProtocol.Init] = Init;
        _handlers[FuseProtocol.Lookup] = Lookup;
        _handlers[FuseProtocol.GetAttr] = GetAttr;
        _handlers[FuseProtocol.SetAttr] = SetAttr;
        _handlers[FuseProtocol.ReadLink] = ReadLink;
        _handlers[FuseProtocol.Symlink] = Symlink;
        _handlers[FuseProtocol.Mknod] = Mknod;
        _handlers[FuseProtocol.Mkdir] = Mkdir;
        _handlers[FuseProtocol.Unlink] = Unlink;
        _handlers[FuseProtocol.Rmdir] = Rmdir;
        _handlers[FuseProtocol.Rename] = Rename;
        _handlers[FuseProtocol.Rename2] = Rename;
        _handlers[FuseProtocol.Link] = Link;
        _handlers[FuseProtocol.Open] = Open;
        _handlers[FuseProtocol.Create] = Create;
        _handlers[FuseProtocol.Read] = Read;
        _handlers[FuseProtocol.Write] = Write;
        _handlers[FuseProtocol.StatFs] = StatFs;
        _handlers[FuseProtocol.Flush] = Flush;
        _handlers[FuseProtocol.Release] = Release;
        _handlers[FuseProtocol.Fallocate] = Fallocate;
        _handlers[FuseProtocol.GetXattr] = GetXattr;
        _handlers[FuseProtocol.ListXattr] = ListXattr;
        _handlers[FuseProtocol.SetXattr] = SetXattr;
        _handlers[FuseProtocol.RemoveXattr] = RemoveXattr;
        _handlers[FuseProtocol.Fsync] = Acknowledge;
        _handlers[FuseProtocol.FsyncDir] = Acknowledge;
        _handlers[FuseProtocol.Access] = Acknowledge;
        _handlers[FuseProtocol.OpenDir] = OpenDir;
        _handlers[FuseProtocol.ReleaseDir] = ReleaseDir;
        _handlers[FuseProtocol.ReadDir] = ReadDir;
        _handlers[FuseProtocol.ReadDirPlus] = ReadDir;
    }

    // Set by INIT: whether the kernel lets a file opened for direct I/O be mapped shared (without it, mmap would fail).
    private bool _directIoAllowed;

    // Set by INIT: whether the kernel opens directories without asking once OPENDIR answers ENOSYS.
    private bool _noOpendir;

    private long _nextFh = 1;

    // ------------------------------------------------------------------ helpers

    /// <summary>Refuses a change of the files of <paramref name="mb"/> (main, read-only mounts, damaged regions).</summary>
    private static void RequireWritable(MountedBranch mb)
    {
        if (mb.ReadOnly)
            throw new BranchReadOnlyException(mb.Name, mb.Branch.IsMain ? $"branch '{mb.Name}' is read-only: main changes only by commits; fork a branch to write" : "mounted read-only");
    }

    /// <summary>Refuses a change of the region's branches (fork, commit, end) on a read-only mount.</summary>
    private void RequireLifecycle(MountedBranch mb)
    {
        if (!Lifecycle)
            throw new DaxfsIOException(FileSystemError.NotPermitted, mb.Name, "this mount offers no branch lifecycle (fork, commit, abort and discard are its owner's)");
        if (ReadOnly)
            throw new BranchReadOnlyException(mb.Name, "mounted read-only");
    }

    /// <summary>The inode of the branch tree a request addresses; EPERM for a control entry (which holds no files).</summary>
    private (MountedBranch Branch, long Ino) TreeNode(ulong node, string what)
    {
        var (mb, ino, role) = _nodes.Resolve(node);
        if (role != NodeRole.Tree)
            throw new DaxfsIOException(FileSystemError.NotPermitted, $"{ControlName}", $"{what}: the control entry holds no files");
        return (mb, ino);
    }

    /// <summary>True for a name the control entry takes at a branch's root, or an @ name at the region's root.</summary>
    private bool Reserved(MountedBranch mb, long parent, string name)
        => (parent == Branch.RootInode && name == ControlName) || BranchName(mb, parent, name);

    /// <summary>True when <paramref name="name"/> in directory <paramref name="dir"/> names a branch: an @ name at a region mount's root.</summary>
    private bool BranchName(MountedBranch mb, long dir, string name)
        => RegionMode && dir == Branch.RootInode && ReferenceEquals(mb, _nodes.Root) && name.Length > 1 && name[0] == '@';

    /// <summary>The attributes of a control entry, from the branch root's.</summary>
    private static InodeAttributes ControlAttributes(MountedBranch mb, NodeRole role)
    {
        var root = mb.Branch.GetAttributes(Branch.RootInode); // ESTALE once the branch is gone
        return role switch
        {
            NodeRole.ControlDir => root with { Ino = NodeIds.ControlDirIno, Mode = 0x16D, Nlink = 2, Size = 0 }, // 0555
            NodeRole.ChildrenDir => root with { Ino = NodeIds.ChildrenDirIno, Mode = root.Mode & 0x1FF, Nlink = 2, Size = 0 },
            _ => root with { Ino = NodeIds.ControlFileIno, Kind = NodeKind.File, Mode = 0x124 | (root.Mode & 0x92), Nlink = 1, Size = 0 }, // r for all, w as the root
        };
    }

    private void ReplyControlEntry(ulong unique, MountedBranch mb, NodeRole role, long ino)
    {
        var a = ControlAttributes(mb, role);
        ReplyEntry(unique, mb, NodeIds.Control(mb.Index, ino), in a);
    }

    private void ReplyBranchRoot(ulong unique, MountedBranch mb)
    {
        var a = mb.Branch.GetAttributes(Branch.RootInode);
        ReplyEntry(unique, mb, mb.RootNode, in a);
    }

    /// <summary>The entry for live branch <paramref name="name"/> at the region's root (<c>@NAME</c>), or null.</summary>
    private MountedBranch? RegionBranch(string name)
    {
        var b = _store.FindLive(name);
        return b is null ? null : _nodes.Attach(b, FuseProtocol.RootId, "@" + name, ReadOnly);
    }

    /// <summary>The entry for <paramref name="name"/>, a live child of <paramref name="parent"/>, under its <c>.daxfs/branches</c>; or null.</summary>
    private MountedBranch? ChildBranch(MountedBranch parent, string name)
    {
        var b = _store.FindLive(name);
        if (b is null || b.Parent?.Name != parent.Name)
            return null;
        return _nodes.Attach(b, NodeIds.Control(parent.Index, NodeIds.ChildrenDirIno), name, ReadOnly);
    }

    private void NotFound(ulong unique) => _reply.Error(unique, FuseNative.ENOENT);

    // ------------------------------------------------------------------ handlers

    private void Acknowledge(scoped in Request r) => _reply.Empty(r.Unique);

    private void Lookup(scoped in Request r)
    {
        string name = r.Name(0);
        var (mb, ino, role) = _nodes.Resolve(r.Node);
        switch (role)
        {
            case NodeRole.ControlDir:
                if (name == "ctl") ReplyControlEntry(r.Unique, mb, NodeRole.ControlFile, NodeIds.ControlFileIno);
                else if (name == "branches") ReplyControlEntry(r.Unique, mb, NodeRole.ChildrenDir, NodeIds.ChildrenDirIno);
                else NotFound(r.Unique);
                return;
            case NodeRole.ChildrenDir:
                if (ChildBranch(mb, name) is { } child) ReplyBranchRoot(r.Unique, child);
                else NotFound(r.Unique); // not cached: a fork elsewhere must show at once
                return;
            case NodeRole.ControlFile:
                throw new DaxfsIOException(FileSystemError.NotADirectory, "ctl");
        }
        if (ino == Branch.RootInode && name == ControlName)
        {
            mb.Branch.GetAttributes(Branch.RootInode); // ESTALE for a branch that ended
            ReplyControlEntry(r.Unique, mb, NodeRole.ControlDir, NodeIds.ControlDirIno);
            return;
        }
        if (BranchName(mb, ino, name) && RegionBranch(name[1..]) is { } branch)
        {
            ReplyBranchRoot(r.Unique, branch);
            return;
        }
        if (mb.Branch.TryLookupChild(ino, name, out var a))
        {
            ReplyEntry(r.Unique, mb, mb.Node(a.Ino), in a);
        }
        else if (!BranchName(mb, ino, name))
        {
            // Node 0: missing, and the kernel may keep that for the entry timeout (a tool probing for a
            // .gitignore in every directory asks once); the watcher drops that name when it appears elsewhere.
            var e = new FuseEntryOut { EntryValid = _timeoutSec, EntryValidNsec = _timeoutNsec };
            _reply.Struct(r.Unique, in e);
        }
        else
        {
            NotFound(r.Unique); // not cached: a branch forked elsewhere must show at once
        }
    }

    private void GetAttr(scoped in Request r)
    {
        var (mb, ino, role) = _nodes.Resolve(r.Node);
        var a = role == NodeRole.Tree ? mb.Branch.GetAttributes(ino) : ControlAttributes(mb, role);
        ReplyAttr(r.Unique, r.Node, in a);
    }

    private void SetAttr(scoped in Request r)
    {
        var s = r.Read<FuseSetAttrIn>();
        var (mb, ino, role) = _nodes.Resolve(r.Node);
        if (role == NodeRole.ControlFile && (s.Valid & (FuseProtocol.FattrMode | FuseProtocol.FattrUid | FuseProtocol.FattrGid)) == 0)
        {
            var c = ControlAttributes(mb, role); // truncation and times, as `echo cmd > ctl` asks first: nothing to change
            ReplyAttr(r.Unique, r.Node, in c);
            return;
        }
        if (role != NodeRole.Tree)
            throw new DaxfsIOException(FileSystemError.NotPermitted, ControlName, "the control entry's attributes cannot be changed");
        RequireWritable(mb);
        long? size = (s.Valid & FuseProtocol.FattrSize) != 0 ? (long)s.Size : null;
        uint? mode = (s.Valid & FuseProtocol.FattrMode) != 0 ? s.Mode & 0xFFF : null;
        uint? uid = (s.Valid & FuseProtocol.FattrUid) != 0 ? s.Uid : null;
        uint? gid = (s.Valid & FuseProtocol.FattrGid) != 0 ? s.Gid : null;
        long now = (DateTime.UtcNow - DateTime.UnixEpoch).Ticks * 100;
        long? mtime = (s.Valid & FuseProtocol.FattrMtimeNow) != 0 ? now
            : (s.Valid & FuseProtocol.FattrMtime) != 0 ? (long)s.Mtime * 1_000_000_000L + s.MtimeNsec : null;
        long? atime = (s.Valid & FuseProtocol.FattrAtimeNow) != 0 ? now
            : (s.Valid & FuseProtocol.FattrAtime) != 0 ? (long)s.Atime * 1_000_000_000L + s.AtimeNsec : null;
        InodeAttributes a = size is null && mode is null && uid is null && gid is null && mtime is null && atime is null
            ? mb.Branch.GetAttributes(ino) // ctime only: it follows every change by itself
            : mb.Branch.SetInodeAttributes(ino, size, mode, uid, gid, mtime, atime);
        Changed(mb);
        ReplyAttr(r.Unique, r.Node, in a);
    }

    private void ReadLink(scoped in Request r)
    {
        var (mb, ino) = TreeNode(r.Node, "readlink");
        _reply.Bytes(r.Unique, Encoding.UTF8.GetBytes(mb.Branch.ReadLinkInode(ino)));
    }

    private void Symlink(scoped in Request r)
    {
        string name = r.Name(0, out int end);
        string target = r.Name(end, out _, limit: 4095);
        MakeEntry(in r, name, NodeKind.Symlink, 0x1FF, target, create: false, umask: 0);
    }

    private void Mknod(scoped in Request r)
    {
        var m = r.Read<FuseMknodIn>();
        string name = r.Name(sizeof(FuseMknodIn));
        var kind = View.KindOfMode(m.Mode);
        if ((m.Mode & 0xF000) is not (0x8000 or 0x1000 or 0xC000 or 0x2000 or 0x6000))
            throw new DaxfsIOException(FileSystemError.InvalidArgument, name, $"mknod of an unknown file type (mode {Convert.ToString(m.Mode, 8)})");
        // The kernel sends the device number as new_encode_dev does; for majors below 4096 that is also the C
        // library's dev_t, which the branch stores.
        MakeEntry(in r, name, kind, m.Mode, "", create: false, rdev: m.Rdev, umask: m.Umask);
    }

    private void Create(scoped in Request r)
    {
        var c = r.Read<FuseCreateIn>();
        string name = r.Name(sizeof(FuseCreateIn));
        MakeEntry(in r, name, NodeKind.File, c.Mode, "", create: true, umask: c.Umask);
    }

    private void Mkdir(scoped in Request r)
    {
        var m = r.Read<FuseMkdirIn>();
        string name = r.Name(sizeof(FuseMkdirIn));
        var (mb, ino, role) = _nodes.Resolve(r.Node);
        if (role == NodeRole.ChildrenDir)
        {
            // mkdir …/.daxfs/branches/NAME: fork this branch.
            RequireLifecycle(mb);
            var child = mb.Branch.Fork(name);
            var entry = _nodes.Attach(child, NodeIds.Control(mb.Index, NodeIds.ChildrenDirIno), name, ReadOnly);
            ReplyBranchRoot(r.Unique, entry);
            Shown(mb, NodeIds.Control(mb.Index, NodeIds.ChildrenDirIno), name);
            return;
        }
        if (role == NodeRole.Tree && BranchName(mb, ino, name))
        {
            // mkdir MNT/@NAME: fork main.
            RequireLifecycle(mb);
            var child = mb.Branch.Fork(name[1..]);
            ReplyBranchRoot(r.Unique, _nodes.Attach(child, FuseProtocol.RootId, name, ReadOnly));
            Shown(mb, FuseProtocol.RootId, name);
            return;
        }
        MakeEntry(in r, name, NodeKind.Directory, m.Mode, "", create: false, umask: m.Umask);
    }

    private const uint SetGid = 0x400;

    /// <summary>Creates an entry owned by the calling user (mkdir, mknod, create, symlink).</summary>
    /// <remarks>
    /// The kernel sends the caller's umask apart (FUSE_DONT_MASK): it applies unless the directory has a default
    /// ACL, which then gives the new entry its access ACL (and a directory its default ACL), masked by the mode
    /// (<see cref="Branch.CreateInode"/> does both, in one change).
    /// </remarks>
    private void MakeEntry(scoped in Request r, string name, NodeKind kind, uint mode, string target, bool create, uint umask, long rdev = 0)
    {
        var (mb, parent) = TreeNode(r.Node, "create");
        if (Reserved(mb, parent, name))
            throw new DaxfsIOException(FileSystemError.Exists, name, "the name is reserved for the control entry or a branch");
        RequireWritable(mb);
        uint gid = r.Header.Gid;
        var dir = mb.Branch.GetAttributes(parent);
        if ((dir.Mode & SetGid) != 0)
        {
            // A setgid directory passes its group on, and its setgid bit to new subdirectories.
            gid = dir.Gid;
            if (kind == NodeKind.Directory) mode |= SetGid;
        }
        // The umask, or the directory's default ACL, shapes the new inode in the same change that makes it.
        var a = mb.Branch.CreateInode(parent, name, kind, mode & 0xFFF, r.Header.Uid, gid, target, rdev, umask);
        Changed(mb);
        if (create)
            _open.AddOrUpdate(mb.Node(a.Ino), 1, (_, n) => n + 1); // CREATE opens the file too
        if (!create)
        {
            ReplyEntry(r.Unique, mb, mb.Node(a.Ino), in a);
            return;
        }
        mb.Known[mb.Node(a.Ino)] = 0;
        Span<byte> reply = stackalloc byte[sizeof(FuseEntryOut) + sizeof(FuseOpenOut)];
        var e = Entry(mb, mb.Node(a.Ino), in a);
        MemoryMarshal.Write(reply, in e);
        var o = new FuseOpenOut { Fh = 0, OpenFlags = FuseProtocol.KeepCache };
        MemoryMarshal.Write(reply[sizeof(FuseEntryOut)..], in o);
        _reply.Bytes(r.Unique, reply);
    }

    private void Unlink(scoped in Request r)
    {
        string name = r.Name(0);
        var (mb, parent) = TreeNode(r.Node, "unlink");
        Remove(r.Unique, mb, parent, name, directory: false);
    }

    /// <summary>True when the file named <paramref name="name"/> in <paramref name="parent"/> is open through this mount (it must outlive its name).</summary>
    private bool IsOpen(MountedBranch mb, long parent, string name)
        => mb.Branch.TryLookupChild(parent, name, out var a) && _open.ContainsKey(mb.Node(a.Ino));

    /// <summary>Removes entry <paramref name="name"/> of directory <paramref name="parent"/> of a branch's tree (unlink, rmdir).</summary>
    private void Remove(ulong unique, MountedBranch mb, long parent, string name, bool directory)
    {
        if (Reserved(mb, parent, name))
            throw new DaxfsIOException(FileSystemError.NotPermitted, name, "the control entry and branches are not entries of the branch");
        RequireWritable(mb);
        mb.Branch.RemoveEntry(parent, name, directory, keepOpen: !directory && IsOpen(mb, parent, name));
        Changed(mb);
        _reply.Empty(unique);
    }

    private void Rmdir(scoped in Request r)
    {
        string name = r.Name(0);
        var (mb, ino, role) = _nodes.Resolve(r.Node);
        if (role == NodeRole.ChildrenDir)
        {
            // rmdir …/.daxfs/branches/NAME: discard that child (a leaf).
            RequireLifecycle(mb);
            var child = _store.FindLive(name);
            if (child is null || child.Parent?.Name != mb.Name)
                throw new BranchNotFoundException(name);
            child.Discard(); // the watcher drops its nodes (the kernel already dropped the name)
            _reply.Empty(r.Unique);
            LookNow();
            return;
        }
        if (role == NodeRole.Tree && BranchName(mb, ino, name))
        {
            // rmdir MNT/@NAME: discard that branch (a leaf).
            RequireLifecycle(mb);
            var branch = _store.FindLive(name[1..]) ?? throw new BranchNotFoundException(name[1..]);
            branch.Discard(); // the watcher drops its nodes (the kernel already dropped the name)
            _reply.Empty(r.Unique);
            LookNow();
            return;
        }
        if (role != NodeRole.Tree)
            throw new DaxfsIOException(FileSystemError.NotPermitted, name, "the control entry holds no files");
        Remove(r.Unique, mb, ino, name, directory: true);
    }

    private void Rename(scoped in Request r)
    {
        bool two = r.Header.Opcode == FuseProtocol.Rename2;
        ulong newDir = two ? r.Read<FuseRename2In>().NewDir : r.Read<FuseRenameIn>().NewDir;
        uint flags = two ? r.Read<FuseRename2In>().Flags : 0;
        string oldName = r.Name(two ? sizeof(FuseRename2In) : sizeof(FuseRenameIn), out int end);
        string newName = r.Name(end);
        if ((flags & ~(FuseProtocol.RenameNoReplace | FuseProtocol.RenameExchange)) != 0)
            throw new DaxfsIOException(FileSystemError.InvalidArgument, oldName, "rename flags other than RENAME_NOREPLACE and RENAME_EXCHANGE (RENAME_WHITEOUT) are not supported");
        var (from, fromDir) = TreeNode(r.Node, "rename");
        var (to, toDir) = TreeNode(newDir, "rename");
        if (!ReferenceEquals(from, to) && from.Key != to.Key)
            throw new DaxfsIOException(FileSystemError.CrossDevice, oldName, "a rename cannot move an entry between branches");
        if (Reserved(from, fromDir, oldName) || Reserved(to, toDir, newName))
            throw new DaxfsIOException(FileSystemError.NotPermitted, oldName, "the control entry and branches cannot be renamed");
        RequireWritable(from);
        from.Branch.RenameEntry(fromDir, oldName, toDir, newName, noReplace: (flags & FuseProtocol.RenameNoReplace) != 0,
            exchange: (flags & FuseProtocol.RenameExchange) != 0, keepReplaced: IsOpen(to, toDir, newName));
        Changed(from);
        _reply.Empty(r.Unique);
    }

    private void Link(scoped in Request r)
    {
        ulong oldNode = r.Read<FuseLinkIn>().OldNodeId;
        string name = r.Name(sizeof(FuseLinkIn));
        var (mb, parent) = TreeNode(r.Node, "link");
        var (target, ino) = TreeNode(oldNode, "link");
        if (!ReferenceEquals(mb, target) && mb.Key != target.Key)
            throw new DaxfsIOException(FileSystemError.CrossDevice, name, "a hard link cannot join two branches");
        if (Reserved(mb, parent, name))
            throw new DaxfsIOException(FileSystemError.Exists, name, "the name is reserved for the control entry or a branch");
        RequireWritable(mb);
        var a = mb.Branch.LinkInode(ino, parent, name);
        Changed(mb);
        ReplyEntry(r.Unique, mb, mb.Node(a.Ino), in a);
    }

    private void Open(scoped in Request r)
    {
        uint flags = r.Read<FuseOpenIn>().Flags;
        var (mb, ino, role) = _nodes.Resolve(r.Node);
        if (role == NodeRole.ControlFile)
        {
            ReplyOpen(r.Unique, 0, FuseProtocol.DirectIo); // never cached: each read asks for the state now
            return;
        }
        if (role != NodeRole.Tree)
            throw new DaxfsIOException(FileSystemError.IsADirectory, ControlName);
        if ((flags & 3) != 0) RequireWritable(mb); // O_WRONLY or O_RDWR
        var a = mb.Branch.GetAttributes(ino);
        // A large file opened only for reading skips the page cache: each read is one copy, from the region
        // into the reader's buffer, and N mounts reading one file do not keep N copies of it in memory.
        bool direct = (flags & 3) == 0 && _directIoAllowed && a.Size >= DirectReadSize;
        _open.AddOrUpdate(r.Node, 1, (_, n) => n + 1);
        ReplyOpen(r.Unique, 0, direct ? FuseProtocol.DirectIo | FuseProtocol.KeepCache : FuseProtocol.KeepCache);
    }

    /// <summary>Open handles by node: a file removed while open stays (nameless, link count 0) until its last one closes.</summary>
    private readonly ConcurrentDictionary<ulong, int> _open = new();

    private void Release(scoped in Request r)
    {
        _reply.Empty(r.Unique); // nothing the kernel waits on
        ulong node = r.Node;
        int left;
        while (true)
        {
            if (!_open.TryGetValue(node, out int n))
                return; // the control file, or opened before a restart of the count
            left = n - 1;
            if (left == 0 ? _open.TryRemove(KeyValuePair.Create(node, n)) : _open.TryUpdate(node, left, n))
                break;
        }
        if (left > 0)
            return;
        try
        {
            var (mb, ino, role) = _nodes.Resolve(node);
            if (role == NodeRole.Tree && !mb.ReadOnly && mb.Branch.IsOrphan(ino))
                mb.Branch.ReleaseInode(ino); // its last handle closed: the nameless file goes
        }
        catch (DaxfsException)
        {
            // The branch ended or is frozen meanwhile: the nameless file goes with it (compaction and commits
            // never carry a file no directory names).
        }
    }

    /// <summary>
    /// fallocate, as tmpfs has it: mode 0 grows the file to cover the range (its new bytes read as zeros),
    /// KEEP_SIZE alone changes nothing, PUNCH_HOLE (with KEEP_SIZE) makes the range read as zeros. A branch
    /// stores a punched range as written zeros (its log has no hole record yet). Other modes (ZERO_RANGE,
    /// COLLAPSE_RANGE, INSERT_RANGE): EOPNOTSUPP.
    /// </summary>
    private void Fallocate(scoped in Request r)
    {
        var f = r.Read<FuseFallocateIn>();
        var (mb, ino) = TreeNode(r.Node, "fallocate");
        uint mode = f.Mode;
        bool keep = (mode & FuseProtocol.FallocKeepSize) != 0, punch = (mode & FuseProtocol.FallocPunchHole) != 0;
        if ((mode & ~(FuseProtocol.FallocKeepSize | FuseProtocol.FallocPunchHole)) != 0 || (punch && !keep))
        {
            _reply.Error(r.Unique, FuseNative.EOPNOTSUPP);
            return;
        }
        if (f.Length == 0 || f.Offset > long.MaxValue || f.Length > long.MaxValue || (long)f.Offset > long.MaxValue - (long)f.Length)
            throw new DaxfsIOException(FileSystemError.InvalidArgument, $"inode {ino}", "fallocate range");
        RequireWritable(mb);
        long offset = (long)f.Offset, end = offset + (long)f.Length;
        long size = mb.Branch.GetAttributes(ino).Size;
        if (punch)
        {
            long to = Math.Min(end, size);
            for (long at = offset; at < to;)
            {
                int n = (int)Math.Min(to - at, Zeros.Length);
                mb.Branch.WriteInode(ino, at, Zeros.AsSpan(0, n));
                at += n;
            }
        }
        else if (!keep && end > size)
        {
            // The branch stores no reservation: what the region cannot hold now is refused now (ENOSPC), as a full
            // tmpfs refuses it, rather than promised and refused at the write.
            if (end - size > _store.Usage.ArenaFreeBytes)
                throw new RegionFullException(end - size, _store.Usage.ArenaFreeBytes);
            mb.Branch.SetInodeAttributes(ino, end, null, null, null, null);
        }
        Changed(mb);
        _reply.Empty(r.Unique);
    }

    private static readonly byte[] Zeros = new byte[1 << 20];

    // ------------------------------------------------------------------ extended attributes

    private const int ERange = 34;

    /// <summary>Replies with <paramref name="value"/>, or its size when the caller asked for the size (size 0), or ERANGE when it does not fit.</summary>
    private void ReplySized(ulong unique, uint size, ReadOnlySpan<byte> value)
    {
        if (size == 0)
        {
            var o = new FuseGetxattrOut { Size = (uint)value.Length };
            _reply.Struct(unique, in o);
        }
        else if (value.Length > size)
        {
            _reply.Error(unique, ERange);
        }
        else
        {
            _reply.Bytes(unique, value);
        }
    }

    private void GetXattr(scoped in Request r)
    {
        uint size = r.Read<FuseGetxattrIn>().Size;
        string name = r.Name(sizeof(FuseGetxattrIn));
        var (mb, ino, role) = _nodes.Resolve(r.Node);
        if (XattrTable.NameProblem(name) is { } why)
            throw new DaxfsIOException(XattrTable.KnownNamespace(name) ? FileSystemError.InvalidArgument : FileSystemError.NotSupported, name, why);
        var attrs = role == NodeRole.Tree ? mb.Branch.GetXattrs(ino) : XattrsNone;
        if (!attrs.TryGetValue(name, out var value))
            throw new DaxfsIOException(FileSystemError.NoData, name);
        ReplySized(r.Unique, size, value);
    }

    private void ListXattr(scoped in Request r)
    {
        uint size = r.Read<FuseGetxattrIn>().Size;
        var (mb, ino, role) = _nodes.Resolve(r.Node);
        var attrs = role == NodeRole.Tree ? mb.Branch.GetXattrs(ino) : XattrsNone;
        var list = new List<byte>();
        foreach (var name in attrs.Keys)
        {
            list.AddRange(Encoding.UTF8.GetBytes(name));
            list.Add(0);
        }
        ReplySized(r.Unique, size, list.ToArray());
    }

    private void SetXattr(scoped in Request r)
    {
        var s = r.Read<FuseSetxattrIn>();
        string name = r.Name(sizeof(FuseSetxattrIn), out int end);
        if ((ulong)r.Body.Length < (ulong)end + s.Size)
            throw new DaxfsIOException(FileSystemError.InvalidArgument, name, "attribute value shorter than it says");
        var (mb, ino) = TreeNode(r.Node, "setxattr");
        RequireWritable(mb);
        if ((s.Flags & ~3u) != 0)
            throw new DaxfsIOException(FileSystemError.InvalidArgument, name, $"setxattr flags {s.Flags}");
        mb.Branch.SetXattr(ino, name, r.Body.Slice(end, (int)s.Size), s.Flags);
        Changed(mb);
        _reply.Empty(r.Unique);
    }

    private void RemoveXattr(scoped in Request r)
    {
        string name = r.Name(0);
        var (mb, ino) = TreeNode(r.Node, "removexattr");
        RequireWritable(mb);
        mb.Branch.RemoveXattr(ino, name);
        Changed(mb);
        _reply.Empty(r.Unique);
    }

    private static readonly IReadOnlyDictionary<string, byte[]> XattrsNone = new Dictionary<string, byte[]>();

    private void Read(scoped in Request r)
    {
        var rd = r.Read<FuseReadIn>();
        var (mb, ino, role) = _nodes.Resolve(r.Node);
        if (role == NodeRole.ControlFile)
        {
            var text = Encoding.UTF8.GetBytes(ControlText(mb));
            int from = (int)Math.Min((ulong)text.Length, rd.Offset);
            _reply.Bytes(r.Unique, text.AsSpan(from, Math.Min(text.Length - from, (int)rd.Size)));
            return;
        }
        if (role != NodeRole.Tree)
            throw new DaxfsIOException(FileSystemError.IsADirectory, ControlName);
        // The lease keeps the bytes under the spans from being reused by another process (one that ends this
        // branch meanwhile) until the kernel has copied them out of the mapping: the reply is sent inside it.
        using (_store.BeginReadScope())
            _reply.Data(r.Unique, mb.Branch.ReadInode(ino, (long)rd.Offset, rd.Size));
        if (rd.Size >= CheckAheadMinimum)
            CheckAhead(r.Node, (long)rd.Offset, (long)rd.Offset + rd.Size);
    }

    private void Write(scoped in Request r)
    {
        var w = r.Read<FuseWriteIn>();
        if ((ulong)r.Body.Length < (ulong)sizeof(FuseWriteIn) + w.Size)
            throw new DaxfsIOException(FileSystemError.InvalidArgument, "request", "write shorter than it says");
        var data = r.Body.Slice(sizeof(FuseWriteIn), (int)w.Size);
        var (mb, ino, role) = _nodes.Resolve(r.Node);
        bool lifecycle = false;
        if (role == NodeRole.ControlFile)
            lifecycle = Command(mb, data);
        else if (role != NodeRole.Tree)
            throw new DaxfsIOException(FileSystemError.IsADirectory, ControlName);
        else
        {
            RequireWritable(mb);
            mb.Branch.WriteInode(ino, (long)w.Offset, data);
            Changed(mb);
        }
        var o = new FuseWriteOut { Size = w.Size };
        _reply.Struct(r.Unique, in o);
        if (lifecycle)
            LookNow(); // what a commit or an end changed elsewhere drops from the kernel's caches now, not within 0.1 s
    }

    private void StatFs(scoped in Request r)
    {
        var u = _store.Usage;
        var s = new FuseStatfsOut
        {
            Blocks = (ulong)(u.Capacity / 4096),
            Bfree = (ulong)(u.ArenaFreeBytes / 4096),
            Bavail = ReadOnly ? 0 : (ulong)(u.ArenaFreeBytes / 4096),
            Files = 1UL << 32,
            Ffree = (1UL << 32) - (ulong)u.BaseInodes,
            Bsize = 4096,
            NameLen = 255,
            Frsize = 4096,
        };
        _reply.Struct(r.Unique, in s);
    }

    // Nothing to do on close (writes reach the branch as they come); ENOSYS makes the kernel stop sending
    // FLUSH (it still writes back dirty mapped pages before a close returns).
    private void Flush(scoped in Request r) => _reply.Error(r.Unique, FuseNative.ENOSYS);

    // ------------------------------------------------------------------ directories

    /// <summary>One entry of a listing: its name, node, attributes and the branch entry that owns the node.</summary>
    private readonly record struct Listed(string Name, ulong Node, InodeAttributes Attributes, MountedBranch Owner);

    // Listings being read, by directory node and open handle (handle 0 when the kernel opens directories without
    // asking): taken at the READDIR of offset 0, so a listing read in several requests is one snapshot.
    private readonly ConcurrentDictionary<(ulong Node, ulong Fh), List<Listed>> _listings = new();

    /// <summary>At most this many listings are kept between the requests that read them.</summary>
    private const int MaxListings = 1024;

    private void OpenDir(scoped in Request r)
    {
        // The kernel keeps listings in its cache and reads them from there while the directory is unchanged:
        // it drops one itself on a change made through this mount, and on one made elsewhere when the watcher
        // invalidates the node. A kernel that can open directories without asking (it then keeps their listings
        // cached too) is told so, and a repeated walk (git status, find, a build) costs no request per directory
        // at all; an older one gets a handle.
        if (_noOpendir)
        {
            _reply.Error(r.Unique, FuseNative.ENOSYS);
            return;
        }
        var (mb, ino, role) = _nodes.Resolve(r.Node);
        if (role == NodeRole.ControlFile || (role == NodeRole.Tree && mb.Branch.GetAttributes(ino).Kind != NodeKind.Directory))
            throw new DaxfsIOException(FileSystemError.NotADirectory, $"node {r.Node}");
        ReplyOpen(r.Unique, (ulong)Interlocked.Increment(ref _nextFh), role == NodeRole.Tree ? FuseProtocol.CacheDir | FuseProtocol.KeepCache : 0);
    }

    private void ReleaseDir(scoped in Request r)
    {
        _listings.TryRemove((r.Node, r.Read<FuseReleaseIn>().Fh), out _);
        _reply.Empty(r.Unique);
    }

    /// <summary>What directory <paramref name="node"/> lists now, without "." and "..".</summary>
    private List<Listed> List(ulong node)
    {
        var (mb, ino, role) = _nodes.Resolve(node);
        var list = new List<Listed>();
        switch (role)
        {
            case NodeRole.ControlDir:
                list.Add(new("ctl", NodeIds.Control(mb.Index, NodeIds.ControlFileIno), ControlAttributes(mb, NodeRole.ControlFile), mb));
                list.Add(new("branches", NodeIds.Control(mb.Index, NodeIds.ChildrenDirIno), ControlAttributes(mb, NodeRole.ChildrenDir), mb));
                return list;
            case NodeRole.ChildrenDir:
                foreach (var (name, parent) in _store.LiveBranches())
                    if (parent == mb.Name && ChildBranch(mb, name) is { } child)
                        list.Add(new(name, child.RootNode, child.Branch.GetAttributes(Branch.RootInode), child));
                return list;
            case NodeRole.ControlFile:
                throw new DaxfsIOException(FileSystemError.NotADirectory, "ctl");
        }
        bool regionRoot = RegionMode && ino == Branch.RootInode && ReferenceEquals(mb, _nodes.Root);
        var branches = regionRoot ? _store.LiveBranches() : [];
        var shadowed = branches.Select(b => "@" + b.Name).ToHashSet(StringComparer.Ordinal);
        foreach (var (name, a) in mb.Branch.ReadDirectory(ino))
            if (!shadowed.Contains(name) && !(ino == Branch.RootInode && name == ControlName)) // the control entry hides a real one
                list.Add(new(name, mb.Node(a.Ino), a, mb));
        foreach (var (name, _) in branches)
        {
            try
            {
                if (RegionBranch(name) is { } b)
                    list.Add(new("@" + name, b.RootNode, b.Branch.GetAttributes(Branch.RootInode), b));
            }
            catch (DaxfsException) { } // ended or fenced meanwhile: not listed
        }
        return list;
    }

    private ulong ParentNodeOf(MountedBranch mb, long ino, NodeRole role) => role switch
    {
        NodeRole.ControlDir => mb.RootNode,
        NodeRole.ChildrenDir => NodeIds.Control(mb.Index, NodeIds.ControlDirIno),
        _ when ino == Branch.RootInode => mb.Index == 0 ? FuseProtocol.RootId : mb.ParentNode,
        _ => mb.Node(mb.Branch.ParentOf(ino)),
    };

    private void ReadDir(scoped in Request r)
    {
        bool plus = r.Header.Opcode == FuseProtocol.ReadDirPlus;
        var rd = r.Read<FuseReadIn>();
        var key = (r.Node, rd.Fh);
        if (rd.Offset == 0 || !_listings.TryGetValue(key, out var list))
        {
            // A new pass over the directory (or one whose listing was dropped): take it now and keep it for the
            // requests that continue this pass. Without a handle (fh 0) nothing says when a pass is abandoned,
            // so the kept listings are bounded.
            list = List(r.Node);
            if (_listings.Count >= MaxListings)
                _listings.Clear();
            _listings[key] = list;
        }
        var (self, ino, role) = _nodes.Resolve(r.Node);
        int size = (int)Math.Min(rd.Size, 1 << 20);
        var buffer = new byte[size];
        int used = 0;
        // Entry k (k = 0 ".", 1 "..", then the children) is resumed with offset k; each entry's cookie is k + 1.
        for (long k = (long)rd.Offset; k < list.Count + 2; k++)
        {
            string name;
            ulong node;
            uint type;
            Listed entry = default;
            bool dot = k < 2;
            if (k == 0) { name = "."; node = r.Node; type = 4; }
            else if (k == 1) { name = ".."; node = ParentNodeOf(self, ino, role); type = 4; }
            else
            {
                entry = list[(int)(k - 2)];
                (name, node) = (entry.Name, entry.Node);
                type = entry.Attributes.Kind switch
                {
                    NodeKind.Directory => 4u, NodeKind.Symlink => 10u, NodeKind.Fifo => 1u, NodeKind.CharDevice => 2u,
                    NodeKind.BlockDevice => 6u, NodeKind.Socket => 12u, _ => 8u,
                };
            }
            int nameLen = Encoding.UTF8.GetByteCount(name);
            int direntSize = (sizeof(FuseDirent) + nameLen + 7) & ~7;
            int entrySize = plus ? sizeof(FuseEntryOut) + direntSize : direntSize;
            if (used + entrySize > size)
                break;
            var span = buffer.AsSpan(used, entrySize);
            span.Clear();
            int at = 0;
            if (plus)
            {
                var attributes = entry.Attributes;
                var e = dot ? default : Entry(entry.Owner, node, in attributes);
                MemoryMarshal.Write(span, in e);
                at = sizeof(FuseEntryOut);
                if (!dot) entry.Owner.Known[node] = 0;
            }
            var d = new FuseDirent { Ino = node, Off = (ulong)(k + 1), NameLen = (uint)nameLen, Type = type };
            MemoryMarshal.Write(span[at..], in d);
            Encoding.UTF8.GetBytes(name, span[(at + sizeof(FuseDirent))..]);
            used += entrySize;
        }
        if (used == 0)
            _listings.TryRemove(KeyValuePair.Create(key, list)); // the end of this pass: the kernel reads until an empty reply
        _reply.Bytes(r.Unique, buffer.AsSpan(0, used));
    }

    // ------------------------------------------------------------------ INIT

    private void Init(scoped in Request r)
    {
        var i = r.Read<FuseInitIn>();
        if (i.Major != FuseProtocol.Major)
        {
            _reply.Error(r.Unique, FuseNative.EPROTO);
            return;
        }
        // PosixAcl: the kernel enforces POSIX ACLs (system.posix_acl_*), which the branch stores as attributes.
        uint wanted = FuseProtocol.AsyncRead | FuseProtocol.BigWrites | FuseProtocol.AutoInvalData | FuseProtocol.PosixAcl | FuseProtocol.DontMask | FuseProtocol.DoReaddirplus
            | FuseProtocol.ReaddirplusAuto | FuseProtocol.ParallelDirops | FuseProtocol.MaxPagesFlag | FuseProtocol.CacheSymlinks | FuseProtocol.AsyncDio;
        // Direct reads need mmap to keep working on such files, which the kernel allows only when asked (flags2).
        // The kernel reads flags2 whenever the reply sets InitExt, whatever minor version it names.
        bool allowMmap = (i.Flags & FuseProtocol.InitExt) != 0 && (i.Flags2 & FuseProtocol.DirectIoAllowMmap) != 0;
        _directIoAllowed = allowMmap && DirectReadSize != long.MaxValue;
        _noOpendir = (i.Flags & FuseProtocol.NoOpendirSupport) != 0;
        var timeout = CacheTimeout ?? TimeSpan.FromSeconds(60);
        _timeoutSec = (ulong)(timeout.Ticks / TimeSpan.TicksPerSecond);
        _timeoutNsec = (uint)(timeout.Ticks % TimeSpan.TicksPerSecond * 100);
        var o = new FuseInitOut
        {
            Major = FuseProtocol.Major,
            Minor = Math.Min(FuseProtocol.Minor, i.Minor),
            MaxReadahead = Math.Max(i.MaxReadahead, 4u << 20),
            Flags = (i.Flags & wanted) | (_directIoAllowed ? FuseProtocol.InitExt : 0),
            Flags2 = _directIoAllowed ? FuseProtocol.DirectIoAllowMmap : 0,
            MaxBackground = 64,
            CongestionThreshold = 48,
            MaxWrite = 4 << 20,
            TimeGran = 1,
            MaxPages = 1024, // the kernel caps this at its own limit (256 on older kernels)
        };
        // io_uring: offered by the kernel (its module parameter is on) in flags2; asked for only once every queue's
        // ring and buffers are ready, so a refusal here leaves the connection on /dev/fuse.
        if (Uring != UringMode.Off)
        {
            bool offered = (i.Flags & FuseProtocol.InitExt) != 0 && (i.Flags2 & UringTransport.OverIoUringFlag2) != 0;
            if (!offered)
            {
                Volatile.Write(ref _transport, "/dev/fuse (the kernel did not offer io_uring: its fuse module parameter enable_uring is off)");
            }
            else
            {
                // Each entry's payload buffer must hold max_write and max_pages pages: both 1 MiB here.
                o.MaxWrite = 1 << 20;
                o.MaxPages = 256;
                _uring = UringTransport.Prepare(this, _reply.Fd, _log, UringDepth, 1 << 20, out string? why);
                if (_uring is null)
                {
                    Volatile.Write(ref _transport, $"/dev/fuse (io_uring could not be set up: {why})");
                    _log.WriteLine($"daxfs mount: io_uring could not be set up ({why}); requests are served through /dev/fuse");
                }
                else
                {
                    o.Flags |= FuseProtocol.InitExt;
                    o.Flags2 |= UringTransport.OverIoUringFlag2;
                    Volatile.Write(ref _transport, $"io_uring ({_uring.QueueCount} queues of {UringDepth} entries, one per CPU)");
                }
            }
        }
        _reply.Struct(r.Unique, in o);
        _uring?.Start(); // registration needs the INIT reply in the kernel's hands
        Initialized?.Invoke();
    }
}
