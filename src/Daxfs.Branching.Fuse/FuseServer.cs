using System.Collections.Concurrent;
using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
using System.Text;
using Daxfs.Branching.Index;

namespace Daxfs.Branching.Fuse;

/// <summary>One request from the kernel: its header and the bytes after it.</summary>
internal readonly ref struct Request(ref FuseInHeader header, ReadOnlySpan<byte> body)
{
    private readonly ref FuseInHeader _header = ref header;

    public ref FuseInHeader Header => ref _header;

    public ReadOnlySpan<byte> Body { get; } = body;

    public ulong Unique => _header.Unique;

    public ulong Node => _header.NodeId;

    /// <summary>The fixed part of the request; EINVAL when the kernel sent fewer bytes than it has.</summary>
    public T Read<T>() where T : unmanaged
    {
        if (Body.Length < Unsafe.SizeOf<T>())
            throw new DaxfsIOException(FileSystemError.InvalidArgument, "request", $"{FuseProtocol.Name(_header.Opcode)} body of {Body.Length} bytes is too short");
        return MemoryMarshal.Read<T>(Body);
    }

    /// <summary>
    /// The NUL-terminated name starting <paramref name="offset"/> bytes into the body; <paramref name="end"/> is
    /// where the next one starts. A name longer than 255 bytes is ENAMETOOLONG, for every call that names an
    /// entry (a symlink's target is not a name: <paramref name="limit"/> lifts the rule).
    /// </summary>
    public string Name(int offset, out int end, int limit = 255)
    {
        if (offset > Body.Length)
            throw new DaxfsIOException(FileSystemError.InvalidArgument, "request", "name past the end of the request");
        var rest = Body[offset..];
        int nul = rest.IndexOf((byte)0);
        if (nul < 0)
            throw new DaxfsIOException(FileSystemError.InvalidArgument, "request", "name without terminator");
        end = offset + nul + 1;
        if (nul > limit)
            throw new DaxfsIOException(FileSystemError.NameTooLong, "request", $"a name of {nul} bytes (at most {limit})");
        return Encoding.UTF8.GetString(rest[..nul]);
    }

    public string Name(int offset) => Name(offset, out _);
}

/// <summary>
/// Serves a region to the kernel over one /dev/fuse connection. Its parts: the request loop (here), one handler
/// per operation (<c>FuseServer.Handlers.cs</c>), the control entry through which branches are forked, committed
/// and ended by file operations (<c>FuseServer.Control.cs</c>), the watchers that follow changes made elsewhere
/// and guard the region file (<c>FuseServer.Watch.cs</c>), the node table that gives every branch its own node
/// numbers (<see cref="NodeTable"/>), and the reply writer that owns splicing (<see cref="ReplyWriter"/>).
/// </summary>
/// <remarks>
/// Two shapes: one branch at the mount's root (<c>-b BRANCH</c>), or the whole region (<see cref="RegionMode"/>):
/// main read-only at the root and every live branch as <c>@NAME</c>.
/// </remarks>
internal sealed unsafe partial class FuseServer
{
    private const int BufferSize = (4 << 20) + 64 * 1024; // max_write plus headers

    private delegate void Handler(scoped in Request request);

    private readonly Store _store;
    private readonly NodeTable _nodes;
    private readonly ReplyWriter _reply;
    private readonly Handler?[] _handlers = new Handler?[64];
    private readonly long[] _requests = new long[64];
    private readonly TextWriter _log;
    private volatile bool _stopped;

    /// <param name="fd">The /dev/fuse connection.</param>
    /// <param name="store">The region.</param>
    /// <param name="root">The branch at the mount's root (main in region mode).</param>
    /// <param name="readOnly">Refuse writes to every branch (EROFS).</param>
    /// <param name="log">Where failures the kernel cannot be told about go.</param>
    /// <param name="regionMode">Show every live branch as <c>@NAME</c> at the root, and fork main by mkdir there.</param>
    public FuseServer(int fd, Store store, Branch root, bool readOnly, TextWriter log, bool regionMode = false)
    {
        _store = store;
        _log = log;
        _reply = new ReplyWriter(fd, log);
        ReadOnly = readOnly;
        RegionMode = regionMode;
        _nodes = new NodeTable(root, readOnly || root.IsMain);
        RegisterHandlers();
    }

    /// <summary>Every branch refuses writes.</summary>
    public bool ReadOnly { get; }

    /// <summary>The whole region is served: main at the root, each live branch as <c>@NAME</c>.</summary>
    public bool RegionMode { get; }

    /// <summary>The timeout asked for (see <see cref="MountOptions.CacheTimeout"/>); null picks one at INIT.</summary>
    public TimeSpan? CacheTimeout { get; init; }

