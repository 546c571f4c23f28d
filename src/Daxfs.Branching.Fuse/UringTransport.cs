using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;

namespace Daxfs.Branching.Fuse;

/// <summary>Whether a mount serves requests over io_uring.</summary>
public enum UringMode
{
    /// <summary>Over io_uring when the kernel offers it, else through /dev/fuse (the default).</summary>
    Auto,
    /// <summary>Refuse to mount unless the kernel's FUSE io_uring is switched on (a refusal later still falls back, logged).</summary>
    On,
    /// <summary>Through /dev/fuse reads and writes only.</summary>
    Off,
}

/// <summary>
/// FUSE requests over io_uring (Linux 6.14 on, module parameter <c>fuse.enable_uring</c>): one queue per possible
/// CPU, each served by a thread pinned to that CPU with a ring of its own. A queue holds entries, each a header
/// buffer (the request's header and argument struct, then the reply's header) and a payload buffer (the request's
/// other arguments, then the reply's body). The kernel hands a request to an entry of the queue of the CPU the
/// asking process runs on and completes that entry's pending command; the thread serves it, writes the reply into
/// the entry and commits it, which also arms the entry for the next request. Everything is prepared before the INIT
/// reply asks the kernel for it, so a refusal at any step leaves the connection on /dev/fuse (the kernel falls back
/// when a registration fails), logged once.
/// </summary>
internal sealed unsafe partial class UringTransport : IDisposable
{
    // struct fuse_uring_req_header: in_out[128] (fuse_in_header, then fuse_out_header), op_in[128], ring_ent_in_out[32].
    private const int HeaderBytes = 288, OpInOffset = 128, EntOffset = 256;
    // fuse_uring_ent_in_out: flags u64, commit_id u64, payload_sz u32.
    private const int CommitIdOffset = EntOffset + 8, PayloadSizeOffset = EntOffset + 16;
    private const uint CmdRegister = 1, CmdCommitAndFetch = 2;
    private const int ENOTCONN = 107, ECANCELED = 125, ECONNABORTED = 103, EBUSY = 16;

    /// <summary>INIT flags2 bit that asks for io_uring (bit 41 of the 64-bit flags).</summary>
    public const uint OverIoUringFlag2 = 1u << (41 - 32);

    private readonly FuseServer _server;
    private readonly int _fuseFd;
    private readonly TextWriter _log;
    private readonly Queue[] _queues;
    private readonly List<Thread> _threads = [];
    private int _refusalLogged;

    private sealed class Queue
    {
        public required int Id;
        public required IoUring Ring;
        public required Entry[] Entries;
    }

    private struct Entry
    {
        public byte* Header;   // 288 bytes
        public byte* Block;    // 128 bytes where the argument struct is copied just before the payload, then the payload
        public byte* Payload => Block + 128;
        public FuseNative.IoVec* Vectors; // the two buffers, as registered
    }

    /// <summary>The payload buffer's size: what the kernel asks for (max_write and max_pages of the INIT reply).</summary>
    public nuint PayloadBytes { get; }

    /// <summary>Queues (possible CPUs) served.</summary>
    public int QueueCount => _queues.Length;

    private UringTransport(FuseServer server, int fuseFd, TextWriter log, Queue[] queues, nuint payload)
    {
        _server = server;
        _fuseFd = fuseFd;
        _log = log;
        _queues = queues;
        PayloadBytes = payload;
    }

    /// <summary>
    /// Sets up every queue's ring and buffers (nothing is registered yet). Null, with why, when a step is refused: the
    /// INIT reply then does not ask for io_uring.
    /// </summary>
    public static UringTransport? Prepare(FuseServer server, int fuseFd, TextWriter log, int depth, nuint payloadBytes, out string? why)
    {
        var queues = new List<Queue>();
        try
        {
            int count = PossibleCpus();
            for (int q = 0; q < count; q++)
            {
                var ring = new IoUring((uint)depth * 2, wide: true);
                var entries = new Entry[depth];
                for (int e = 0; e < depth; e++)
                {
                    var header = (byte*)NativeMemory.AlignedAlloc(HeaderBytes, 64);
                    var block = (byte*)NativeMemory.AlignedAlloc(128 + payloadBytes, 4096);
                    var vectors = (FuseNative.IoVec*)NativeMemory.Alloc((nuint)(2 * sizeof(FuseNative.IoVec)));
                    NativeMemory.Clear(header, HeaderBytes);
                    vectors[0] = new FuseNative.IoVec { Base = header, Length = HeaderBytes };
                    vectors[1] = new FuseNative.IoVec { Base = block + 128, Length = payloadBytes };
                    entries[e] = new Entry { Header = header, Block = block, Vectors = vectors };
                }
                queues.Add(new Queue { Id = q, Ring = ring, Entries = entries });
            }
            why = null;
            return new UringTransport(server, fuseFd, log, [.. queues], payloadBytes);
        }
        catch (Exception e) when (e is IOException or OutOfMemoryException or FormatException)
        {
            foreach (var q in queues) Free(q);
            why = e.Message;
            return null;
        }
    }

