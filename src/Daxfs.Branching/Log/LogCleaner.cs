using Daxfs.Branching.Format;
using Daxfs.Branching.Index;
using Daxfs.Branching.Media;

namespace Daxfs.Branching.Log;

/// <summary>
/// Cleans a run of one branch's log: the records of some of its blocks (and of the logs merged into it
/// there) are written again into fresh blocks, with every write cut down to the bytes the branch's view
/// still reads, and the fresh blocks are linked in front of the first block kept after them. Publishing is
/// one store (<see cref="Store"/> does it): of the slot's head when the run starts at the head, else of the
/// link of the block before the run. Until then nothing written here is reachable.
/// </summary>
/// <remarks>
/// <para>
/// Why the view stays the same. Every record except a write is copied as it was, in the order it had, so
/// names, inode numbers, attributes, times and epochs replay exactly as before. A write's bytes are copied
/// only where the view <em>at the time of cleaning</em> still maps a file offset to that record's payload;
/// every other byte of it was overwritten, truncated away or removed by a later record, and that later
/// record (in the prefix or after it) still sets what those bytes' absence could change (size, times). So
/// replaying the cleaned prefix and then the untouched rest gives the same tree, pointing at the copies.
/// </para>
/// <para>
/// A merge record in the prefix becomes its merged log's records, inlined, followed by a merge record with
/// an empty log reference: the epoch count, the merge's time and its message stay. Merges nested inside a
/// merged log are inlined without a record of their own (they counted the merged branch's epochs).
/// </para>
/// <para>
/// The caller holds a read lease from before it took <see cref="Snapshot"/> until the copy is done, so the
/// bytes read here are not reused even if the branch ends meanwhile; a branch with live children is frozen,
/// and records past the snapshot's tail only ever follow the kept blocks.
/// </para>
/// </remarks>
internal sealed class LogCleaner
{
    private readonly Region _region;
    private readonly long _arenaStart;
    private readonly long _arenaEnd;

    public LogCleaner(Region region, long arenaStart, long arenaEnd)
    {
        _region = region;
        _arenaStart = arenaStart;
        _arenaEnd = arenaEnd;
    }

    /// <summary>What one log looked like when cleaning began.</summary>
    /// <param name="LogId">The branch's own log.</param>
    /// <param name="Head">Its first block.</param>
    /// <param name="Tail">Its tail then.</param>
    /// <param name="Blocks">Its blocks in chain order, up to the one holding the tail.</param>
    /// <param name="View">The branch's view at that tail.</param>
    /// <param name="Trusted">Blocks this process already validated (its own and merged logs up to the tail): walked without checksums again.</param>
    public sealed record Snapshot(long LogId, long Head, long Tail, IReadOnlyList<(long Offset, long Pages)> Blocks, View View, IReadOnlyDictionary<long, long> Trusted);

    /// <summary>The prefix chosen and what cleaning it costs and gives.</summary>
    public sealed class Plan
    {
        /// <summary>The first own block replaced (its index in the chain); 0: the replaced part starts at the head.</summary>
        public int First;
        /// <summary>The end of the replaced own blocks (index of the first block kept after them).</summary>
        public int Blocks;
        /// <summary>The block before the replaced part, whose link is moved (0 when the part starts at the head).</summary>
        public long Before;
        /// <summary>The first own block kept: the fresh blocks link to it.</summary>
        public long Continue;
        /// <summary>Bytes of records written again (headers included).</summary>
        public long CopyBytes;
        /// <summary>Payload bytes among them.</summary>
        public long PayloadBytes;
        /// <summary>Bytes given back: the replaced blocks and the blocks of logs merged in the prefix.</summary>
        public long FreedBytes;
        /// <summary>The largest record copied as it was.</summary>
        public long LargestRecord;
        /// <summary>Bytes of all of the branch's blocks before cleaning (own and merged).</summary>
        public long LogBytesBefore;
        /// <summary>Dead bytes found in the whole candidate prefix (before a prefix was chosen).</summary>
        public long DeadBytes;
    }

