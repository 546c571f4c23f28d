using System.Collections.Concurrent;
using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
using System.Text;
using Daxfs.Branching.Index;

namespace Daxfs.Branching.Fuse;

/// <summary>
/// Serves one branch to the kernel over a /dev/fuse connection: reads requests, answers them from the
/// branch, and writes file data straight from the mapped region into the reply (writev with vectors that
/// point into the mapping), so our process never copies it.
/// </summary>
internal sealed unsafe class FuseServer
{
    private const int BufferSize = (4 << 20) + 64 * 1024; // max_write plus headers

    private readonly int _fd;
    private readonly Store _store;
    private readonly Branch _branch;
    private readonly bool _readOnly;
    private readonly ConcurrentDictionary<long, byte> _known = new();
    // Listings being read, by directory and open handle (handle 0 when the kernel opens directories without
    // asking): taken at the READDIR of offset 0, so a listing read in several requests is one snapshot.
    private readonly ConcurrentDictionary<(long Node, ulong Fh), List<(string Name, InodeAttributes Attributes)>> _listings = new();
    private readonly long[] _requests = new long[64];
    private long _invalidations; // how often the watcher dropped the kernel's caches
    private long _nextFh = 1;
    private object? _lastView;
    private volatile bool _stale;
    private volatile bool _stopped;
    private readonly TextWriter _log;

    public FuseServer(int fd, Store store, Branch branch, bool readOnly, TextWriter log)
    {
        _fd = fd;
        _store = store;
        _branch = branch;
        _readOnly = readOnly || branch.IsMain;
        _log = log;
        _known[FuseProtocol.RootId] = 0;
    }

    /// <summary>The timeout asked for (see <see cref="MountOptions.CacheTimeout"/>); null picks one at INIT.</summary>
    public TimeSpan? CacheTimeout { get; init; }

    // How long the kernel may cache names and attributes, as the protocol carries it (whole seconds and the
    // nanoseconds past them): set at INIT, before any reply that carries it.
    private ulong _timeoutSec = 1;
    private uint _timeoutNsec;

    /// <summary>Files at least this large, opened read-only, are read past the page cache (see <see cref="MountOptions.DirectReadSize"/>).</summary>
    public long DirectReadSize { get; init; } = long.MaxValue;

    // Set by INIT: whether the kernel lets a file opened for direct I/O be mapped shared (without it, mmap would fail).
    private bool _directIoAllowed;

    // Set by INIT: whether the kernel opens directories without asking once OPENDIR answers ENOSYS.
    private bool _noOpendir;

    // Set by INIT: whether the kernel takes FUSE_NOTIFY_INC_EPOCH (protocol 7.44), which makes every name it
    // cached, found or missing, be looked up again. Only then are missing names cached.
    private bool _epochs;

    /// <summary>At most this many listings are kept between the requests that read them.</summary>
    private const int MaxListings = 1024;

    /// <summary>Called once the kernel accepted the INIT reply (its readahead settings are final then).</summary>
    public Action? Initialized { get; init; }

    /// <summary>Serves with <paramref name="threads"/> threads until the file system is unmounted.</summary>
    public void Run(int threads)
    {
        try { _lastView = _branch.CurrentViewToken(); } catch (DaxfsException) { _stale = true; }
        var workers = Enumerable.Range(0, threads).Select(i => new Thread(Loop) { IsBackground = true, Name = $"fuse-{i}" }).ToList();
        foreach (var t in workers) t.Start();
        var watcher = new Thread(Watch) { IsBackground = true, Name = "fuse-watch" };
        watcher.Start();
        var checker = new Thread(CheckerLoop) { IsBackground = true, Name = "fuse-check-ahead" };
        checker.Start();
        foreach (var t in workers) t.Join();
        _stopped = true;
        lock (_ahead) Monitor.Pulse(_ahead);
        watcher.Join();
        checker.Join();
        _log.WriteLine($"daxfs mount: {RequestSummary()}");
    }

    /// <summary>How many requests of each kind the kernel sent, most frequent first ("served 12 requests: LOOKUP 5, …").</summary>
    internal string RequestSummary()
    {
        var counts = _requests.Select((n, op) => (Op: (uint)op, N: Interlocked.Read(ref _requests[op]))).Where(c => c.N > 0)
            .OrderByDescending(c => c.N).ToList();
        return $"served {counts.Sum(c => c.N)} requests" + (counts.Count == 0 ? "" : ": " + string.Join(", ", counts.Select(c => $"{FuseProtocol.Name(c.Op)} {c.N}")))
            + $"; dropped the kernel's caches {Interlocked.Read(ref _invalidations)} times for changes made elsewhere";
    }

    // ------------------------------------------------------------------ checking base data ahead of large reads

    /// <summary>Reads at least this large have the base data after them checked ahead (see <see cref="CheckAhead"/>).</summary>
    private const int CheckAheadMinimum = 128 << 10;

    /// <summary>How far past a large read the checker goes.</summary>
    private const long CheckAheadWindow = 16L << 20;

