using System.Runtime.CompilerServices;
using Daxfs.Branching.Format;
using Daxfs.Branching.Log;
using Daxfs.Branching.Media;

namespace Daxfs.Branching.Index;

/// <summary>
/// The log records a view read from a checkpoint points at, which no replay of this process checked: each is
/// checked against its checksum the first time a read touches its bytes (once per record per process), as a replay
/// would have checked it. The common case (checked already, or bytes no checkpoint named) is a binary search and a
/// bit test; nothing is allocated.
/// </summary>
internal sealed class RecordChecks
{
    private readonly Region _region;
    private readonly long _areaStart;
    private readonly long _areaEnd;
    private readonly long[] _starts;
    private readonly long[] _checked;

    /// <param name="region">The mapped region.</param>
    /// <param name="records">Region offsets of the records (record headers).</param>
    /// <param name="areaStart">Where records may lie (the area the checkpoint's extents were checked against).</param>
    /// <param name="areaEnd">The end of that area.</param>
    public RecordChecks(Region region, IEnumerable<long> records, long areaStart, long areaEnd)
    {
        _region = region;
        _areaStart = areaStart;
        _areaEnd = areaEnd;
        _starts = records.Distinct().Order().ToArray();
        _checked = new long[(_starts.Length + 63) / 64];
    }

    /// <summary>The records on the list.</summary>
    public int Count => _starts.Length;

    /// <summary>The region offsets of the records on the list.</summary>
    public IEnumerable<long> Records => _starts;

    /// <summary>Checks the record holding [<paramref name="source"/>, +<paramref name="length"/>) if it is one of these and was not checked yet.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public void EnsureVerified(long source, long length)
    {
        int i = Array.BinarySearch(_starts, source);
        if (i < 0) i = ~i - 1;
        if (i < 0 || (Volatile.Read(ref _checked[i >> 6]) & (1L << (i & 63))) != 0)
            return;
        Verify(i, source, length);
    }

    private void Verify(int i, long source, long length)
    {
        long at = _starts[i];
        if (at + RecordHeader.Size > _areaEnd || at < _areaStart)
            ThrowHelper.Corrupt("record", at, "a record main's checkpoint names lies outside the arena");
        var h = _region.At<RecordHeader>(at);
        if (h.Length < RecordHeader.Size || (h.Length & 7) != 0 || h.Length > _areaEnd - at)
            ThrowHelper.Corrupt("record", at, $"record length {h.Length} invalid (a record main's checkpoint names)");
        if (source >= at + h.Length)
            return; // bytes of a record after it, which a replay of this process checked
        if (source < at + RecordHeader.Size || source + length > at + h.Length)
            ThrowHelper.Corrupt("record", at, $"log {h.LogId}: file bytes at {source} (+{length}) do not lie in the record main's checkpoint names");
        uint crc = LogCursor.ComputeCrc(_region, at, h.Length);
        if (crc != h.Crc)
            ThrowHelper.Corrupt("record", at, $"log {h.LogId}: record checksum mismatch (stored {h.Crc:X8}, computed {crc:X8}), found reading file bytes through main's checkpoint");
        Interlocked.Or(ref _checked[i >> 6], 1L << (i & 63));
    }
}
