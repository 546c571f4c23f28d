using System.Runtime.InteropServices;

namespace Daxfs.Branching.Fuse;

/// <summary>
/// One io_uring instance, bound through the kernel's system calls (io_uring_setup, io_uring_enter and the ring
/// mappings), with no native library: a submission ring of SQEs (64 bytes, or 128 with <see cref="Wide"/>), a
/// completion ring of CQEs, and the calls to submit and to wait. Used by one thread at a time (a queue of the FUSE
/// transport is served by one thread). Every system call's result is checked; a refusal is an
/// <see cref="IoUringException"/> naming the step and the error, never a half-set-up ring.
/// </summary>
internal sealed unsafe partial class IoUring : IDisposable
{
    // Generic system call numbers (the same on x86-64 and arm64).
    private const long SysSetup = 425, SysEnter = 426;
    private const ulong OffSqRing = 0, OffCqRing = 0x8000000, OffSqes = 0x10000000;
    private const uint SetupSqe128 = 1u << 10, FeatSingleMmap = 1u << 0, EnterGetEvents = 1u << 0;

    /// <summary>Opcodes used here (the kernel's enum io_uring_op).</summary>
    public const byte OpNop = 0, OpRead = 22, OpUringCmd = 46;

    private readonly int _fd;
    private readonly byte* _sqRing;
    private readonly nuint _sqRingSize;
    private readonly byte* _cqRing;
    private readonly nuint _cqRingSize;
    private readonly byte* _sqes;
    private readonly nuint _sqesSize;
    private readonly uint* _sqHead, _sqTail, _sqArray, _cqHead, _cqTail;
    private readonly uint _sqMask, _cqMask;
    private readonly Cqe* _cqes;
    private uint _sqLocalTail;
    private bool _disposed;

    /// <summary>Sets up a ring of <paramref name="entries"/> submissions (a power of two); with <paramref name="wide"/>, SQEs of 128 bytes (what FUSE's ring commands need).</summary>
    /// <exception cref="IoUringException">The kernel refused (no io_uring, or it is disabled, or memory).</exception>
    public IoUring(uint entries, bool wide)
    {
        var p = new Params { Flags = wide ? SetupSqe128 : 0 };
        long fd = SyscallSetup(SysSetup, entries, &p);
        if (fd < 0)
            throw new IoUringException("io_uring_setup", Marshal.GetLastPInvokeError());
        _fd = (int)fd;
        Wide = wide;
        try
        {
            _sqRingSize = p.SqOff.Array + p.SqEntries * sizeof(uint);
            _cqRingSize = p.CqOff.Cqes + p.CqEntries * (uint)sizeof(Cqe);
            bool single = (p.Features & FeatSingleMmap) != 0;
            if (single)
                _sqRingSize = _cqRingSize = Math.Max(_sqRingSize, _cqRingSize);
            _sqRing = Map(_sqRingSize, OffSqRing, "the submission ring");
            _cqRing = single ? _sqRing : Map(_cqRingSize, OffCqRing, "the completion ring");
            _sqesSize = p.SqEntries * (nuint)(wide ? 128 : 64);
            _sqes = Map(_sqesSize, OffSqes, "the submission entries");
        }
        catch
        {
            Release();
            throw;
        }
        _sqHead = (uint*)(_sqRing + p.SqOff.Head);
        _sqTail = (uint*)(_sqRing + p.SqOff.Tail);
        _sqArray = (uint*)(_sqRing + p.SqOff.Array);
        _sqMask = *(uint*)(_sqRing + p.SqOff.RingMask);
        _cqHead = (uint*)(_cqRing + p.CqOff.Head);
        _cqTail = (uint*)(_cqRing + p.CqOff.Tail);
        _cqMask = *(uint*)(_cqRing + p.CqOff.RingMask);
        _cqes = (Cqe*)(_cqRing + p.CqOff.Cqes);
        Entries = p.SqEntries;
        _sqLocalTail = Volatile.Read(ref *_sqTail);
    }

    /// <summary>SQEs of 128 bytes (the last 80 hold a ring command's data).</summary>
    public bool Wide { get; }

    /// <summary>Submission entries the ring holds.</summary>
    public uint Entries { get; }

    /// <summary>The ring's descriptor.</summary>
    public int Fd => _fd;

    private byte* Map(nuint size, ulong offset, string what)
    {
        void* at = FuseNative.Mmap(null, size, FuseNative.ProtRead | FuseNative.ProtWrite, FuseNative.MapShared | FuseNative.MapPopulate, _fd, (long)offset);
        if (at == (void*)-1)
            throw new IoUringException($"mapping {what}", Marshal.GetLastPInvokeError());
        return (byte*)at;
    }

    /// <summary>
    /// The next free submission entry, zeroed (null when the ring is full: submit first). It is handed to the kernel by
    /// the next <see cref="Submit"/>.
    /// </summary>
    public Sqe* Next()
    {
        uint head = Volatile.Read(ref *_sqHead);
        if (_sqLocalTail - head >= Entries)
            return null;
        uint index = _sqLocalTail & _sqMask;
        var sqe = (Sqe*)(_sqes + index * (nuint)(Wide ? 128 : 64));
        NativeMemory.Clear(sqe, Wide ? 128u : 64u);
        _sqArray[index] = index;
        _sqLocalTail++;
        return sqe;
    }