    private sealed class AheadWindow
    {
        /// <summary>The file being read, where its last large read ended, and the range still to check.</summary>
        public long Node, LastEnd, From, To;

        /// <summary>Moves on each new window, so a step of an older one cannot end a newer one.</summary>
        public long Generation;
    }

    private readonly AheadWindow _ahead = new();

    /// <summary>
    /// The base image's data is checked against its checksums on its first read, 64 KiB at a time, and on a
    /// large sequential read that check would otherwise sit between each request and its reply. Once a large
    /// read continues the previous one of the same file (offset = where that one ended), a background thread
    /// resolves the next <see cref="CheckAheadWindow"/> bytes of the file the same way a read would, which
    /// checks them (and maps their pages into this process) while the reader is still busy with what it has:
    /// work for the core the reader and this server leave idle while they wait on each other. A read that
    /// jumps, or one of another file, stops the checking until a read continues it: large random reads cost
    /// nothing extra.
    /// </summary>
    private void CheckAhead(long node, long offset, long end)
    {
        lock (_ahead)
        {
            if (_ahead.Node != node || _ahead.LastEnd != offset)
            {
                _ahead.Node = node;
                _ahead.LastEnd = end;
                _ahead.From = _ahead.To = end;
                _ahead.Generation++;
                return;
            }
            _ahead.LastEnd = end;
            if (end + CheckAheadWindow / 2 <= _ahead.To)
                return; // still far enough ahead
            _ahead.From = Math.Max(_ahead.From, end);
            _ahead.To = end + CheckAheadWindow;
            Monitor.Pulse(_ahead);
        }
    }

    private void CheckerLoop()
    {
        const int Step = 1 << 20;
        while (true)
        {
            long node, from, generation;
            lock (_ahead)
            {
                while (!_stopped && _ahead.From >= _ahead.To)
                    Monitor.Wait(_ahead);
                if (_stopped)
                    return;
                node = _ahead.Node;
                from = _ahead.From;
                generation = _ahead.Generation;
                _ahead.From += Step; // claimed
            }
            if (RegionLost() is not null)
            {
                StopCheckingAhead(generation);
                continue;
            }
            try
            {
                using (_store.BeginReadScope())
                {
                    var data = _branch.ReadInode(node, from, Step);
                    var pieces = new ReadResult.RawEnumerator(data); // walking the pieces checks them
                    while (pieces.MoveNext(out _, out _)) { }
                    if (data.Length < Step)
                        StopCheckingAhead(generation); // the end of the file
                }
            }
            catch (Exception e)
            {
                // A damaged chunk, a gone inode or a stale branch: the reader's own request reports it. Anything
                // else is logged; either way only this window ends, never the server.
                if (e is not (DaxfsException or ObjectDisposedException or IOException))
                    _log.WriteLine($"daxfs mount: checking ahead in inode {node} at {from}: {e.GetType().Name}: {e.Message}");
                StopCheckingAhead(generation);
            }
        }
    }

    private void StopCheckingAhead(long generation)
    {
        lock (_ahead)
        {
            if (_ahead.Generation == generation)
                _ahead.From = _ahead.To;
        }
    }

    // ------------------------------------------------------------------ watching for changes made elsewhere

    /// <summary>
    /// Notices changes this mount did not make (a commit that invalidated the branch, another process writing
    /// into it, a new version of main) and tells the kernel to drop what it cached, so no stale data is served.
    /// </summary>
    private void Watch()
    {
        while (!_stopped)
        {
            Thread.Sleep(100);
            if (Volatile.Read(ref _lost) is null && RegionLost() is not null)
            {
                InvalidateAll(); // what the kernel cached is dropped too: every read comes here and fails
                continue;
            }
            if (Volatile.Read(ref _lost) is not null)
                continue;
            object? view;
            try
            {
                view = _branch.CurrentViewToken();
            }
            catch (Exception e) when (e is BranchInvalidatedException or CorruptionException)
            {
                // Ended elsewhere, or damage found in what it is built on (fenced): whatever the kernel cached
                // is dropped once, so every later request comes here and gets its answer (ESTALE, EIO).
                if (!_stale)
                {
                    _stale = true;
                    InvalidateAll();
                }
                continue;
            }
            catch (DaxfsException)
            {
                continue;
            }
            catch (ObjectDisposedException)
            {
                return;
            }
            if (!ReferenceEquals(view, Volatile.Read(ref _lastView)))
            {
                Volatile.Write(ref _lastView, view);
                InvalidateAll();
            }
        }
    }