    /// <summary>The number of queues the kernel makes: one per possible CPU (/sys/devices/system/cpu/possible, as "0-3").</summary>
    internal static int PossibleCpus()
    {
        string text = File.ReadAllText("/sys/devices/system/cpu/possible").Trim();
        int max = 0;
        foreach (var part in text.Split(','))
        {
            var bounds = part.Split('-');
            max = Math.Max(max, int.Parse(bounds[^1], System.Globalization.CultureInfo.InvariantCulture));
        }
        return max + 1;
    }

    /// <summary>Registers every entry and serves, one thread per queue, pinned to its CPU (after the INIT reply went out).</summary>
    public void Start()
    {
        foreach (var q in _queues)
        {
            var t = new Thread(() => Serve(q)) { IsBackground = true, Name = $"fuse-uring-{q.Id}" };
            _threads.Add(t);
            t.Start();
        }
    }

    /// <summary>Waits (at most <paramref name="timeout"/>) for the queue threads, which end when the connection does.</summary>
    public void Join(TimeSpan timeout)
    {
        var until = DateTime.UtcNow + timeout;
        foreach (var t in _threads)
            t.Join(until - DateTime.UtcNow > TimeSpan.Zero ? until - DateTime.UtcNow : TimeSpan.Zero);
    }

    private void Serve(Queue q)
    {
        Pin(q.Id); // measured: unpinned 43 µs and pinned to the other CPU 51-68 µs per 4 KiB read, against 28-31 µs pinned here
        var ring = q.Ring;
        try
        {
            for (int e = 0; e < q.Entries.Length; e++)
                Command(ring, q, e, CmdRegister, 0);
            ring.Submit();
            var reply = new RingReply();
            while (true)
            {
                IoUring.Cqe cqe;
                try
                {
                    cqe = ring.Take(); // also hands the commits prepared since to the kernel
                }
                catch (IoUringException e) when (e.Errno is FuseNative.EAGAIN or EBUSY)
                {
                    // The kernel is short of something for now: the queue's requests wait for this thread, so it tries again.
                    Thread.Sleep(1);
                    continue;
                }
                int index = (int)cqe.UserData;
                if (cqe.Result < 0)
                {
                    int errno = -cqe.Result;
                    if (errno is ENOTCONN or ECANCELED or ECONNABORTED or FuseNative.ENODEV)
                        return; // the connection ended (unmount) or the ring was torn down
                    Refused($"the kernel refused a ring command of queue {q.Id}: {FuseNative.Describe(errno)}");
                    return;
                }
                if ((uint)index >= (uint)q.Entries.Length)
                    continue;
                ref var entry = ref q.Entries[index];
                Handle(ref entry, reply);
                Command(ring, q, index, CmdCommitAndFetch, Unsafe.ReadUnaligned<ulong>(entry.Header + CommitIdOffset));
            }
        }
        catch (IoUringException e)
        {
            Refused($"io_uring failed on queue {q.Id}: {e.Message}");
        }
    }

    /// <summary>A ring command for entry <paramref name="index"/>: register it, or commit its reply and fetch the next request.</summary>
    private void Command(IoUring ring, Queue q, int index, uint command, ulong commitId)
    {
        var sqe = ring.Next();
        if (sqe == null)
        {
            ring.Submit();
            sqe = ring.Next();
            if (sqe == null)
                throw new IoUringException("a full submission ring", FuseNative.EAGAIN);
        }
        sqe->Opcode = IoUring.OpUringCmd;
        sqe->Fd = _fuseFd;
        sqe->CommandOp = command;
        sqe->UserData = (ulong)index;
        if (command == CmdRegister)
        {
            sqe->Address = (ulong)q.Entries[index].Vectors;
            sqe->Length = 2;
        }
        // struct fuse_uring_cmd_req in the command area: flags u64, commit_id u64, qid u16.
        byte* cmd = (byte*)sqe + IoUring.Sqe.CommandOffset;
        Unsafe.WriteUnaligned(cmd + 8, commitId);
        Unsafe.WriteUnaligned(cmd + 16, (ushort)q.Id);
    }