    /// <summary>Hands the prepared entries to the kernel and, with <paramref name="waitFor"/> &gt; 0, waits until that many completions are there. Returns the entries submitted.</summary>
    /// <exception cref="IoUringException">io_uring_enter failed (other than being interrupted).</exception>
    public int Submit(uint waitFor = 0)
    {
        Volatile.Write(ref *_sqTail, _sqLocalTail); // the entries are written before the tail moves
        uint pending = _sqLocalTail - Volatile.Read(ref *_sqHead); // what the kernel has not consumed (also after a failed enter)
        while (true)
        {
            long n = SyscallEnter(SysEnter, (uint)_fd, pending, waitFor, waitFor > 0 ? EnterGetEvents : 0, 0, 0);
            if (n >= 0)
                return (int)n;
            int errno = Marshal.GetLastPInvokeError();
            if (errno == FuseNative.EINTR)
            {
                pending = _sqLocalTail - Volatile.Read(ref *_sqHead); // what was consumed stays consumed: only the rest again
                continue;
            }
            throw new IoUringException("io_uring_enter", errno);
        }
    }

    /// <summary>Takes the next completion, if there is one.</summary>
    public bool TryTake(out Cqe cqe)
    {
        uint head = Volatile.Read(ref *_cqHead);
        if (head == Volatile.Read(ref *_cqTail))
        {
            cqe = default;
            return false;
        }
        cqe = _cqes[head & _cqMask];
        Volatile.Write(ref *_cqHead, head + 1);
        return true;
    }

    /// <summary>Waits for the next completion (submitting what is prepared first).</summary>
    public Cqe Take()
    {
        Cqe cqe;
        while (!TryTake(out cqe))
            Submit(waitFor: 1);
        return cqe;
    }

    public void Dispose()
    {
        if (_disposed) return;
        _disposed = true;
        Release();
    }

    private void Release()
    {
        if (_sqes is not null) FuseNative.Munmap(_sqes, _sqesSize);
        if (_cqRing is not null && _cqRing != _sqRing) FuseNative.Munmap(_cqRing, _cqRingSize);
        if (_sqRing is not null) FuseNative.Munmap(_sqRing, _sqRingSize);
        FuseNative.Close(_fd);
    }

    // syscall(2) takes its arguments as machine words: one binding per call's shape.
    [LibraryImport("libc", EntryPoint = "syscall", SetLastError = true)]
    private static partial long SyscallSetup(long number, nuint entries, Params* parameters);

    [LibraryImport("libc", EntryPoint = "syscall", SetLastError = true)]
    private static partial long SyscallEnter(long number, nuint fd, nuint toSubmit, nuint minComplete, nuint flags, nint signals, nuint signalsSize);

    /// <summary>struct io_uring_params.</summary>
    [StructLayout(LayoutKind.Sequential)]
    private struct Params
    {
        public uint SqEntries, CqEntries, Flags, SqThreadCpu, SqThreadIdle, Features, WqFd, Resv0, Resv1, Resv2;
        public SqOffsets SqOff;
        public CqOffsets CqOff;
    }

    [StructLayout(LayoutKind.Sequential)]
    private struct SqOffsets
    {
        public uint Head, Tail, RingMask, RingEntries, Flags, Dropped, Array, Resv1;
        public ulong UserAddr;
    }

    [StructLayout(LayoutKind.Sequential)]
    private struct CqOffsets
    {
        public uint Head, Tail, RingMask, RingEntries, Overflow, Cqes, Flags, Resv1;
        public ulong UserAddr;
    }

    /// <summary>A submission entry (the first 64 bytes; a wide ring's command data follows at <see cref="CommandOffset"/>).</summary>
    [StructLayout(LayoutKind.Explicit, Size = 64)]
    public struct Sqe
    {
        /// <summary>Where a ring command's data starts (80 bytes in a wide entry).</summary>
        public const int CommandOffset = 48;

        [FieldOffset(0)] public byte Opcode;
        [FieldOffset(1)] public byte Flags;
        [FieldOffset(2)] public ushort IoPriority;
        [FieldOffset(4)] public int Fd;
        [FieldOffset(8)] public ulong Offset;
        [FieldOffset(8)] public uint CommandOp;
        [FieldOffset(16)] public ulong Address;
        [FieldOffset(24)] public uint Length;
        [FieldOffset(28)] public uint OpFlags;
        [FieldOffset(32)] public ulong UserData;
    }

    /// <summary>A completion entry.</summary>
    [StructLayout(LayoutKind.Sequential)]
    public struct Cqe
    {
        public ulong UserData;
        public int Result;
        public uint Flags;
    }
}

/// <summary>The kernel refused a step of io_uring: which, and the error.</summary>
internal sealed class IoUringException(string step, int errno)
    : IOException($"{step} failed: {FuseNative.Describe(errno)}")
{
    /// <summary>The error number.</summary>
    public int Errno { get; } = errno;
}