    private void InvalidateAll()
    {
        Interlocked.Increment(ref _invalidations);
        var iov = stackalloc FuseNative.IoVec[2];
        if (_epochs)
        {
            // Every name the kernel cached (found or missing, including those of lookups still under way) is
            // looked up again on its next use: a file created, removed or renamed elsewhere shows at once.
            var e = new FuseOutHeader { Len = (uint)sizeof(FuseOutHeader), Error = FuseProtocol.NotifyIncEpoch, Unique = 0 };
            iov[0] = new FuseNative.IoVec { Base = &e, Length = (nuint)sizeof(FuseOutHeader) };
            if (FuseNative.Writev(_fd, iov, 1) < 0)
                _log.WriteLine($"daxfs mount: dropping the kernel's cached names failed: {FuseNative.Describe(FuseNative.LastError)}");
        }
        foreach (var ino in _known.Keys)
        {
            var h = new FuseOutHeader { Len = (uint)(sizeof(FuseOutHeader) + sizeof(FuseNotifyInvalInode)), Error = FuseProtocol.NotifyInvalInode, Unique = 0 };
            var body = new FuseNotifyInvalInode { Ino = (ulong)ino, Offset = 0, Length = 0 };
            iov[0] = new FuseNative.IoVec { Base = &h, Length = (nuint)sizeof(FuseOutHeader) };
            iov[1] = new FuseNative.IoVec { Base = &body, Length = (nuint)sizeof(FuseNotifyInvalInode) };
            FuseNative.Writev(_fd, iov, 2); // an inode the kernel already forgot answers ENOENT: nothing to drop
        }
    }

    /// <summary>Records that this mount changed the branch, so the watcher does not take it for a change from elsewhere.</summary>
    private void Changed()
    {
        try { Volatile.Write(ref _lastView, _branch.CurrentViewToken()); }
        catch (DaxfsException) { }
    }

    // ------------------------------------------------------------------ the request loop

    private void Loop()
    {
        byte* buffer = (byte*)NativeMemory.AlignedAlloc(BufferSize, 4096);
        OpenSplicePipe();
        try
        {
            while (true)
            {
                nint n = FuseNative.Read(_fd, buffer, BufferSize);
                if (n < 0)
                {
                    int errno = FuseNative.LastError;
                    if (errno is FuseNative.EINTR or FuseNative.EAGAIN or FuseNative.ENOENT)
                        continue; // interrupted, or the request was withdrawn
                    if (errno is FuseNative.ENODEV or FuseNative.ECONNABORTED)
                        return; // unmounted
                    _log.WriteLine($"daxfs mount: reading /dev/fuse failed: {FuseNative.Describe(errno)}");
                    return;
                }
                if (n < sizeof(FuseInHeader))
                    continue;
                ref var header = ref Unsafe.AsRef<FuseInHeader>(buffer);
                var body = new ReadOnlySpan<byte>(buffer + sizeof(FuseInHeader), (int)n - sizeof(FuseInHeader));
                if (header.Opcode == FuseProtocol.Destroy)
                {
                    ReplyEmpty(header.Unique);
                    return;
                }
                try
                {
                    if (header.Opcode is not (FuseProtocol.Init or FuseProtocol.Forget or FuseProtocol.BatchForget or FuseProtocol.Interrupt))
                        CheckRegion();
                    Dispatch(ref header, body);
                }
                catch (Exception e)
                {
                    int errno = ErrnoOf(e);
                    if (errno == FuseNative.EIO && !ReferenceEquals(e, Volatile.Read(ref _lost)))
                        _log.WriteLine($"daxfs mount: opcode {header.Opcode} on inode {header.NodeId}: {e.GetType().Name}: {e.Message}");
                    ReplyError(header.Unique, errno);
                }
            }
        }
        finally
        {
            NativeMemory.AlignedFree(buffer);
            CloseSplicePipe();
        }
    }

    /// <summary>Set once the region file was found truncated under the mount: every request after that is EIO.</summary>
    private CorruptionException? _lost;

    /// <summary>
    /// Checks, before anything of the region is touched, that its file still backs the whole mapping: a file
    /// truncated under the mount (by mistake or by a hostile user with write access) would otherwise raise
    /// SIGBUS in this process on the next access past its new end. Once it is found short, every request is
    /// answered EIO (logged once) and the server stays up until it is unmounted.
    /// </summary>
    private void CheckRegion()
    {
        if (RegionLost() is { } lost)
            throw lost;
    }

    /// <summary>The truncation found (recorded and logged the first time), or null while the file backs the mapping.</summary>
    private CorruptionException? RegionLost()
    {
        if (Volatile.Read(ref _lost) is { } lost)
            return lost;
        try
        {
            _store.CheckBacking();
            return null;
        }
        catch (CorruptionException e)
        {
            if (Interlocked.CompareExchange(ref _lost, e, null) is null)
                _log.WriteLine($"daxfs mount: {e.Message}; every request is answered EIO from now on (unmount, then restore the region)");
            return Volatile.Read(ref _lost);
        }
    }

    internal static int ErrnoOf(Exception e) => e switch
    {
        DaxfsIOException io => io.Error switch
        {
            FileSystemError.TooManyLinks => 40,
            _ => io.Errno,
        },
        BranchInvalidatedException or BranchNotFoundException => FuseNative.ESTALE,
        BranchReadOnlyException => FuseNative.EROFS,
        RegionFullException => FuseNative.ENOSPC,
        StoreBusyException => FuseNative.EAGAIN,
        ArgumentException => FuseNative.EINVAL,
        _ => FuseNative.EIO,
    };