    /// <summary>Serves the request the kernel put in the entry and leaves the reply there.</summary>
    private void Handle(ref Entry entry, RingReply reply)
    {
        ref var header = ref Unsafe.AsRef<FuseInHeader>(entry.Header);
        uint payload = Unsafe.ReadUnaligned<uint>(entry.Header + PayloadSizeOffset);
        long argument = (long)header.Len - sizeof(FuseInHeader) - payload;
        reply.Begin(entry.Header, entry.Payload, PayloadBytes, header.Unique);
        try
        {
            if (argument < 0 || argument > 128 || payload > PayloadBytes)
            {
                reply.Error(FuseNative.EIO);
                return;
            }
            // The argument struct goes just before the payload, so the body reads as one span, as from /dev/fuse.
            byte* body = entry.Payload - argument;
            Buffer.MemoryCopy(entry.Header + OpInOffset, body, argument, argument);
            ReplyWriter.t_ring = reply;
            _server.ServeRing(ref header, new ReadOnlySpan<byte>(body, (int)(argument + payload)));
        }
        finally
        {
            ReplyWriter.t_ring = null;
            if (!reply.Replied)
                reply.Error(FuseNative.EIO); // every request taken from the ring is answered, or its entry would stay taken
        }
    }

    private void Refused(string why)
    {
        if (Interlocked.Exchange(ref _refusalLogged, 1) == 0)
            _log.WriteLine($"daxfs mount: {why}; requests are served through /dev/fuse");
        _server.NoteUringRefused(why);
    }

    private static void Pin(int cpu)
    {
        var mask = stackalloc ulong[16];
        NativeMemory.Clear(mask, 16 * sizeof(ulong));
        if (cpu < 1024)
        {
            mask[cpu / 64] = 1UL << (cpu % 64);
            _ = SchedSetaffinity(0, 16 * sizeof(ulong), mask); // locality only: a refusal changes nothing else
        }
    }

    [LibraryImport("libc", EntryPoint = "sched_setaffinity", SetLastError = true)]
    private static partial int SchedSetaffinity(int pid, nuint size, ulong* mask);

    public void Dispose()
    {
        foreach (var q in _queues) Free(q);
    }

    private static void Free(Queue q)
    {
        q.Ring.Dispose();
        foreach (var e in q.Entries)
        {
            NativeMemory.AlignedFree(e.Header);
            NativeMemory.AlignedFree(e.Block);
            NativeMemory.Free(e.Vectors);
        }
    }

    /// <summary>Where a ring thread's handler writes its reply: the entry's header (the out header) and payload (the body).</summary>
    internal sealed class RingReply
    {
        private byte* _header;
        private byte* _payload;
        private nuint _capacity;

        public ulong Unique { get; private set; }

        public bool Replied { get; private set; }

        public void Begin(byte* header, byte* payload, nuint capacity, ulong unique)
        {
            _header = header;
            _payload = payload;
            _capacity = capacity;
            Unique = unique;
            Replied = false;
        }

        /// <summary>Takes a reply given as vectors: [0] the out header, then the body's pieces (copied into the payload buffer).</summary>
        public void Take(FuseNative.IoVec* iov, int count)
        {
            var h = *(FuseOutHeader*)iov[0].Base;
            nuint total = 0;
            for (int i = 1; i < count; i++) total += iov[i].Length;
            if (h.Error != 0 || total > _capacity)
            {
                Error(h.Error != 0 ? -h.Error : FuseNative.EIO);
                return;
            }
            byte* at = _payload;
            for (int i = 1; i < count; i++)
            {
                Buffer.MemoryCopy(iov[i].Base, at, (long)(_capacity - (nuint)(at - _payload)), (long)iov[i].Length);
                at += iov[i].Length;
            }
            Write(new FuseOutHeader { Len = (uint)sizeof(FuseOutHeader) + (uint)total, Error = 0, Unique = Unique }, (uint)total);
        }

        public void Error(int errno) => Write(new FuseOutHeader { Len = (uint)sizeof(FuseOutHeader), Error = -errno, Unique = Unique }, 0);

        private void Write(FuseOutHeader h, uint payload)
        {
            Unsafe.WriteUnaligned(_header, h);
            Unsafe.WriteUnaligned(_header + PayloadSizeOffset, payload);
            Replied = true;
        }
    }
}