    /// <summary>
    /// Walks every block but the one holding the tail and chooses the run of blocks whose cleaning gives back most
    /// for what it copies (it scores freed − copied − copied / 2, in whole pages), copying at most
    /// <paramref name="maxCopy"/> bytes (one block alone may copy more) and never more than <paramref name="maxRoom"/>. With <paramref name="anywhere"/> false the run starts at
    /// the head (a region of format version 3, whose slot has no cleaning count). Returns null when no run gives back
    /// at least <paramref name="minGain"/> bytes. With <paramref name="minGain"/> <see cref="long.MinValue"/>, every
    /// block but the tail's (tests).
    /// </summary>
    public Plan? Choose(Snapshot s, long mergedBytes, long minGain, long maxCopy, long maxRoom, bool anywhere)
    {
        int n = s.Blocks.Count - 1; // the tail's block is never replaced
        var plan = new Plan { LogBytesBefore = s.Blocks.Sum(b => b.Pages) * FormatConstants.PageSize + mergedBytes };
        if (n <= 0)
            return null;
        var copy = new long[n];
        var freed = new long[n];
        var payload = new long[n];
        long largest = 0;
        for (int i = 0; i < n; i++)
            freed[i] = s.Blocks[i].Pages * FormatConstants.PageSize;
        Walk(s, 0, n, (ownBlock, c, pieces) =>
        {
            if (pieces is null)
            {
                copy[ownBlock] += c.Header.Length;
                largest = Math.Max(largest, c.Header.Length);
            }
            else
            {
                foreach (var (_, length, _) in pieces)
                {
                    copy[ownBlock] += FormatConstants.AlignUp(RecordHeader.Size + RecordCodec.WritePayloadOffset + length, 8);
                    payload[ownBlock] += length;
                }
            }
        }, (ownBlock, stubLength) => copy[ownBlock] += stubLength, (ownBlock, blocks) => freed[ownBlock] += blocks.Sum(b => b.Pages) * FormatConstants.PageSize);
        plan.DeadBytes = freed.Sum() - copy.Sum();
        plan.LargestRecord = largest;
        if (minGain == long.MinValue)
        {
            Fill(plan, 0, n, freed, copy, payload);
        }
        else
        {
            long bestScore = long.MinValue, bestGain = 0;
            int bestFirst = 0, bestEnd = 0;
            for (int a = 0; a < (anywhere ? n : 1); a++)
            {
                long f = 0, cp = 0;
                for (int b = a; b < n; b++)
                {
                    // A run copies at most maxCopy (one block alone may copy more), and never more than there is room for.
                    if (cp + copy[b] > (b > a ? Math.Min(maxCopy, maxRoom) : maxRoom))
                        break;
                    f += freed[b];
                    cp += copy[b];
                    // The copy takes whole pages (one fresh block when it fits): the gain is counted in them. The score
                    // weighs the copying too, so all-live blocks at the ends of the run are left where they are.
                    long gain = f - (cp == 0 ? 0 : FormatConstants.AlignUp(cp + BlockHeader.Size, FormatConstants.PageSize));
                    long score = gain - cp / 2;
                    if (score > bestScore)
                    {
                        (bestScore, bestGain, bestFirst, bestEnd) = (score, gain, a, b + 1);
                    }
                }
            }
            if (bestGain < Math.Max(1, minGain))
                return null;
            Fill(plan, bestFirst, bestEnd, freed, copy, payload);
        }
        plan.Continue = s.Blocks[plan.Blocks].Offset;
        plan.Before = plan.First == 0 ? 0 : s.Blocks[plan.First - 1].Offset;
        return plan;
    }

    private static void Fill(Plan plan, int first, int end, long[] freed, long[] copy, long[] payload)
    {
        plan.First = first;
        plan.Blocks = end;
        plan.FreedBytes = freed[first..end].Sum();
        plan.CopyBytes = copy[first..end].Sum();
        plan.PayloadBytes = payload[first..end].Sum();
    }