    private static string CString(ReadOnlySpan<byte> body, out ReadOnlySpan<byte> rest)
    {
        int nul = body.IndexOf((byte)0);
        if (nul < 0) throw new DaxfsIOException(FileSystemError.InvalidArgument, "request", "name without terminator");
        rest = body[(nul + 1)..];
        return Encoding.UTF8.GetString(body[..nul]);
    }

    private void RequireWritable()
    {
        if (_readOnly)
            throw new BranchReadOnlyException(_branch.Name, "mounted read-only");
    }

    private void Dispatch(ref FuseInHeader h, ReadOnlySpan<byte> body)
    {
        long node = (long)h.NodeId;
        Interlocked.Increment(ref _requests[h.Opcode & 63]);
        switch (h.Opcode)
        {
            case FuseProtocol.Init:
                DoInit(h.Unique, body);
                return;
            case FuseProtocol.Forget:
            case FuseProtocol.BatchForget:
            case FuseProtocol.Interrupt:
                return; // no reply
            case FuseProtocol.Lookup:
            {
                string name = CString(body, out _);
                if (_branch.TryLookupChild(node, name, out var a))
                {
                    ReplyEntry(h.Unique, in a);
                }
                else if (_epochs)
                {
                    // Node 0: missing, and the kernel may keep that for the entry timeout (a tool probing for a
                    // .gitignore in every directory asks once); the watcher's epoch drops it on a change elsewhere.
                    var e = Entry(default);
                    ReplyStruct(h.Unique, in e);
                }
                else
                {
                    ReplyError(h.Unique, FuseNative.ENOENT); // not cached: nothing could drop it on a change elsewhere
                }
                return;
            }
            case FuseProtocol.GetAttr:
            {
                var a = _branch.GetAttributes(node);
                ReplyAttr(h.Unique, in a);
                return;
            }
            case FuseProtocol.SetAttr:
            {
                var s = MemoryMarshal.Read<FuseSetAttrIn>(body);
                RequireWritable();
                long? size = (s.Valid & FuseProtocol.FattrSize) != 0 ? (long)s.Size : null;
                uint? mode = (s.Valid & FuseProtocol.FattrMode) != 0 ? s.Mode & 0xFFF : null;
                uint? uid = (s.Valid & FuseProtocol.FattrUid) != 0 ? s.Uid : null;
                uint? gid = (s.Valid & FuseProtocol.FattrGid) != 0 ? s.Gid : null;
                long? mtime = (s.Valid & FuseProtocol.FattrMtimeNow) != 0 ? (DateTime.UtcNow - DateTime.UnixEpoch).Ticks * 100
                    : (s.Valid & FuseProtocol.FattrMtime) != 0 ? (long)s.Mtime * 1_000_000_000L + s.MtimeNsec : null;
                InodeAttributes a = size is null && mode is null && uid is null && gid is null && mtime is null
                    ? _branch.GetAttributes(node) // atime or ctime only: not stored
                    : _branch.SetInodeAttributes(node, size, mode, uid, gid, mtime);
                Changed();
                ReplyAttr(h.Unique, in a);
                return;
            }
            case FuseProtocol.ReadLink:
                ReplyBytes(h.Unique, Encoding.UTF8.GetBytes(_branch.ReadLinkInode(node)));
                return;
            case FuseProtocol.Symlink:
            {
                string name = CString(body, out var rest);
                string target = CString(rest, out _);
                var a = Create(node, name, NodeKind.Symlink, 0x1FF, ref h, target);
                ReplyEntry(h.Unique, in a);
                return;
            }
            case FuseProtocol.Mknod:
            {
                uint mode = MemoryMarshal.Read<uint>(body);
                string name = CString(body[16..], out _);
                if ((mode & 0xF000) != 0x8000)
                    throw new DaxfsIOException(FileSystemError.InvalidArgument, name, "only regular files can be created");
                var a = Create(node, name, NodeKind.File, mode, ref h, "");
                ReplyEntry(h.Unique, in a);
                return;
            }
            case FuseProtocol.Mkdir:
            {
                uint mode = MemoryMarshal.Read<uint>(body);
                string name = CString(body[8..], out _);
                var a = Create(node, name, NodeKind.Directory, mode, ref h, "");
                ReplyEntry(h.Unique, in a);
                return;
            }
            case FuseProtocol.Unlink:
            case FuseProtocol.Rmdir:
            {
                string name = CString(body, out _);
                RequireWritable();
                _branch.RemoveEntry(node, name, directory: h.Opcode == FuseProtocol.Rmdir);
                Changed();
                ReplyEmpty(h.Unique);
                return;
            }
            case FuseProtocol.Rename:
            case FuseProtocol.Rename2:
            {
                long newDir = (long)MemoryMarshal.Read<ulong>(body);
                uint flags = h.Opcode == FuseProtocol.Rename2 ? MemoryMarshal.Read<uint>(body[8..]) : 0;
                var names = body[(h.Opcode == FuseProtocol.Rename2 ? 16 : 8)..];
                string oldName = CString(names, out var rest);
                string newName = CString(rest, out _);
                if ((flags & ~FuseProtocol.RenameNoReplace) != 0)
                    throw new DaxfsIOException(FileSystemError.InvalidArgument, oldName, "rename flags other than RENAME_NOREPLACE are not supported");
                RequireWritable();
                _branch.RenameEntry(node, oldName, newDir, newName, noReplace: (flags & FuseProtocol.RenameNoReplace) != 0);
                Changed();
                ReplyEmpty(h.Unique);
                return;
            }
            case FuseProtocol.Link:
                ReplyError(h.Unique, FuseNative.EPERM); // a branch has no hard links
                return;
            case FuseProtocol.Open:
            {
                uint flags = MemoryMarshal.Read<uint>(body);
                if ((flags & 3) != 0) RequireWritable(); // O_WRONLY or O_RDWR
                var a = _branch.GetAttributes(node);
                // A large file opened only for reading skips the page cache: each read is one copy, from the region
                // into the reader's buffer, and N mounts reading one file do not keep N copies of it in memory.
                bool direct = (flags & 3) == 0 && _directIoAllowed && a.Size >= DirectReadSize;
                ReplyOpen(h.Unique, 0, direct ? FuseProtocol.DirectIo | FuseProtocol.KeepCache : FuseProtocol.KeepCache);
                return;
            }
            case FuseProtocol.Create:
            {
                uint mode = MemoryMarshal.Read<uint>(body[4..]);
                string name = CString(body[16..], out _);
                var a = Create(node, name, NodeKind.File, mode, ref h, "");
                ReplyCreate(h.Unique, in a);
                return;
            }
            case FuseProtocol.Read:
            {
                var r = MemoryMarshal.Read<FuseReadIn>(body);
                // The lease keeps the bytes under the spans from being reused by another process (one that
                // ends this branch meanwhile) until the kernel has copied them out of the mapping.
                using (_store.BeginReadScope())
                    ReplyData(h.Unique, _branch.ReadInode(node, (long)r.Offset, r.Size));
                if (r.Size >= CheckAheadMinimum)
                    CheckAhead(node, (long)r.Offset, (long)r.Offset + r.Size);
                return;
            }
            case FuseProtocol.Write:
            {
                var w = MemoryMarshal.Read<FuseWriteIn>(body);
                var data = body.Slice(sizeof(FuseWriteIn), (int)w.Size);
                RequireWritable();
                _branch.WriteInode(node, (long)w.Offset, data);
                Changed();
                Span<byte> reply = stackalloc byte[8];
                reply.Clear();
                MemoryMarshal.Write(reply, w.Size);
                ReplyBytes(h.Unique, reply);
                return;
            }
            case FuseProtocol.StatFs:
            {
                var u = _store.Usage;
                var s = new FuseStatfsOut
                {
                    Blocks = (ulong)(u.Capacity / 4096),
                    Bfree = (ulong)(u.ArenaFreeBytes / 4096),
                    Bavail = _readOnly ? 0 : (ulong)(u.ArenaFreeBytes / 4096),
                    Files = 1UL << 32,
                    Ffree = (1UL << 32) - (ulong)u.BaseInodes,
                    Bsize = 4096,
                    NameLen = 255,
                    Frsize = 4096,
                };
                ReplyStruct(h.Unique, in s);
                return;
            }
            case FuseProtocol.Flush:
                // Nothing to do on close (writes reach the branch as they come); ENOSYS makes the kernel stop
                // sending FLUSH (it still writes back dirty mapped pages before a close returns).
                ReplyError(h.Unique, FuseNative.ENOSYS);
                return;
            case FuseProtocol.Release:
            case FuseProtocol.Fsync:
            case FuseProtocol.FsyncDir:
            case FuseProtocol.Access:
                ReplyEmpty(h.Unique);
                return;
            case FuseProtocol.OpenDir:
            {
                // The kernel keeps listings in its cache and reads them from there while the directory is
                // unchanged: it drops one itself on a change made through this mount, and on one made elsewhere
                // when the watcher invalidates the inode. A kernel that can open directories without asking
                // (it then keeps their listings cached too) is told so, and a repeated walk (git status, find,
                // a build) costs no request per directory at all; an older one gets a handle.
                if (_noOpendir)
                {
                    ReplyError(h.Unique, FuseNative.ENOSYS);
                    return;
                }
                if (_branch.GetAttributes(node).Kind != NodeKind.Directory) // also: ESTALE once the branch is stale
                    ThrowHelper.IO(FileSystemError.NotADirectory, $"inode {node}");
                ReplyOpen(h.Unique, (ulong)Interlocked.Increment(ref _nextFh), FuseProtocol.CacheDir | FuseProtocol.KeepCache);
                return;
            }
            case FuseProtocol.ReleaseDir:
            {
                _listings.TryRemove((node, MemoryMarshal.Read<ulong>(body)), out _);
                ReplyEmpty(h.Unique);
                return;
            }
            case FuseProtocol.ReadDir:
            case FuseProtocol.ReadDirPlus:
                DoReadDir(ref h, body, plus: h.Opcode == FuseProtocol.ReadDirPlus);
                return;
            default:
                // xattrs, locks, ioctl, poll, bmap, fallocate, lseek, copy_file_range: the kernel falls back or reports it.
                ReplyError(h.Unique, h.Opcode == FuseProtocol.Fallocate ? FuseNative.EOPNOTSUPP : FuseNative.ENOSYS);
                return;
        }
    }

