using Daxfs.Branching.Format;
using Daxfs.Branching.Media;

namespace Daxfs.Branching.Log;

/// <summary>
/// Appends records to one branch's delta log and publishes them through the slot's tail word.
/// </summary>
/// <remarks>
/// Publication protocol (why a reader or a recovering process never sees a partial record):
/// <list type="number">
/// <item>A record is reserved at the tail, or at the start of a fresh block that is not yet linked.</item>
/// <item>Its bytes and checksum are written while the tail still points before it.</item>
/// <item>If it opened a new block, the old block is sealed (its used length) and linked to the new one
/// (or the slot's head is set, for the first block).</item>
/// <item>The tail word moves past it with one 8-byte volatile store: the commit point of the record.</item>
/// </list>
/// A crash before step 4 leaves the tail where it was; the unlinked or unreached block is not reachable
/// from the tail and is reclaimed on the next open. Callers hold the region lock.
/// </remarks>
internal sealed unsafe class LogAppender
{
    private readonly Region _region;
    private readonly BlockAllocator _allocator;
    private readonly long _slotOffset;
    private long _spare;
    private long _spareEnd;
    private long _reservedEnd;
    private readonly List<(long Offset, long Pages)> _blocks;

    public LogAppender(Region region, BlockAllocator allocator, long slotOffset, long logId, long head, long lastBlock, long lastBlockEnd, long tail,
        List<(long Offset, long Pages)> blocks)
    {
        _blocks = blocks;
        _region = region;
        _allocator = allocator;
        _slotOffset = slotOffset;
        LogId = logId;
        Head = head;
        LastBlock = lastBlock;
        LastBlockEnd = lastBlockEnd;
        Tail = tail;
    }

    public long LogId { get; }

    public long Head { get; private set; }

    public long LastBlock { get; private set; }

    public long LastBlockEnd { get; private set; }

    public long Tail { get; private set; }

    public LogRef Ref => new(LogId, Head, Tail);

    /// <summary>
    /// Reserves room for a record with a body of <paramref name="bodyLength"/> bytes and writes its header
    /// fields except the checksum. Returns the record's region offset. Throws <see cref="RegionFullException"/>
    /// (changing nothing visible) when no block can be had.
    /// </summary>
    public long Reserve(RecordKind kind, long timeNs, int bodyLength)
    {
        long length = FormatConstants.AlignUp(RecordHeader.Size + (long)bodyLength, 8);
        if (length > uint.MaxValue - 8)
            throw new ArgumentOutOfRangeException(nameof(bodyLength), "record too large");
        long at;
        if (Head != 0 && Tail + length <= LastBlockEnd)
        {
            at = Tail;
        }
        else
        {
            long need = FormatConstants.AlignUp(BlockHeader.Size + length, FormatConstants.PageSize);
            if (_spare == 0 || _spareEnd - _spare < need)
            {
                long last = LastBlockEnd - LastBlock;
                long size = Head == 0 ? FormatConstants.MinBlockSize : Math.Min(Math.Max(last * 2, FormatConstants.MinBlockSize), FormatConstants.MaxBlockSize);
                size = Math.Max(size, need);
                ReleaseSpare(); // too small for this record: its pages may be part of the run found next
                long block = AllocateBlock(ref size, need); // size becomes what was had
                _spare = block;
                _spareEnd = block + size;
                BlockHeader.Init(_region, block, size / FormatConstants.PageSize, LogId);
            }
            at = _spare + BlockHeader.Size;
        }
        RecordHeader.Begin(_region, at, length, kind, LogId, timeNs, bodyLength);
        _reservedEnd = at + length;
        Coordination.FaultPoints.Hit("append.reserved");
        return at;
    }

    /// <summary>
    /// A block of the preferred <paramref name="size"/>, or, when the arena has no free run that long, of half as
    /// much, and so on down to <paramref name="need"/> (what the record needs): the region is full only when
    /// not even that can be had. <paramref name="size"/> is set to the size taken.
    /// </summary>
    private long AllocateBlock(ref long size, long need)
    {
        while (true)
        {
            try
            {
                return _allocator.Allocate(size / FormatConstants.PageSize);
            }
            catch (RegionFullException) when (size > need)
            {
                size = Math.Max(need, FormatConstants.AlignUp(size / 2, FormatConstants.PageSize));
            }
        }
    }

    /// <summary>Moves to the position another process (or an earlier open) published; keeps any spare block.</summary>
    public void Resume(long head, long lastBlock, long lastBlockEnd, long tail)
    {
        Head = head;
        LastBlock = lastBlock;
        LastBlockEnd = lastBlockEnd;
        Tail = tail;
        _reservedEnd = 0;
    }

    /// <summary>Writable body of the record reserved at <paramref name="at"/>.</summary>
    public Span<byte> Body(long at, int bodyLength) => _region.WritableSpan(at + RecordHeader.Size, bodyLength);

    /// <summary>Checksums and publishes the record reserved at <paramref name="at"/>; returns the new tail.</summary>
    public long Publish(long at, bool flush)
    {
        ref var r = ref _region.At<RecordHeader>(at);
        r.Crc = LogCursor.ComputeCrc(_region, at, r.Length);
        long end = at + r.Length;
        if (end != _reservedEnd)
            throw new InvalidOperationException("publishing a record that is not the last reservation");
        if (flush)
            _region.Flush(at, r.Length);
        if (_spare != 0 && at == _spare + BlockHeader.Size)
        {
            if (Head == 0)
            {
                Volatile.Write(ref _region.Word(_slotOffset + BranchSlot.HeadOffset), _spare);
                Head = _spare;
            }
            else
            {
                Volatile.Write(ref _region.At<uint>(LastBlock + BlockHeader.UsedOffset), (uint)(Tail - LastBlock));
                Volatile.Write(ref _region.Word(LastBlock + BlockHeader.NextOffset), _spare);
            }
            if (flush)
                _region.Flush(Head == _spare ? _slotOffset : LastBlock, Head == _spare ? BranchSlot.Size : BlockHeader.Size);
            Coordination.FaultPoints.Hit("append.linked");
            _blocks.Add((_spare, (_spareEnd - _spare) / FormatConstants.PageSize));
            LastBlock = _spare;
            LastBlockEnd = _spareEnd;
            _spare = 0;
            _spareEnd = 0;
        }
        Volatile.Write(ref _region.Word(_slotOffset + BranchSlot.TailOffset), end);
        if (flush)
        {
            // The record and every byte before it are on the file now: mark it, in the same flush of the slot.
            Volatile.Write(ref _region.Word(_slotOffset + BranchSlot.SyncedTailOffset), end);
            _region.Flush(_slotOffset, BranchSlot.Size);
        }
        Tail = end;
        _reservedEnd = 0;
        return end;
    }

    /// <summary>Gives back a block reserved but never linked.</summary>
    public void ReleaseSpare()
    {
        if (_spare != 0)
        {
            _allocator.Free(_spare, (_spareEnd - _spare) / FormatConstants.PageSize);
            _spare = 0;
            _spareEnd = 0;
        }
    }
}