    /// <summary>What writing a plan's run produced.</summary>
    public sealed class Result
    {
        /// <summary>The first fresh block (or the kept block itself when nothing needed copying).</summary>
        public long Head;
        /// <summary>The end of the last record written (0 if none).</summary>
        public long LastRecordEnd;
        /// <summary>The fresh blocks, in chain order.</summary>
        public List<(long Offset, long Pages)> Written = [];
        /// <summary>The parts of the reserved runs left unused.</summary>
        public List<(long Offset, long Pages)> Unused = [];
        /// <summary>The blocks of the logs merged in the run.</summary>
        public List<(long Offset, long Pages)> Merged = [];
        /// <summary>Each write's bytes that moved: inode, file offset, length, old and new region offset.</summary>
        public List<(long Ino, long FileOffset, long Length, long From, long To, long ToRecord)> Moves = [];
        /// <summary>Change records (and their bytes) the run held, and the ones written for them.</summary>
        public long OldRecords, OldBytes, NewRecords, NewBytes;
    }

    /// <summary>
    /// Writes the plan's run into <paramref name="runs"/> (fresh, unreachable arena runs this process reserved).
    /// </summary>
    public Result Write(Snapshot s, Plan plan, IReadOnlyList<(long Offset, long Pages)> runs)
    {
        var w = new BlockWriter(_region, s.LogId, runs);
        var result = new Result();
        var rec = new Rec();
        Walk(s, plan.First, plan.Blocks, (_, c, pieces) =>
        {
            if (pieces is null)
            {
                long at = w.Reserve((RecordKind)c.Header.Kind, c.Header.TimeNs, (int)c.Header.BodyLength);
                c.Body.CopyTo(_region.WritableSpan(at + RecordHeader.Size, (int)c.Header.BodyLength));
                w.Seal(at);
                result.NewRecords++;
                result.NewBytes += c.Header.Length;
                return;
            }
            RecordCodec.Decode(rec, RecordKind.Write, c.Header.TimeNs, c.Offset, c.Body, c.BodyOffset);
            foreach (var (fileOffset, length, source) in pieces)
            {
                long done = 0;
                while (done < length)
                {
                    int part = (int)Math.Min(length - done, w.PayloadRoom());
                    long at = w.Reserve(RecordKind.Write, c.Header.TimeNs, RecordCodec.WritePayloadOffset + part);
                    var body = _region.WritableSpan(at + RecordHeader.Size, RecordCodec.WritePayloadOffset + part);
                    RecordCodec.EncodeWriteHeader(body, rec.Ino, fileOffset + done);
                    _region.Span(source + done, part).CopyTo(body[RecordCodec.WritePayloadOffset..]);
                    w.Seal(at);
                    result.Moves.Add((rec.Ino, fileOffset + done, part, source + done, at + RecordHeader.Size + RecordCodec.WritePayloadOffset, at));
                    result.NewRecords++;
                    result.NewBytes += _region.At<RecordHeader>(at).Length;
                    done += part;
                }
            }
        }, (_, _) => { }, (_, blocks) => result.Merged.AddRange(blocks), stub: (c, r) =>
        {
            int len = RecordCodec.EncodeMerge(default, new LogRef(r.Logs[0].LogId, 0, 0), r.Epoch, r.Message);
            long at = w.Reserve(RecordKind.Merge, c.Header.TimeNs, len);
            RecordCodec.EncodeMerge(_region.WritableSpan(at + RecordHeader.Size, len), new LogRef(r.Logs[0].LogId, 0, 0), r.Epoch, r.Message);
            w.Seal(at);
        }, onChange: c =>
        {
            result.OldRecords++;
            result.OldBytes += c.Header.Length;
        });
        (result.Head, result.LastRecordEnd, result.Written, result.Unused) = w.Finish(plan.Continue);
        return result;
    }