    /// <summary>Creates an entry owned by the calling user (mkdir, mknod, create, symlink).</summary>
    private InodeAttributes Create(long parent, string name, NodeKind kind, uint mode, ref FuseInHeader h, string target)
    {
        RequireWritable();
        var a = _branch.CreateInode(parent, name, kind, mode & 0xFFF, h.Uid, h.Gid, target);
        Changed();
        return a;
    }

    private void DoInit(ulong unique, ReadOnlySpan<byte> body)
    {
        var i = MemoryMarshal.Read<FuseInitIn>(body);
        if (i.Major != FuseProtocol.Major)
        {
            ReplyError(unique, FuseNative.EPROTO);
            return;
        }
        uint wanted = FuseProtocol.AsyncRead | FuseProtocol.BigWrites | FuseProtocol.AutoInvalData | FuseProtocol.DoReaddirplus
            | FuseProtocol.ReaddirplusAuto | FuseProtocol.ParallelDirops | FuseProtocol.MaxPagesFlag | FuseProtocol.CacheSymlinks | FuseProtocol.AsyncDio;
        // Direct reads need mmap to keep working on such files, which the kernel allows only when asked (flags2).
        // The kernel reads flags2 whenever the reply sets InitExt, whatever minor version it names.
        bool allowMmap = (i.Flags & FuseProtocol.InitExt) != 0 && (i.Flags2 & FuseProtocol.DirectIoAllowMmap) != 0;
        _directIoAllowed = allowMmap && DirectReadSize != long.MaxValue;
        _noOpendir = (i.Flags & FuseProtocol.NoOpendirSupport) != 0;
        _epochs = i.Minor >= 44;
        var timeout = CacheTimeout ?? TimeSpan.FromSeconds(_epochs ? 60 : 1);
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
        ReplyStruct(unique, in o);
        Initialized?.Invoke();
    }

