using System.Numerics;
using Daxfs.Branching.Format;
using Daxfs.Branching.Media;

namespace Daxfs.Branching.Log;

/// <summary>
/// Page allocator of the delta arena: one bit per region page in the region's bitmap (1 = in use).
/// Pages outside the arena are always marked used. Callers hold the region lock, so the bitmap has one
/// writer at a time; the lock's release publishes the changes to other processes.
/// </summary>
/// <remarks>
/// The bitmap is derived state: on open it is rebuilt from what the branch table and the logs reach,
/// so a crash between an allocation and its publication leaks nothing past the next open.
/// </remarks>
internal sealed unsafe class BlockAllocator
{
    private readonly Region _region;
    private readonly long _bitmapOffset;
    private readonly long _bitmapLength;
    private long _arenaFirstPage;
    private long _arenaEndPage;
    private long _hint;
    private long _freePages;

    public BlockAllocator(Region region, long bitmapOffset, long bitmapLength, long arenaOffset, long arenaLength)
    {
        _region = region;
        _bitmapOffset = bitmapOffset;
        _bitmapLength = bitmapLength;
        long pages = region.Length / FormatConstants.PageSize;
        if (bitmapLength * 8 < pages)
            ThrowHelper.Corrupt("superblock", 0, $"bitmap of {bitmapLength} bytes cannot cover {pages} pages");
        _arenaFirstPage = arenaOffset / FormatConstants.PageSize;
        _arenaEndPage = (arenaOffset + arenaLength) / FormatConstants.PageSize;
        _hint = _arenaFirstPage;
        region.Check(bitmapOffset, bitmapLength);
    }

    /// <summary>Pages of the region now (it can grow).</summary>
    private long RegionPages => _region.Length / FormatConstants.PageSize;

    /// <summary>Bytes the bitmap can cover: the most the region can grow to.</summary>
    public long Coverage => _bitmapLength * 8 * FormatConstants.PageSize;

    /// <summary>
    /// Moves the bounds of what can be allocated (caller holds the region lock, or is re-reading): the start moves
    /// down to take in the original base image once compaction replaced it, the end up when the region grew.
    /// Pages newly inside keep their bits: whoever retired or added them frees them.
    /// </summary>
    public void SetBounds(long firstOffset, long endOffset)
    {
        long first = firstOffset / FormatConstants.PageSize, end = endOffset / FormatConstants.PageSize;
        if (first == _arenaFirstPage && end == _arenaEndPage)
            return;
        if (end > RegionPages || first >= end)
            ThrowHelper.Corrupt("superblock", 0, $"arena [{firstOffset}, {endOffset}) outside the region's {_region.Length} bytes");
        _arenaFirstPage = first;
        _arenaEndPage = end;
        if (_hint < first || _hint >= end) _hint = first;
        Recount();
    }

    /// <summary>Marks pages [<paramref name="offset"/>, +<paramref name="pages"/>) free (caller holds the region lock): pages the region just grew by.</summary>
    public void MarkFree(long offset, long pages) => SetRange(offset / FormatConstants.PageSize, pages, false);

    public long ArenaOffset => _arenaFirstPage * FormatConstants.PageSize;

    public long ArenaEnd => _arenaEndPage * FormatConstants.PageSize;

    public long FreeBytes => _freePages * FormatConstants.PageSize;

    public long ArenaBytes => (_arenaEndPage - _arenaFirstPage) * FormatConstants.PageSize;

    private ref ulong Word(long index) => ref *(ulong*)(_region.Base + _bitmapOffset + index * 8);

    private bool IsSet(long page) => (Word(page >> 6) & (1UL << (int)(page & 63))) != 0;

    private void SetRange(long first, long count, bool used)
    {
        for (long p = first; p < first + count; p++)
        {
            ref ulong w = ref Word(p >> 6);
            ulong bit = 1UL << (int)(p & 63);
            w = used ? w | bit : w & ~bit;
        }
    }

    /// <summary>Marks everything outside the arena used and the arena free, then marks <paramref name="used"/>.</summary>
    public void Rebuild(IEnumerable<(long Offset, long Pages)> used)
    {
        long words = (RegionPages + 63) / 64;
        for (long i = 0; i < words; i++) Word(i) = ulong.MaxValue;
        SetRange(_arenaFirstPage, _arenaEndPage - _arenaFirstPage, false);
        _freePages = _arenaEndPage - _arenaFirstPage;
        foreach (var (offset, pages) in used)
        {
            long first = offset / FormatConstants.PageSize;
            for (long p = first; p < first + pages; p++)
            {
                if (IsSet(p))
                    ThrowHelper.Corrupt("log block", offset, "block is owned twice (two logs or one log reach it)");
                SetRange(p, 1, true);
            }
            _freePages -= pages;
        }
        _hint = _arenaFirstPage;
    }