    /// <summary>
    /// Walks blocks <paramref name="first"/> to <paramref name="ownBlocks"/> (exclusive) of the log and every log merged there, depth-first.
    /// <paramref name="onRecord"/> gets each record to copy: with null pieces to copy it whole, or a write's live
    /// pieces (file offset, length, region source); <paramref name="onStub"/> the length of the merge stub a
    /// top-level merge becomes (and <paramref name="stub"/>, when given, writes it after the merged records);
    /// <paramref name="onMergedBlocks"/> the blocks of each merged log once it is done.
    /// </summary>
    private void Walk(Snapshot s, int first, int ownBlocks, Action<int, LogCursor, List<(long FileOffset, long Length, long Source)>?> onRecord,
        Action<int, long> onStub, Action<int, List<(long Offset, long Pages)>> onMergedBlocks, Action<LogCursor, Rec>? stub = null,
        Action<LogCursor>? onChange = null)
    {
        var own = new LogCursor(_region, _arenaStart, _arenaEnd, new LogRef(s.LogId, s.Blocks[first].Offset, s.Tail)) { Trusted = s.Trusted };
        long stop = s.Blocks[ownBlocks].Offset;
        var stack = new Stack<(LogCursor Cursor, Rec? Stub, LogCursor? Parent)>();
        stack.Push((own, null, null));
        var pieces = new List<(long, long, long)>();
        int ownIndex = 0;
        while (stack.Count > 0)
        {
            var (c, pendingStub, parent) = stack.Peek();
            bool isOwn = ReferenceEquals(c, own);
            if (!c.MoveNext())
            {
                stack.Pop();
                if (isOwn)
                    break;
                onMergedBlocks(ownIndex, c.Blocks);
                if (pendingStub is not null)
                    stub?.Invoke(parent!, pendingStub);
                continue;
            }
            if (isOwn)
            {
                if (c.Offset >= stop && c.Offset < stop + s.Blocks[ownBlocks].Pages * FormatConstants.PageSize)
                    break; // the first kept block
                ownIndex = first + c.Blocks.Count - 1;
                if (ownIndex >= ownBlocks)
                    break;
            }
            var kind = (RecordKind)c.Header.Kind;
            if (kind != RecordKind.Merge)
                onChange?.Invoke(c);
            if (kind == RecordKind.Merge)
            {
                var r = new Rec();
                RecordCodec.Decode(r, kind, c.Header.TimeNs, c.Offset, c.Body, c.BodyOffset);
                if (isOwn)
                    onStub(ownIndex, FormatConstants.AlignUp(RecordHeader.Size + RecordCodec.EncodeMerge(default, new LogRef(r.Logs[0].LogId, 0, 0), r.Epoch, r.Message), 8));
                if (r.Logs[0].IsEmpty)
                {
                    if (isOwn) stub?.Invoke(c, r); // already a stub: it stays one
                    continue;
                }
                if (stack.Count > FormatConstants.MaxMergeNesting)
                    ThrowHelper.Corrupt("record", c.Offset, "merges nested too deep");
                stack.Push((new LogCursor(_region, _arenaStart, _arenaEnd, r.Logs[0]) { Trusted = s.Trusted }, isOwn ? r : null, c));
                continue;
            }
            if (kind != RecordKind.Write)
            {
                onRecord(ownIndex, c, null);
                continue;
            }
            pieces.Clear();
            LivePieces(s.View, c, pieces);
            if (pieces.Count > 0)
                onRecord(ownIndex, c, pieces);
        }
    }

    /// <summary>The bytes of the write record at the cursor that <paramref name="view"/> still maps to its payload.</summary>
    private static void LivePieces(View view, LogCursor c, List<(long FileOffset, long Length, long Source)> pieces)
    {
        var body = c.Body;
        long ino = System.Buffers.Binary.BinaryPrimitives.ReadInt64LittleEndian(body);
        long fileOffset = System.Buffers.Binary.BinaryPrimitives.ReadInt64LittleEndian(body[8..]);
        long length = body.Length - RecordCodec.WritePayloadOffset;
        long payload = c.BodyOffset + RecordCodec.WritePayloadOffset;
        if (length <= 0 || !view.TryGetNode(ino, out var node) || node.Kind != NodeKind.File)
            return;
        long end = fileOffset + length;
        var e = LongMap.Floor(node.Extents, fileOffset);
        if (e is null || e.Key + e.Value.Length <= fileOffset)
            e = LongMap.Ceiling(node.Extents, fileOffset);
        while (e is not null && e.Key < end)
        {
            long from = Math.Max(e.Key, fileOffset), to = Math.Min(e.Key + e.Value.Length, end);
            long source = e.Value.Source + (from - e.Key);
            if (to > from && source == payload + (from - fileOffset))
            {
                if (pieces.Count > 0 && pieces[^1] is var last && last.FileOffset + last.Length == from && last.Source + last.Length == source)
                    pieces[^1] = (last.FileOffset, last.Length + (to - from), last.Source);
                else
                    pieces.Add((from, to - from, source));
            }
            e = LongMap.Ceiling(node.Extents, e.Key + 1);
        }
    }