    private void DoReadDir(ref FuseInHeader h, ReadOnlySpan<byte> body, bool plus)
    {
        var r = MemoryMarshal.Read<FuseReadIn>(body);
        long node = (long)h.NodeId;
        var key = (node, r.Fh);
        if (r.Offset == 0 || !_listings.TryGetValue(key, out var list))
        {
            // A new pass over the directory (or one whose listing was dropped): take it now and keep it for the
            // requests that continue this pass. Without a handle (fh 0) nothing says when a pass is abandoned,
            // so the kept listings are bounded.
            list = _branch.ReadDirectory(node);
            if (_listings.Count >= MaxListings)
                _listings.Clear();
            _listings[key] = list;
        }
        int size = (int)Math.Min(r.Size, 1 << 20);
        var buffer = new byte[size];
        int used = 0;
        // Entry k (k = 0 ".", 1 "..", then the children) is resumed with offset k; each entry's cookie is k + 1.
        for (long k = (long)r.Offset; k < list.Count + 2; k++)
        {
            string name;
            long ino;
            uint type;
            InodeAttributes attrs = default;
            bool dot = k < 2;
            if (k == 0) { name = "."; ino = node; type = 4; }
            else if (k == 1) { name = ".."; ino = node == FuseProtocol.RootId ? node : _branch.ParentOf(node); type = 4; }
            else
            {
                (name, attrs) = list[(int)(k - 2)];
                ino = attrs.Ino;
                type = attrs.Kind switch { NodeKind.Directory => 4u, NodeKind.Symlink => 10u, _ => 8u };
            }
            int nameLen = Encoding.UTF8.GetByteCount(name);
            int direntSize = (24 + nameLen + 7) & ~7;
            int entrySize = plus ? sizeof(FuseEntryOut) + direntSize : direntSize;
            if (used + entrySize > size)
                break;
            var span = buffer.AsSpan(used, entrySize);
            span.Clear();
            int at = 0;
            if (plus)
            {
                var e = dot ? default : Entry(in attrs);
                MemoryMarshal.Write(span, in e);
                at = sizeof(FuseEntryOut);
                if (!dot) _known[ino] = 0;
            }
            MemoryMarshal.Write(span[at..], (ulong)ino);
            MemoryMarshal.Write(span[(at + 8)..], (ulong)(k + 1));
            MemoryMarshal.Write(span[(at + 16)..], (uint)nameLen);
            MemoryMarshal.Write(span[(at + 20)..], type);
            Encoding.UTF8.GetBytes(name, span[(at + 24)..]);
            used += entrySize;
        }
        if (used == 0)
            _listings.TryRemove(KeyValuePair.Create(key, list)); // the end of this pass: the kernel reads until an empty reply
        ReplyBytes(h.Unique, buffer.AsSpan(0, used));
    }

    // ------------------------------------------------------------------ replies

