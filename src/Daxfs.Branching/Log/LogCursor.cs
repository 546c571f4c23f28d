using System.Runtime.CompilerServices;
using Daxfs.Branching.Format;
using Daxfs.Branching.Media;

namespace Daxfs.Branching.Log;

/// <summary>
/// Walks the records of one log span (<see cref="LogRef"/>), validating every block header and record
/// (bounds, owner, length, checksum) before exposing it. The walk ends at the block that holds the tail;
/// links past it are ignored (a block is linked just before the tail moves into it). The number of steps
/// is bounded by the arena's size, so a hostile chain cannot make it loop.
/// </summary>
internal sealed unsafe class LogCursor
{
    private readonly Region _region;
    private readonly long _arenaStart;
    private readonly long _arenaEnd;
    private readonly LogRef _ref;
    private long _block;
    private long _blockEnd;
    private long _pos;
    private long _blocksVisited;
    private readonly long _maxBlocks;

    public LogCursor(Region region, long arenaStart, long arenaEnd, LogRef logRef)
    {
        _region = region;
        _arenaStart = arenaStart;
        _arenaEnd = arenaEnd;
        _ref = logRef;
        _maxBlocks = (arenaEnd - arenaStart) / FormatConstants.PageSize + 1;
        if (!logRef.IsEmpty)
        {
            EnterBlock(logRef.Head);
        }
    }

    /// <summary>
    /// A cursor that resumes a log at <paramref name="position"/> inside <paramref name="block"/> (a block this
    /// process already walked), to replay only the records published since.
    /// </summary>
    public LogCursor(Region region, long arenaStart, long arenaEnd, LogRef logRef, long block, long position)
        : this(region, arenaStart, arenaEnd, logRef with { Head = block })
    {
        if (position < _block + BlockHeader.Size || position > _blockEnd || (position & 7) != 0)
            ThrowHelper.Corrupt("record", position, $"log {logRef.LogId}: resume position outside block {block}");
        _pos = position;
        ValidEnd = position;
    }

    /// <summary>Region offset of the current record's header.</summary>
    public long Offset { get; private set; }

    /// <summary>The log being walked.</summary>
    public long LogId => _ref.LogId;

    public RecordHeader Header;

    /// <summary>End of the last record that validated (where a torn log would be cut).</summary>
    public long ValidEnd { get; private set; }

    /// <summary>A position to watch for (a log's synced tail); see <see cref="MarkReached"/>.</summary>
    public long Mark { get; init; }

    /// <summary>True once the walk validated every record up to <see cref="Mark"/> (a record ended there).</summary>
    public bool MarkReached { get; private set; }

    /// <summary>The block holding the last record that validated.</summary>
    public long ValidBlock { get; private set; }

    public long ValidBlockEnd { get; private set; }

    public long BodyOffset => Offset + RecordHeader.Size;

    public ReadOnlySpan<byte> Body => _region.Span(BodyOffset, (int)Header.BodyLength);

    /// <summary>
    /// Blocks whose records this process already validated, each with the end of what it validated: a record
    /// inside that range is not checksummed again (a branch walked again after a cleaning moved its head: the
    /// blocks it kept, and the ones this process wrote). Every bound is still checked.
    /// </summary>
    public IReadOnlyDictionary<long, long>? Trusted { get; init; }

    /// <summary>Blocks visited so far (each one belongs to this log).</summary>
    public List<(long Offset, long Pages)> Blocks { get; } = [];

    private static bool InBlock(long tail, long block, long blockEnd) => tail >= block + BlockHeader.Size && tail <= blockEnd;

    private void Fail(long offset, string detail) => ThrowHelper.Corrupt("record", offset, $"log {_ref.LogId}: {detail}");