    /// <summary>Files at least this large, opened read-only, are read past the page cache (see <see cref="MountOptions.DirectReadSize"/>).</summary>
    public long DirectReadSize { get; init; } = long.MaxValue;

    /// <summary>Called once the kernel accepted the INIT reply (its readahead settings are final then).</summary>
    public Action? Initialized { get; init; }

    /// <summary>
    /// Whether the mount offers the branch lifecycle (the control file's fork, commit, abort and discard, mkdir and
    /// rmdir of branches). Off for a mount whose users may change files but not end or publish branches.
    /// </summary>
    public bool Lifecycle { get; init; } = true;

    /// <summary>Whether requests are served over io_uring when the kernel offers it (see <see cref="UringMode"/>).</summary>
    public UringMode Uring { get; init; } = UringMode.Off;

    /// <summary>Entries of each io_uring queue (requests one CPU's processes can have in flight at once).</summary>
    public int UringDepth { get; init; } = 8;

    private UringTransport? _uring;
    private long _ringRequests;

    /// <summary>Requests served from io_uring queues (the rest came through /dev/fuse).</summary>
    internal long RingRequests => Interlocked.Read(ref _ringRequests);
    private string _transport = "/dev/fuse";

    /// <summary>Which transport served the mount, and why not io_uring when it did not.</summary>
    public string Transport => Volatile.Read(ref _transport);

    /// <summary>A ring thread met a refusal: the kernel serves through /dev/fuse from then on (it falls back when a registration fails).</summary>
    internal void NoteUringRefused(string why) => Volatile.Write(ref _transport, $"/dev/fuse (io_uring refused: {why})");

    /// <summary>Serves a request a ring thread took from its queue (the reply goes into the ring entry).</summary>
    internal void ServeRing(ref FuseInHeader header, ReadOnlySpan<byte> body)
    {
        Interlocked.Increment(ref _ringRequests);
        var request = new Request(ref header, body);
        if (header.Opcode == FuseProtocol.Destroy)
        {
            _reply.Empty(header.Unique);
            return;
        }
        Serve(in request);
    }

    /// <summary>Serves with <paramref name="threads"/> threads until the file system is unmounted.</summary>
    public void Run(int threads)
    {
        var workers = Enumerable.Range(0, threads).Select(i => new Thread(Loop) { IsBackground = true, Name = $"fuse-{i}" }).ToList();
        foreach (var t in workers) t.Start();
        var watcher = new Thread(Watch) { IsBackground = true, Name = "fuse-watch" };
        watcher.Start();
        var checker = new Thread(CheckerLoop) { IsBackground = true, Name = "fuse-check-ahead" };
        checker.Start();
        foreach (var t in workers) t.Join();
        if (_uring is { } uring)
        {
            uring.Join(TimeSpan.FromSeconds(5)); // they end with the connection
            uring.Dispose();
        }
        _stopped = true;
        _wake.Set();
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
        return $"served {counts.Sum(c => c.N)} requests ({RingRequests} of them over io_uring) through {Transport}" + (counts.Count == 0 ? "" : ": " + string.Join(", ", counts.Select(c => $"{FuseProtocol.Name(c.Op)} {c.N}")))
            + $"; dropped the kernel's caches {Interlocked.Read(ref _invalidations)} times for changes made elsewhere";
    }

    // ------------------------------------------------------------------ the request loop

    private void Loop()
    {
        byte* buffer = (byte*)NativeMemory.AlignedAlloc(BufferSize, 4096);
        ReplyWriter.OpenPipe();
        try
        {
            while (true)
            {
                nint n = FuseNative.Read(_reply.Fd, buffer, BufferSize);
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
                var request = new Request(ref header, new ReadOnlySpan<byte>(buffer + sizeof(FuseInHeader), (int)n - sizeof(FuseInHeader)));
                if (header.Opcode == FuseProtocol.Destroy)
                {
                    _reply.Empty(header.Unique);
                    return;
                }
                Serve(in request);
            }
        }
        finally
        {
            NativeMemory.AlignedFree(buffer);
            ReplyWriter.ClosePipe();
        }
    }