    private FuseAttr ToAttr(in InodeAttributes a)
    {
        uint type = a.Kind switch { NodeKind.Directory => 0x4000u, NodeKind.Symlink => 0xA000u, _ => 0x8000u };
        ulong sec = (ulong)(a.MtimeNs / 1_000_000_000L);
        uint nsec = (uint)(a.MtimeNs % 1_000_000_000L);
        ulong csec = (ulong)(a.CtimeNs / 1_000_000_000L);
        uint cnsec = (uint)(a.CtimeNs % 1_000_000_000L);
        long size = a.Kind == NodeKind.Directory ? 4096 : a.Size;
        return new FuseAttr
        {
            Ino = (ulong)a.Ino,
            Size = (ulong)size,
            Blocks = (ulong)((size + 511) / 512),
            Atime = sec,
            AtimeNsec = nsec,
            Mtime = sec,
            MtimeNsec = nsec,
            Ctime = csec,
            CtimeNsec = cnsec,
            Mode = type | (a.Mode & 0xFFF),
            Nlink = (uint)a.Nlink,
            Uid = a.Uid,
            Gid = a.Gid,
            BlkSize = 4096,
        };
    }

    private FuseEntryOut Entry(in InodeAttributes a) => new()
    {
        NodeId = (ulong)a.Ino,
        Generation = 1,
        EntryValid = _timeoutSec,
        EntryValidNsec = _timeoutNsec,
        AttrValid = _timeoutSec,
        AttrValidNsec = _timeoutNsec,
        Attr = ToAttr(in a),
    };

    private void ReplyEntry(ulong unique, in InodeAttributes a)
    {
        _known[a.Ino] = 0;
        var e = Entry(in a);
        ReplyStruct(unique, in e);
    }

    private void ReplyAttr(ulong unique, in InodeAttributes a)
    {
        var o = new FuseAttrOut
        {
            AttrValid = _timeoutSec,
            AttrValidNsec = _timeoutNsec,
            Attr = ToAttr(in a),
        };
        ReplyStruct(unique, in o);
    }

    private void ReplyOpen(ulong unique, ulong fh, uint flags)
    {
        var o = new FuseOpenOut { Fh = fh, OpenFlags = flags };
        ReplyStruct(unique, in o);
    }

    private void ReplyCreate(ulong unique, in InodeAttributes a)
    {
        _known[a.Ino] = 0;
        Span<byte> reply = stackalloc byte[sizeof(FuseEntryOut) + sizeof(FuseOpenOut)];
        var e = Entry(in a);
        MemoryMarshal.Write(reply, in e);
        var o = new FuseOpenOut { Fh = 0, OpenFlags = FuseProtocol.KeepCache };
        MemoryMarshal.Write(reply[sizeof(FuseEntryOut)..], in o);
        ReplyBytes(unique, reply);
    }

    private void ReplyStruct<T>(ulong unique, in T value) where T : unmanaged
    {
        fixed (T* p = &value)
            ReplyBytes(unique, new ReadOnlySpan<byte>(p, sizeof(T)));
    }

    private void ReplyEmpty(ulong unique) => ReplyBytes(unique, default);

    private void ReplyBytes(ulong unique, ReadOnlySpan<byte> body)
    {
        var h = new FuseOutHeader { Len = (uint)(sizeof(FuseOutHeader) + body.Length), Error = 0, Unique = unique };
        fixed (byte* b = body)
        {
            var iov = stackalloc FuseNative.IoVec[2];
            iov[0] = new FuseNative.IoVec { Base = &h, Length = (nuint)sizeof(FuseOutHeader) };
            iov[1] = new FuseNative.IoVec { Base = b, Length = (nuint)body.Length };
            Send(iov, body.Length == 0 ? 1 : 2);
        }
    }

    private void ReplyError(ulong unique, int errno)
    {
        var h = new FuseOutHeader { Len = (uint)sizeof(FuseOutHeader), Error = -errno, Unique = unique };
        var iov = stackalloc FuseNative.IoVec[1];
        iov[0] = new FuseNative.IoVec { Base = &h, Length = (nuint)sizeof(FuseOutHeader) };
        Send(iov, 1);
    }

    /// <summary>Replies to a read with vectors pointing into the mapping: the kernel copies from there, we never do.</summary>
    private void ReplyData(ulong unique, ReadResult data)
    {
        const int MaxVectors = 64;
        var iov = stackalloc FuseNative.IoVec[MaxVectors + 1];
        var h = new FuseOutHeader { Len = (uint)(sizeof(FuseOutHeader) + data.Length), Error = 0, Unique = unique };
        iov[0] = new FuseNative.IoVec { Base = &h, Length = (nuint)sizeof(FuseOutHeader) };
        int count = 1;
        int pages = PagesTouched((nuint)(&h), (nuint)sizeof(FuseOutHeader)); // pipe slots a spliced reply takes
        var e = new ReadResult.RawEnumerator(data);
        while (e.MoveNext(out byte* p, out int len))
        {
            if (count == MaxVectors + 1)
            {
                // A read spanning very many extents: gather the rest into one buffer.
                ReplyDataCopied(unique, data);
                return;
            }
            iov[count++] = new FuseNative.IoVec { Base = p, Length = (nuint)len };
            pages += PagesTouched((nuint)p, (nuint)len);
        }
        if (data.Length >= SpliceMinimum && pages <= t_pipePages && SendSpliced(iov, count, h.Len))
            return;
        Send(iov, count);
    }