    private void EnterBlock(long block)
    {
        if (++_blocksVisited > _maxBlocks)
            ThrowHelper.Corrupt("log block", block, $"log {_ref.LogId}: block chain longer than the arena (a loop)");
        if (block % FormatConstants.PageSize != 0 || block < _arenaStart || block >= _arenaEnd)
            ThrowHelper.Corrupt("log block", block, $"log {_ref.LogId}: block offset outside the arena or not page-aligned");
        ref readonly var h = ref _region.At<BlockHeader>(block);
        if (h.Magic != BlockHeader.MagicValue)
            ThrowHelper.Corrupt("log block", block, $"log {_ref.LogId}: bad block magic");
        uint crc = Crc32C.Compute(_region.Span(block, BlockHeader.NextOffset));
        if (crc != h.Crc)
            ThrowHelper.Corrupt("log block", block, $"log {_ref.LogId}: block header checksum mismatch");
        if (h.LogId != _ref.LogId)
            ThrowHelper.Corrupt("log block", block, $"block belongs to log {h.LogId}, not {_ref.LogId}");
        if (h.Pages == 0 || h.Pages > (_arenaEnd - block) / FormatConstants.PageSize)
            ThrowHelper.Corrupt("log block", block, $"log {_ref.LogId}: block of {h.Pages} pages runs past the arena");
        _block = block;
        _blockEnd = block + (long)h.Pages * FormatConstants.PageSize;
        _pos = block + BlockHeader.Size;
        Blocks.Add((block, h.Pages));
        if (ValidEnd == 0)
        {
            ValidEnd = _pos;
            ValidBlock = block;
            ValidBlockEnd = _blockEnd;
        }
    }

    /// <summary>Advances to the next record; false at the tail. Throws <see cref="CorruptionException"/> on any fault.</summary>
    public bool MoveNext()
    {
        if (_ref.IsEmpty)
            return false;
        long limit;
        while (true)
        {
            bool tailHere = InBlock(_ref.Tail, _block, _blockEnd);
            if (tailHere)
            {
                limit = _ref.Tail;
            }
            else
            {
                // The log moved on from this block: it was sealed with the bytes it uses.
                uint used = Volatile.Read(ref _region.At<uint>(_block + BlockHeader.UsedOffset));
                if (used < BlockHeader.Size || used > _blockEnd - _block)
                    Fail(_block, $"sealed block claims {used} used bytes");
                limit = _block + used;
            }
            if (_pos > limit)
                Fail(_pos, tailHere ? $"tail {_ref.Tail} is not on a record boundary" : "records run past the block's used bytes");
            if (_pos < limit)
                break;
            if (tailHere)
                return false;
            long next = Volatile.Read(ref _region.Word(_block + BlockHeader.NextOffset));
            EnterBlock(next);
        }
        Offset = _pos;
        if (limit - _pos < RecordHeader.Size)
            Fail(_pos, "record header runs past the end of the log");
        Header = _region.At<RecordHeader>(_pos);
        if (Header.Length < RecordHeader.Size || (Header.Length & 7) != 0 || Header.Length > limit - _pos)
            Fail(_pos, $"record length {Header.Length} invalid or past the end of the log");
        if (Header.BodyLength > Header.Length - RecordHeader.Size || Header.Length - RecordHeader.Size - Header.BodyLength >= 8)
            Fail(_pos, $"body length {Header.BodyLength} does not fit record length {Header.Length}");
        if (Header.LogId != _ref.LogId)
            Fail(_pos, $"record belongs to log {Header.LogId}, not {_ref.LogId}");
        if (Trusted is null || !Trusted.TryGetValue(_block, out long trustedEnd) || _pos + Header.Length > trustedEnd)
        {
            uint crc = ComputeCrc(_region, _pos, Header.Length);
            if (crc != Header.Crc)
                Fail(_pos, $"record checksum mismatch (stored {Header.Crc:X8}, computed {crc:X8})");
        }
        _pos += Header.Length;
        ValidEnd = _pos;
        if (_pos == Mark)
            MarkReached = true;
        ValidBlock = _block;
        ValidBlockEnd = _blockEnd;
        return true;
    }

    /// <summary>CRC32C of a record: its header without the checksum field, then its body and padding.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static uint ComputeCrc(Region region, long offset, uint length)
    {
        uint crc = Crc32C.Append(Crc32C.Seed, region.Span(offset, RecordHeader.CrcOffset));
        crc = Crc32C.Append(crc, region.Span(offset + RecordHeader.CrcOffset + 4, (int)length - RecordHeader.CrcOffset - 4));
        return Crc32C.Finish(crc);
    }
}
