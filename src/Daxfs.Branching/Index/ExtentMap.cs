namespace Daxfs.Branching.Index;

/// <summary>A run of file bytes [key, key+Length) stored at region offset <see cref="Source"/>.</summary>
/// <summary>
/// A run of a file's bytes: its length, the region offset of the bytes, and the region offset of the log record
/// that holds them (0 for bytes of a base image, which its chunk checksums guard).
/// </summary>
internal readonly record struct Extent(long Length, long Source, long Record = 0);

/// <summary>
/// A file's byte-range map: non-overlapping extents keyed by file offset, each pointing at the bytes in
/// the region (base image data or a write record's payload). Gaps are holes and read as zeros.
/// Persistent: a write copies O(log n) nodes, so forks share the whole map.
/// </summary>
internal static class ExtentMap
{
    /// <summary>Maps [start, start+length) to region bytes at <paramref name="source"/> (in the record at <paramref name="record"/>), cutting what it overlaps.</summary>
    public static LongMapNode<Extent>? Write(LongMapNode<Extent>? root, long start, long length, long source, long record)
    {
        if (length <= 0) return root;
        long end = start + length;
        var (left, rest) = CutAt(root, start);
        var (_, right) = CutAt(rest, end);
        return LongMap.Merge(LongMap.Merge(left, LongMap.Single(start, new Extent(length, source, record))), right);
    }

    /// <summary>Removes every byte at or beyond <paramref name="size"/>.</summary>
    public static LongMapNode<Extent>? Truncate(LongMapNode<Extent>? root, long size)
    {
        var (left, _) = CutAt(root, size);
        return left;
    }

    /// <summary>
    /// Splits the map at file offset <paramref name="at"/>: the left part holds bytes &lt; at, the right part
    /// bytes ≥ at; an extent that straddles the cut is divided in two.
    /// </summary>
    public static (LongMapNode<Extent>? Left, LongMapNode<Extent>? Right) CutAt(LongMapNode<Extent>? root, long at)
    {
        var (less, atLeast) = LongMap.Split(root, at);
        var last = LongMap.Max(less);
        if (last is null || last.Key + last.Value.Length <= at)
            return (less, atLeast);
        // The last extent on the left runs past the cut: keep its head on the left, move its tail right.
        var (keep, _) = LongMap.Split(less, last.Key);
        long headLength = at - last.Key;
        var head = LongMap.Single(last.Key, last.Value with { Length = headLength });
        var tail = LongMap.Single(at, last.Value with { Length = last.Value.Length - headLength, Source = last.Value.Source + headLength });
        return (LongMap.Merge(keep, head), LongMap.Merge(tail, atLeast));
    }

    /// <summary>
    /// The piece of the map that covers <paramref name="offset"/>: either an extent (returns true with the
    /// region offset and the bytes available from there) or a hole (returns false with its length, up to
    /// the next extent or <paramref name="limit"/>).
    /// </summary>
    public static bool Locate(LongMapNode<Extent>? root, long offset, long limit, out long source, out long available)
    {
        var floor = LongMap.Floor(root, offset);
        if (floor is not null)
        {
            long end = floor.Key + floor.Value.Length;
            if (offset < end)
            {
                source = floor.Value.Source + (offset - floor.Key);
                available = Math.Min(end, limit) - offset;
                return true;
            }
        }
        var next = LongMap.Ceiling(root, offset + 1);
        long holeEnd = next is null ? limit : Math.Min(next.Key, limit);
        source = 0;
        available = holeEnd - offset;
        return false;
    }
}