    /// <summary>Runs the request's handler; any failure becomes an errno reply (no exception reaches the loop).</summary>
    private void Serve(scoped in Request r)
    {
        uint op = r.Header.Opcode;
        Interlocked.Increment(ref _requests[op & 63]);
        try
        {
            if (op is FuseProtocol.Forget or FuseProtocol.BatchForget or FuseProtocol.Interrupt)
                return; // no reply
            if (op != FuseProtocol.Init)
                CheckRegion();
            var handler = op < _handlers.Length ? _handlers[op] : null;
            if (handler is null)
            {
                // xattrs, locks, ioctl, poll, bmap, lseek, copy_file_range: the kernel falls back or reports it.
                _reply.Error(r.Unique, FuseNative.ENOSYS);
                return;
            }
            handler(in r);
        }
        catch (Exception e)
        {
            int errno = ErrnoOf(e);
            if (errno == FuseNative.EIO && !ReferenceEquals(e, Volatile.Read(ref _lost)))
                _log.WriteLine($"daxfs mount: {FuseProtocol.Name(op)} on node {r.Node}: {e.GetType().Name}: {e.Message}");
            _reply.Error(r.Unique, errno);
        }
    }

    internal static int ErrnoOf(Exception e) => e switch
    {
        DaxfsIOException io => io.Error switch
        {
            FileSystemError.TooManyLinks => 40,
            _ => io.Errno,
        },
        BranchInvalidatedException => FuseNative.ESTALE,
        BranchNotFoundException => FuseNative.ENOENT,
        BranchExistsException => FuseNative.EEXIST,
        BranchFrozenException or BranchNotLeafException => FuseNative.EBUSY,
        BranchReadOnlyException => FuseNative.EROFS,
        BranchStaleBaseException => FuseNative.ESTALE,
        BranchTableFullException or RegionFullException => FuseNative.ENOSPC,
        StoreBusyException => FuseNative.EAGAIN,
        ArgumentException => FuseNative.EINVAL,
        _ => FuseNative.EIO,
    };

    // ------------------------------------------------------------------ attributes and entries

    // How long the kernel may cache names and attributes, as the protocol carries it (whole seconds and the
    // nanoseconds past them): set at INIT, before any reply that carries it.
    private ulong _timeoutSec = 1;
    private uint _timeoutNsec;

    private static FuseAttr ToAttr(in InodeAttributes a, ulong node)
    {
        // Whole seconds and the nanoseconds past them, rounding down (a time before 1970 has negative seconds).
        static (ulong Sec, uint Nsec) Split(long ns) { long s = Math.DivRem(ns, 1_000_000_000L, out long n); if (n < 0) { s--; n += 1_000_000_000L; } return ((ulong)s, (uint)n); }
        uint type = a.Kind switch
        {
            NodeKind.Directory => 0x4000u, NodeKind.Symlink => 0xA000u, NodeKind.Fifo => 0x1000u, NodeKind.Socket => 0xC000u,
            NodeKind.CharDevice => 0x2000u, NodeKind.BlockDevice => 0x6000u, _ => 0x8000u,
        };
        var (sec, nsec) = Split(a.MtimeNs);
        var (asec, ansec) = Split(a.AtimeNs != 0 ? a.AtimeNs : a.MtimeNs);
        var (csec, cnsec) = Split(a.CtimeNs);
        long size = a.Kind == NodeKind.Directory ? 4096 : a.Size;
        return new FuseAttr
        {
            Ino = node,
            Size = (ulong)size,
            Blocks = (ulong)((size + 511) / 512),
            Atime = asec,
            AtimeNsec = ansec,
            Mtime = sec,
            MtimeNsec = nsec,
            Ctime = csec,
            CtimeNsec = cnsec,
            Mode = type | (a.Mode & 0xFFF),
            Nlink = (uint)a.Nlink,
            Uid = a.Uid,
            Gid = a.Gid,
            Rdev = (uint)a.Rdev,
            BlkSize = 4096,
        };
    }

    private FuseEntryOut Entry(MountedBranch mb, ulong node, in InodeAttributes a) => new()
    {
        NodeId = node,
        Generation = (ulong)mb.Index + 1,
        EntryValid = _timeoutSec,
        EntryValidNsec = _timeoutNsec,
        AttrValid = _timeoutSec,
        AttrValidNsec = _timeoutNsec,
        Attr = ToAttr(in a, node),
    };

    private void ReplyEntry(ulong unique, MountedBranch mb, ulong node, in InodeAttributes a)
    {
        mb.Known[node] = 0;
        var e = Entry(mb, node, in a);
        _reply.Struct(unique, in e);
    }

    private void ReplyAttr(ulong unique, ulong node, in InodeAttributes a)
    {
        var o = new FuseAttrOut { AttrValid = _timeoutSec, AttrValidNsec = _timeoutNsec, Attr = ToAttr(in a, node) };
        _reply.Struct(unique, in o);
    }

    private void ReplyOpen(ulong unique, ulong fh, uint flags)
    {
        var o = new FuseOpenOut { Fh = fh, OpenFlags = flags };
        _reply.Struct(unique, in o);
    }
}
