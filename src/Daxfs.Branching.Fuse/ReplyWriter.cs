using System.Runtime.InteropServices;
using System.Text;

namespace Daxfs.Branching.Fuse;

/// <summary>
/// Writes replies and notifications to the kernel on one /dev/fuse connection. File data is sent straight from
/// the mapped region (vectors that point into the mapping, or pages spliced through the worker's pipe), so the
/// server never copies it; the caller holds a read lease until <see cref="Data"/> returns.
/// </summary>
internal sealed unsafe class ReplyWriter(int fd, TextWriter log)
{
    /// <summary>The connection's descriptor.</summary>
    public int Fd { get; } = fd;

    public void Error(ulong unique, int errno)
    {
        var h = new FuseOutHeader { Len = (uint)sizeof(FuseOutHeader), Error = -errno, Unique = unique };
        var iov = stackalloc FuseNative.IoVec[1];
        iov[0] = new FuseNative.IoVec { Base = &h, Length = (nuint)sizeof(FuseOutHeader) };
        Send(iov, 1);
    }

    public void Empty(ulong unique) => Bytes(unique, default);

    public void Struct<T>(ulong unique, in T value) where T : unmanaged
    {
        fixed (T* p = &value)
            Bytes(unique, new ReadOnlySpan<byte>(p, sizeof(T)));
    }

    public void Bytes(ulong unique, ReadOnlySpan<byte> body)
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

    /// <summary>Replies to a read with vectors pointing into the mapping: the kernel copies from there, we never do. The caller holds a read lease.</summary>
    public void Data(ulong unique, ReadResult data)
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
                // A read spanning very many extents: gather the rest into one buffer (still under the caller's lease).
                Bytes(unique, data.ToArray());
                return;
            }
            iov[count++] = new FuseNative.IoVec { Base = p, Length = (nuint)len };
            pages += PagesTouched((nuint)p, (nuint)len);
        }
        if (t_ring is null && data.Length >= SpliceMinimum && pages <= t_pipePages && SendSpliced(iov, count, h.Len))
            return;
        Send(iov, count);
    }

    // ------------------------------------------------------------------ notifications

    /// <summary>Drops what the kernel cached of node <paramref name="node"/>: attributes, pages, listing. A node it forgot answers ENOENT: nothing to drop.</summary>
    public void InvalidateNode(ulong node)
    {
        var h = new FuseOutHeader { Len = (uint)(sizeof(FuseOutHeader) + sizeof(FuseNotifyInvalInode)), Error = FuseProtocol.NotifyInvalInode, Unique = 0 };
        var body = new FuseNotifyInvalInode { Ino = node, Offset = 0, Length = 0 };
        var iov = stackalloc FuseNative.IoVec[2];
        iov[0] = new FuseNative.IoVec { Base = &h, Length = (nuint)sizeof(FuseOutHeader) };
        iov[1] = new FuseNative.IoVec { Base = &body, Length = (nuint)sizeof(FuseNotifyInvalInode) };
        FuseNative.Writev(Fd, iov, 2);
    }

    /// <summary>Drops the kernel's cached name <paramref name="name"/> in directory <paramref name="parent"/>, found or missing.</summary>
    public void InvalidateEntry(ulong parent, string name)
    {
        int n = Encoding.UTF8.GetByteCount(name);
        if (n > 255) return;
        byte* bytes = stackalloc byte[n + 1];
        Encoding.UTF8.GetBytes(name, new Span<byte>(bytes, n));
        bytes[n] = 0;
        var h = new FuseOutHeader { Len = (uint)(sizeof(FuseOutHeader) + sizeof(FuseNotifyInvalEntry) + n + 1), Error = FuseProtocol.NotifyInvalEntry, Unique = 0 };
        var body = new FuseNotifyInvalEntry { Parent = parent, NameLen = (uint)n };
        var iov = stackalloc FuseNative.IoVec[3];
        iov[0] = new FuseNative.IoVec { Base = &h, Length = (nuint)sizeof(FuseOutHeader) };
        iov[1] = new FuseNative.IoVec { Base = &body, Length = (nuint)sizeof(FuseNotifyInvalEntry) };
        iov[2] = new FuseNative.IoVec { Base = bytes, Length = (nuint)(n + 1) };
        FuseNative.Writev(Fd, iov, 3); // ENOENT: the kernel has no such name cached
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
    public static void OpenPipe()
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
            ClosePipe();
    }

    public static void ClosePipe()
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
        nint moved = FuseNative.Splice(t_pipeRead, null, Fd, null, total, 0);
        if (moved == total)
            return true;
        int errno = moved < 0 ? FuseNative.LastError : 0;
        DrainPipe();
        if (errno == FuseNative.ENOENT)
            return true; // the request was interrupted and is gone
        // Anything else: this thread stops splicing and the reply is written with writev. If the kernel had
        // already taken the request, it has ended it with an error and that write fails with ENOENT; either
        // way the reader gets an answer.
        log.WriteLine($"daxfs mount: spliced reply failed ({(moved < 0 ? FuseNative.Describe(errno) : $"{moved} of {total} bytes")}); this thread writes its replies from now on");
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

    /// <summary>The io_uring entry the current thread's reply goes into (set while a ring thread serves a request).</summary>
    [ThreadStatic] internal static UringTransport.RingReply? t_ring;

    private void Send(FuseNative.IoVec* iov, int count)
    {
        if (t_ring is { } ring && ring.Unique != 0 && ((FuseOutHeader*)iov[0].Base)->Unique == ring.Unique)
        {
            ring.Take(iov, count); // copied into the entry's buffers before the caller's lease ends
            return;
        }
        nint n = FuseNative.Writev(Fd, iov, count);
        if (n < 0)
        {
            int errno = FuseNative.LastError;
            if (errno != FuseNative.ENOENT) // ENOENT: the request was interrupted and is gone
                log.WriteLine($"daxfs mount: reply failed: {FuseNative.Describe(errno)}");
        }
    }
}