    /// <summary>Writes records into a list of reserved runs, each run one block, chained in order.</summary>
    private sealed class BlockWriter
    {
        private readonly Region _region;
        private readonly long _logId;
        private readonly IReadOnlyList<(long Offset, long Pages)> _runs;
        private int _run = -1;
        private long _block, _blockEnd, _pos;
        private readonly List<(long Offset, long Pages)> _written = [];
        private long _lastEnd;

        public BlockWriter(Region region, long logId, IReadOnlyList<(long Offset, long Pages)> runs)
        {
            _region = region;
            _logId = logId;
            _runs = runs;
        }

        /// <summary>Payload bytes a write record can still carry in the current block (or a whole next block's worth).</summary>
        public long PayloadRoom()
        {
            long room = _run < 0 ? 0 : (_blockEnd - _pos - RecordHeader.Size - RecordCodec.WritePayloadOffset) & ~7L;
            if (room >= 8)
                return Math.Min(room, FormatConstants.MaxWritePayload);
            Next();
            return Math.Min((_blockEnd - _pos - RecordHeader.Size - RecordCodec.WritePayloadOffset) & ~7L, FormatConstants.MaxWritePayload);
        }

        public long Reserve(RecordKind kind, long timeNs, int bodyLength)
        {
            long length = FormatConstants.AlignUp(RecordHeader.Size + (long)bodyLength, 8);
            if (_run < 0 || _pos + length > _blockEnd)
                Next();
            if (_pos + length > _blockEnd)
                throw new InvalidOperationException($"cleaning: a record of {length} bytes does not fit a fresh block of {_blockEnd - _block} bytes");
            long at = _pos;
            RecordHeader.Begin(_region, at, length, kind, _logId, timeNs, bodyLength);
            _pos = at + length;
            return at;
        }

        public void Seal(long at)
        {
            ref var r = ref _region.At<RecordHeader>(at);
            r.Crc = LogCursor.ComputeCrc(_region, at, r.Length);
            _lastEnd = at + r.Length;
        }

        private void Next()
        {
            if (++_run >= _runs.Count)
                throw new InvalidOperationException("cleaning: the reserved space ran out (the estimate was wrong)");
            var (offset, pages) = _runs[_run];
            if (_written.Count > 0)
                Link(_block, _pos, offset);
            BlockHeader.Init(_region, offset, pages, _logId);
            _block = offset;
            _blockEnd = offset + pages * FormatConstants.PageSize;
            _pos = offset + BlockHeader.Size;
            _written.Add((offset, pages));
        }

        private void Link(long block, long end, long next)
        {
            _region.At<uint>(block + BlockHeader.UsedOffset) = (uint)(end - block);
            _region.Word(block + BlockHeader.NextOffset) = next;
        }

        /// <summary>Seals the last block, trimmed to the pages it uses, and links it to <paramref name="continueAt"/>.</summary>
        public (long Head, long LastEnd, List<(long Offset, long Pages)> Written, List<(long Offset, long Pages)> Unused) Finish(long continueAt)
        {
            var unused = new List<(long, long)>();
            for (int i = _run + 1; i < _runs.Count; i++)
                unused.Add(_runs[i]);
            if (_written.Count == 0)
                return (continueAt, 0, _written, unused);
            long usedPages = FormatConstants.AlignUp(_pos - _block, FormatConstants.PageSize) / FormatConstants.PageSize;
            long pages = _written[^1].Pages;
            if (usedPages < pages)
            {
                ref var h = ref _region.At<BlockHeader>(_block);
                h.Pages = (uint)usedPages;
                h.Crc = Crc32C.Compute(_region.Span(_block, BlockHeader.NextOffset));
                _written[^1] = (_block, usedPages);
                unused.Add((_block + usedPages * FormatConstants.PageSize, pages - usedPages));
            }
            Link(_block, _pos, continueAt);
            return (_written[0].Offset, _lastEnd, _written, unused);
        }
    }
}