    /// <summary>
    /// Pages kept back from ordinary allocations: a record that frees (a removal, a truncation, a rename that
    /// replaces, a release) and the cleaning that follows may use them (<see cref="UseReserve"/>), so a full region
    /// can always be cleaned up from inside. 1/64 of the arena, between 256 KiB and 8 MiB.
    /// </summary>
    public long ReservePages => Math.Clamp((_arenaEndPage - _arenaFirstPage) / 64, 64, 2048);

    /// <summary>Set (by the region lock's holder, around one allocation) when the allocation may take the reserve.</summary>
    public bool UseReserve { get; set; }

    /// <summary>Bytes an ordinary allocation can have (free minus the reserve).</summary>
    public long UsableBytes => Math.Max(0, _freePages - (UseReserve ? 0 : ReservePages)) * FormatConstants.PageSize;

    /// <summary>Takes a run of <paramref name="pages"/> free pages; returns its region offset.</summary>
    public long Allocate(long pages)
    {
        if (pages <= 0 || pages > _arenaEndPage - _arenaFirstPage || pages * FormatConstants.PageSize > UsableBytes)
            throw new RegionFullException(pages * FormatConstants.PageSize, UsableBytes);
        long found = Search(_hint, _arenaEndPage, pages);
        if (found < 0)
            found = Search(_arenaFirstPage, Math.Min(_hint + pages, _arenaEndPage), pages);
        if (found < 0)
            throw new RegionFullException(pages * FormatConstants.PageSize, UsableBytes);
        SetRange(found, pages, true);
        _freePages -= pages;
        _hint = found + pages >= _arenaEndPage ? _arenaFirstPage : found + pages;
        return found * FormatConstants.PageSize;
    }

    private long Search(long from, long to, long pages)
    {
        long run = 0, start = from;
        long p = from;
        while (p < to)
        {
            if ((p & 63) == 0 && run == 0 && p + 64 <= to)
            {
                ulong w = Word(p >> 6);
                if (w == ulong.MaxValue) { p += 64; start = p; continue; }
                if (w != 0 && pages <= 64)
                {
                    // Skip the used low bits quickly.
                    int skip = BitOperations.TrailingZeroCount(~w);
                    if (skip > 0) { p += skip; start = p; continue; }
                }
            }
            if (IsSet(p)) { run = 0; start = ++p; continue; }
            run++;
            p++;
            if (run == pages) return start;
        }
        return -1;
    }

    /// <summary>True when every page of the run lies in the arena and is marked in use.</summary>
    public bool AllInUse(long offset, long pages)
    {
        long first = offset / FormatConstants.PageSize;
        if (offset % FormatConstants.PageSize != 0 || pages <= 0 || first < _arenaFirstPage || first + pages > _arenaEndPage)
            return false;
        for (long p = first; p < first + pages; p++)
            if (!IsSet(p))
                return false;
        return true;
    }

    public void Free(long offset, long pages)
    {
        long first = offset / FormatConstants.PageSize;
        if (offset % FormatConstants.PageSize != 0 || first < _arenaFirstPage || first + pages > _arenaEndPage)
            ThrowHelper.Corrupt("log block", offset, "freeing a block outside the arena");
        for (long p = first; p < first + pages; p++)
        {
            if (!IsSet(p))
                ThrowHelper.Corrupt("log block", offset, "freeing a page that is already free");
        }
        SetRange(first, pages, false);
        _freePages += pages;
    }

    /// <summary>Recounts the free pages from the bitmap (after another process changed it).</summary>
    public void Recount()
    {
        long used = 0;
        long p = _arenaFirstPage;
        for (; p < _arenaEndPage && (p & 63) != 0; p++)
            if (IsSet(p)) used++;
        for (; p + 64 <= _arenaEndPage; p += 64)
            used += BitOperations.PopCount(Word(p >> 6));
        for (; p < _arenaEndPage; p++)
            if (IsSet(p)) used++;
        _freePages = _arenaEndPage - _arenaFirstPage - used;
    }
}
