using System.Buffers;
using System.Runtime.CompilerServices;
using Daxfs.Branching.Format;
using Daxfs.Branching.Index;
using Daxfs.Branching.Media;

namespace Daxfs.Branching;

/// <summary>
/// A resolved byte range of a file: the pieces of the range as spans over the mapped region, each taken
/// from the layer that last wrote it, holes as zeros. Building one and walking its spans allocates nothing.
/// </summary>
/// <remarks>
/// SAFETY: the spans point into the shared mapping. They stay valid while a <see cref="ReadLease"/> begun
/// before the read is held, and never after the <see cref="Store"/> is disposed. Without a lease they are
/// valid only until the next change of the region by any process (a change can end the branch, or clean its
/// log and reuse the bytes: <see cref="Store.AutoClean"/>). Do not write through them.
/// </remarks>
public readonly struct ReadResult
{
    // Pinned: holes are handed out as raw pointers (to the FUSE server's vmsplice and writev among others),
    // and the collector must never move the zeros under them.
    private static readonly byte[] s_zeros = GC.AllocateArray<byte>(64 * 1024, pinned: true);

    private readonly Region? _region;
    private readonly BaseImage? _base;
    private readonly LongMapNode<Extent>? _extents;
    private readonly long _baseSource;

    internal ReadResult(Region region, in FileData data, long offset, long length)
    {
        _region = region;
        _base = data.Base;
        _extents = data.Extents;
        _baseSource = data.BaseSource;
        Offset = offset;
        Length = length;
    }

    /// <summary>File offset of the first byte.</summary>
    public long Offset { get; }

    /// <summary>Bytes in the range (already clipped to the file's size).</summary>
    public long Length { get; }

    /// <summary>Walks the range's pieces in order.</summary>
    public SegmentEnumerator GetEnumerator() => new(this);

    /// <summary>Copies the range into <paramref name="destination"/>; returns the bytes copied.</summary>
    public int CopyTo(Span<byte> destination)
    {
        if (destination.Length < Length)
            throw new ArgumentException($"destination of {destination.Length} bytes is smaller than the {Length} to copy", nameof(destination));
        int at = 0;
        foreach (var span in this)
        {
            span.CopyTo(destination[at..]);
            at += span.Length;
        }
        return at;
    }

    /// <summary>The range's bytes in a new array (a copy; allocates).</summary>
    public byte[] ToArray()
    {
        if (Length > Array.MaxLength)
            throw new InvalidOperationException($"range of {Length} bytes is too large for one array");
        var bytes = new byte[Length];
        CopyTo(bytes);
        return bytes;
    }

    /// <summary>
    /// The range as a <see cref="ReadOnlySequence{T}"/> whose memory is the mapping itself (no byte is copied;
    /// a small object per piece is allocated). Same lifetime rule as the spans.
    /// </summary>
    public unsafe ReadOnlySequence<byte> ToSequence()
    {
        Segment? first = null, last = null;
        var e = new RawEnumerator(this);
        while (e.MoveNext(out byte* p, out int len))
        {
            var memory = new PointerMemoryManager(p, len).Memory;
            if (first is null) first = last = new Segment(memory, 0);
            else last = last!.Append(memory);
        }
        if (first is null) return ReadOnlySequence<byte>.Empty;
        return new ReadOnlySequence<byte>(first, 0, last!, last!.Memory.Length);
    }

    private sealed class Segment : ReadOnlySequenceSegment<byte>
    {
        public Segment(ReadOnlyMemory<byte> memory, long runningIndex)
        {
            Memory = memory;
            RunningIndex = runningIndex;
        }

        public Segment Append(ReadOnlyMemory<byte> memory)
        {
            var s = new Segment(memory, RunningIndex + Memory.Length);
            Next = s;
            return s;
        }
    }

    private sealed unsafe class PointerMemoryManager(byte* pointer, int length) : MemoryManager<byte>
    {
        public override Span<byte> GetSpan() => new(pointer, length);

        public override MemoryHandle Pin(int elementIndex = 0) => new(pointer + elementIndex);

        public override void Unpin() { }

        protected override void Dispose(bool disposing) { }
    }

    /// <summary>Walks pieces as pointers (shared by the span enumerator and <see cref="ToSequence"/>).</summary>
    internal unsafe struct RawEnumerator(ReadResult r)
    {
        private readonly ReadResult _r = r;
        private long _pos = r.Offset;

        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        public bool MoveNext(out byte* pointer, out int length)
        {
            long end = _r.Offset + _r.Length;
            if (_pos >= end)
            {
                pointer = null;
                length = 0;
                return false;
            }
            long source, available;
            bool data;
            if (_r._extents is null && _r._baseSource >= 0)
            {
                data = true;
                source = _r._baseSource + _pos;
                available = end - _pos;
            }
            else
            {
                data = ExtentMap.Locate(_r._extents, _pos, end, out source, out available);
            }
            long n = Math.Min(available, 1 << 30);
            if (data)
            {
                _r._region!.Check(source, n);
                _r._base!.EnsureVerified(source, n);
                pointer = _r._region.Base + source;
            }
            else
            {
                n = Math.Min(n, s_zeros.Length);
                pointer = (byte*)Unsafe.AsPointer(ref System.Runtime.InteropServices.MemoryMarshal.GetArrayDataReference(s_zeros));
            }
            _pos += n;
            length = (int)n;
            return true;
        }
    }

    /// <summary>Enumerates the spans of a <see cref="ReadResult"/>.</summary>
    public unsafe ref struct SegmentEnumerator
    {
        private RawEnumerator _raw;

        internal SegmentEnumerator(ReadResult r)
        {
            _raw = new RawEnumerator(r);
            Current = default;
        }

        /// <summary>The current piece.</summary>
        public ReadOnlySpan<byte> Current { get; private set; }

        /// <summary>Moves to the next piece.</summary>
        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        public bool MoveNext()
        {
            if (!_raw.MoveNext(out byte* p, out int len))
                return false;
            Current = new ReadOnlySpan<byte>(p, len);
            return true;
        }
    }
}

/// <summary>What a read needs to know of a file: its size and where its bytes are.</summary>
internal readonly struct FileData
{
    public FileData(BaseImage baseImage, long size, LongMapNode<Extent>? extents, long baseSource)
    {
        Base = baseImage;
        Size = size;
        Extents = extents;
        BaseSource = baseSource;
    }

    /// <summary>The base image of the view the file was read from (its data chunks are verified on first touch).</summary>
    public BaseImage Base { get; }

    public long Size { get; }

    public LongMapNode<Extent>? Extents { get; }

    /// <summary>For a base file no branch changed: the offset of its bytes; else -1.</summary>
    public long BaseSource { get; }

    /// <summary>The piece at <paramref name="offset"/> (&lt; Size): data (true, with its region offset) or a hole.</summary>
    public bool Locate(long offset, out long source, out long available)
    {
        if (Extents is null && BaseSource >= 0)
        {
            source = BaseSource + offset;
            available = Size - offset;
            return true;
        }
        return ExtentMap.Locate(Extents, offset, Size, out source, out available);
    }

    public static FileData Of(View v, long ino)
    {
        if (LongMap.TryGet(v.Nodes, ino, out var n))
            return new FileData(v.Base, n.Size, n.Extents, -1);
        ref readonly var b = ref v.Base.Inode(ino);
        if ((b.Flags & BaseInode.FlagSparse) != 0)
            return new FileData(v.Base, b.ByteSize, v.Base.SparseExtents(ino), -1);
        return new FileData(v.Base, b.ByteSize, null, b.ByteSize == 0 ? -1 : b.DataOffset);
    }
}