    // ------------------------------------------------------------------ spliced replies

    /// <summary>The pages [<paramref name="address"/>, +<paramref name="length"/>) touches: the pipe slots vmsplice gives it.</summary>
    private static int PagesTouched(nuint address, nuint length) => (int)(((address + length - 1) >> 12) - (address >> 12) + 1);

    /// <summary>Replies at least this large go through the worker's pipe (see <see cref="SendSpliced"/>).</summary>
    private const int SpliceMinimum = 64 << 10;

    [ThreadStatic] private static int t_pipeRead, t_pipeWrite, t_pipePages;

    /// <summary>
    /// Gives this worker a pipe big enough for a whole read reply: 1 MiB of data and the header need 2 MiB,
    /// which takes CAP_SYS_RESOURCE or fs.pipe-max-size of 2 MiB or more; root without either gets 1 MiB
    /// (replies up to 1020 KiB). A user other than root gets no pipe: enlarged pipes count against the user's
    /// pipe-user-pages-soft limit, and past it every pipe of that user, in any program, shrinks. Without a
    /// pipe every reply is written with writev.
    /// </summary>
    private static void OpenSplicePipe()
    {
        t_pipePages = 0;
        var fds = stackalloc int[2];
        if (FuseNative.Pipe2(fds, FuseNative.OCloexec) != 0)
            return;
        t_pipeRead = fds[0];
        t_pipeWrite = fds[1];
        int got = FuseNative.Fcntl(t_pipeWrite, FuseNative.FSetPipeSize, 2 << 20);
        if (got <= 0 && FuseNative.Geteuid() == 0)
            got = FuseNative.Fcntl(t_pipeWrite, FuseNative.FSetPipeSize, 1 << 20);
        if (got > 0)
            t_pipePages = got / 4096;
        else
            CloseSplicePipe();
    }

    private static void CloseSplicePipe()
    {
        if (t_pipeRead > 0) FuseNative.Close(t_pipeRead);
        if (t_pipeWrite > 0) FuseNative.Close(t_pipeWrite);
        t_pipeRead = t_pipeWrite = t_pipePages = 0;
    }

    /// <summary>
    /// Sends a reply by reference: vmsplice puts the header and the mapped pages into the worker's pipe (the
    /// pages are pinned in batches, not one by one as a writev reply has the kernel do), and splice hands them
    /// to /dev/fuse, which copies each page once, straight into the reader's buffer. False (and the pipe left
    /// empty) when the pipe would not take the whole reply or the splice failed; the caller then writes it.
    /// </summary>
    private bool SendSpliced(FuseNative.IoVec* iov, int count, uint total)
    {
        nint put = FuseNative.Vmsplice(t_pipeWrite, iov, (nuint)count, FuseNative.SpliceNonblock);
        if (put != total)
        {
            if (put > 0) DrainPipe();
            return false;
        }
        nint moved = FuseNative.Splice(t_pipeRead, null, _fd, null, total, 0);
        if (moved == total)
            return true;
        int errno = moved < 0 ? FuseNative.LastError : 0;
        DrainPipe();
        if (errno == FuseNative.ENOENT)
            return true; // the request was interrupted and is gone
        // Anything else: this thread stops splicing and the reply is written with writev. If the kernel had
        // already taken the request, it has ended it with an error and that write fails with ENOENT; either
        // way the reader gets an answer.
        _log.WriteLine($"daxfs mount: spliced reply failed ({(moved < 0 ? FuseNative.Describe(errno) : $"{moved} of {total} bytes")}); this thread writes its replies from now on");
        t_pipePages = 0;
        return false;
    }

    /// <summary>Empties the worker's pipe after a reply that did not go through whole, so the next one starts clean.</summary>
    private static void DrainPipe()
    {
        int left;
        var scratch = stackalloc byte[4096];
        while (FuseNative.Ioctl(t_pipeRead, FuseNative.FionRead, &left) == 0 && left > 0)
            if (FuseNative.Read(t_pipeRead, scratch, (nuint)Math.Min(left, 4096)) <= 0)
                break;
    }

    private void ReplyDataCopied(ulong unique, ReadResult data)
    {
        var buffer = data.ToArray();
        ReplyBytes(unique, buffer);
    }

    private void Send(FuseNative.IoVec* iov, int count)
    {
        nint n = FuseNative.Writev(_fd, iov, count);
        if (n < 0)
        {
            int errno = FuseNative.LastError;
            if (errno != FuseNative.ENOENT) // ENOENT: the request was interrupted and is gone
                _log.WriteLine($"daxfs mount: reply failed: {FuseNative.Describe(errno)}");
        }
    }
}
