using System.Text;
using Daxfs.Branching.Branching;
using Daxfs.Branching.Format;
using Daxfs.Branching.Index;
using Daxfs.Branching.Log;

namespace Daxfs.Branching;

public sealed partial class Store
{
    /// <summary>What a replay learned about the logs it walked.</summary>
    private sealed class ReplayContext
    {
        /// <summary>Every log replayed during this open; a log reached twice is corruption (or a loop).</summary>
        public readonly HashSet<long> SeenLogs = [];
        public long Records;
        public long Bytes;
    }

    /// <summary>
    /// Rebuilds this process's picture of the region from the branch table and the logs, repairing what a
    /// crash may have left: torn log tails, stale branches not yet marked, leaked blocks. Runs under the
    /// region lock.
    /// </summary>
    private void Recover(bool lockTakenOver)
    {
        var truncated = new List<string>();
        var invalidated = new List<string>();
        int released = 0;
        var ctx = new ReplayContext();
        uint count = _super.SlotCount;

        // 1. Read and check every slot.
        var raw = new BranchSlot[count];
        var names = new string[count];
        for (int i = 0; i < count; i++)
        {
            raw[i] = SlotAt(i);
            if (raw[i].State == (uint)SlotState.Free)
                continue;
            names[i] = CheckSlot(i, in raw[i]);
        }
        if (raw[0].State != (uint)SlotState.Live || names[0] != "main" || raw[0].Depth != 0)
            ThrowHelper.Corrupt("branch slot 0", SlotOffset(0), "slot 0 is not the live main branch");

        // 2. Main: replay its versions on the base image.
        var main = NewState(0, in raw[0], "main", null);
        main.View = View.Initial(_base);
        ReplayOwnLog(main, in raw[0], ctx, truncated);
        _slots[0] = main;
        _byName["main"] = main;

        // 3. Other live slots, parents before children (depth strictly grows, so parent links cannot loop).
        var order = Enumerable.Range(1, (int)count - 1)
            .Where(i => raw[i].State == (uint)SlotState.Live)
            .OrderBy(i => raw[i].Depth)
            .ToList();
        var stale = new HashSet<int>();
        foreach (int i in order)
        {
            ref readonly var s = ref raw[i];
            int p = (int)s.ParentSlot;
            var parent = _slots[p];
            bool parentMatches = p < count && p != i && raw[p].Generation == s.ParentGeneration && s.Depth == raw[p].Depth + 1;
            if (parent is null || !parentMatches)
            {
                // The parent ended (abort, discard, or a stale parent): this branch went with it.
                if (parentMatches && stale.Contains(p))
                {
                    stale.Add(i);
                    invalidated.Add(names[i]);
                }
                else
                {
                    released++;
                }
                continue;
            }
            if (s.ForkEpoch != parent.Epoch)
            {
                // A commit into the parent happened after the fork.
                stale.Add(i);
                invalidated.Add(names[i]);
                continue;
            }
            var state = NewState(i, in s, names[i], parent);
            state.View = parent.View;
            ReplayOwnLog(state, in s, ctx, truncated);
            _slots[i] = state;
            parent.Children.Add(state);
            if (_byName.ContainsKey(names[i]))
                ThrowHelper.Corrupt($"branch slot {i}", SlotOffset(i), $"name '{names[i]}' is used by two live branches");
            _byName[names[i]] = state;
        }

        // 4. Write back what was derived: ended slots, epochs, child counts.
        for (int i = 1; i < count; i++)
        {
            if (_slots[i] is not null)
                continue;
            ref var slot = ref SlotAt(i);
            if (slot.State == (uint)SlotState.Live)
            {
                if (stale.Contains(i) && !ctx.SeenLogs.Contains(slot.LogId))
                    MarkInvalidated(ref slot); // invalidated by a commit elsewhere
                else
                    Volatile.Write(ref slot.State, (uint)SlotState.Free); // committed (its log is history) or discarded
            }
            if (slot.State == (uint)SlotState.Invalidated && !_byName.ContainsKey(names[i]))
                _invalidatedNames[names[i]] = i;
        }
        foreach (var st in _slots)
        {
            if (st is null) continue;
            ref var slot = ref SlotAt(st.Slot);
            Volatile.Write(ref slot.Epoch, st.Epoch);
            Volatile.Write(ref slot.LiveChildren, (uint)st.Children.Count);
        }

        // 5. Space: every block reachable from a live branch or from main's history is in use; the rest is free.
        var used = new List<(long, long)>();
        foreach (var st in _slots)
            if (st is not null) used.AddRange(st.AllBlocks());
        _allocator.Rebuild(used);

        // 6. The next log id must be above every id in use.
        long maxLog = ctx.SeenLogs.Count == 0 ? 1 : ctx.SeenLogs.Max();
        foreach (var st in _slots)
            if (st is not null) maxLog = Math.Max(maxLog, st.Log.LogId);
        ref long next = ref _region.Word(FormatConstants.ControlOffset + ControlBlock.NextLogIdOffset);
        if (Volatile.Read(ref next) <= maxLog)
            Volatile.Write(ref next, maxLog + 1);

        Recovery = new RecoveryReport(truncated, invalidated, released, lockTakenOver);
    }

    private static void MarkInvalidated(ref BranchSlot slot)
    {
        Volatile.Write(ref slot.State, (uint)SlotState.Invalidated);
        Volatile.Write(ref slot.Tail, 0);
        Volatile.Write(ref slot.Head, 0);
    }

    /// <summary>Checks a used slot's fields; returns its name.</summary>
    private unsafe string CheckSlot(int i, in BranchSlot s)
    {
        long at = SlotOffset(i);
        if (s.State > (uint)SlotState.Invalidated)
            ThrowHelper.Corrupt($"branch slot {i}", at, $"unknown state {s.State}");
        if (s.NameLength == 0 || s.NameLength > FormatConstants.MaxBranchName)
            ThrowHelper.Corrupt($"branch slot {i}", at, $"name length {s.NameLength} out of range");
        string name;
        fixed (byte* p = s.Name)
        {
            var bytes = new ReadOnlySpan<byte>(p, (int)s.NameLength);
            string? why = i == 0 ? (bytes.SequenceEqual("main"u8) ? null : "slot 0 is not named main") : BranchNameProblem(Encoding.ASCII.GetString(bytes));
            if (why is not null)
                ThrowHelper.Corrupt($"branch slot {i}", at, $"bad name: {why}");
            name = Encoding.ASCII.GetString(bytes);
        }
        if (s.State != (uint)SlotState.Live)
            return name;
        if (i != 0 && (s.ParentSlot >= _super.SlotCount || s.Depth == 0 || s.Depth >= _super.SlotCount))
            ThrowHelper.Corrupt($"branch slot {i}", at, $"parent slot {s.ParentSlot} or depth {s.Depth} out of range");
        if (s.Epoch < 0 || s.ForkEpoch < 0 || s.LogId <= 0)
            ThrowHelper.Corrupt($"branch slot {i}", at, "negative epoch or log id");
        if (s.Tail != 0 && (s.Head == 0 || s.Tail < _allocator.ArenaOffset || s.Tail > _allocator.ArenaEnd))
            ThrowHelper.Corrupt($"branch slot {i}", at, $"tail {s.Tail} outside the arena");
        return name;
    }

    private BranchState NewState(int slot, in BranchSlot s, string name, BranchState? parent)
    {
        var st = new BranchState
        {
            Slot = slot,
            Generation = s.Generation,
            Name = name,
            Parent = parent,
            Depth = (int)s.Depth,
            CreatedNs = s.CreatedNs,
            Log = null!,
        };
        return st;
    }

    /// <summary>
    /// Replays a slot's own log onto its state's view. A torn tail (a record that fails validation) is
    /// cut back to the longest valid prefix; damage in a log it merged is corruption.
    /// </summary>
    private void ReplayOwnLog(BranchState st, in BranchSlot s, ReplayContext ctx, List<string> truncated)
    {
        long head = s.Tail == 0 ? 0 : s.Head;
        var logRef = new LogRef(s.LogId, head, head == 0 ? 0 : s.Tail);
        if (!ctx.SeenLogs.Add(s.LogId))
            ThrowHelper.Corrupt($"branch slot {st.Slot}", SlotOffset(st.Slot), $"log {s.LogId} is used twice");
        long records0 = ctx.Records, bytes0 = ctx.Bytes;
        long epoch = 0; // merges (or, for main, versions) since the branch began
        LogCursor? root = null;
        bool torn = false;
        if (!logRef.IsEmpty)
        {
            try { root = Cursor(logRef); }
            catch (CorruptionException) { torn = true; } // the first block is unreadable: nothing survives
        }
        if (root is not null)
        {
            var view = st.View;
            torn = Replay(st, ref view, root, ctx, ref epoch, prefixMode: true);
            st.View = view;
        }
        st.Epoch = epoch;
        st.Records = ctx.Records - records0;
        st.LogBytes = ctx.Bytes - bytes0;

        long tail;
        if (root is null)
            tail = 0;
        else if (!torn)
            tail = logRef.Tail;
        else
            tail = root.ValidEnd == root.Blocks[0].Offset + BlockHeader.Size ? 0 : root.ValidEnd;
        if (torn)
        {
            truncated.Add(st.Name);
            ref var slot = ref SlotAt(st.Slot);
            Volatile.Write(ref slot.Tail, tail);
            if (tail == 0) Volatile.Write(ref slot.Head, 0);
        }
        long lastBlock = 0, lastEnd = 0;
        if (tail != 0)
        {
            foreach (var b in root!.Blocks)
            {
                st.OwnBlocks.Add(b);
                if (b.Offset == root.ValidBlock) break;
            }
            lastBlock = root.ValidBlock;
            lastEnd = root.ValidBlockEnd;
        }
        st.Log = new LogAppender(_region, _allocator, SlotOffset(st.Slot), s.LogId, tail == 0 ? 0 : logRef.Head, lastBlock, lastEnd, tail, st.OwnBlocks);
    }

    /// <summary>
    /// Walks a log and every log it merges (depth-first, in order), applying each record to
    /// <paramref name="view"/>. Returns true when the root log was torn (prefix mode) and the walk stopped.
    /// </summary>
    private bool Replay(BranchState owner, ref View view, LogCursor root, ReplayContext ctx, ref long epoch, bool prefixMode)
    {
        var stack = new Stack<LogCursor>();
        stack.Push(root);
        while (stack.Count > 0)
        {
            var c = stack.Peek();
            bool more;
            try
            {
                more = c.MoveNext();
            }
            catch (CorruptionException) when (prefixMode && ReferenceEquals(c, root))
            {
                return true;
            }
            if (!more)
            {
                stack.Pop();
                if (!ReferenceEquals(c, root))
                    owner.MergedBlocks.AddRange(c.Blocks);
                continue;
            }
            var kind = (RecordKind)c.Header.Kind;
            var r = _rec;
            RecordCodec.Decode(r, kind, c.Header.TimeNs, c.Offset, c.Body, c.BodyOffset);
            switch (kind)
            {
                case RecordKind.Merge:
                    if (owner.IsMain && ReferenceEquals(c, root))
                        ThrowHelper.Corrupt("record", c.Offset, "a merge record in main's own log");
                    if (ReferenceEquals(c, root))
                    {
                        if (r.Epoch != epoch + 1)
                            ThrowHelper.Corrupt("record", c.Offset, $"merge epoch {r.Epoch} does not follow {epoch}");
                        epoch = r.Epoch;
                    }
                    PushLog(stack, r.Logs[0], ctx, c.Offset);
                    break;
                case RecordKind.Version:
                    if (!owner.IsMain || !ReferenceEquals(c, root))
                        ThrowHelper.Corrupt("record", c.Offset, "a version record outside main's own log");
                    if (r.Seq != epoch + 1)
                        ThrowHelper.Corrupt("record", c.Offset, $"version {r.Seq} does not follow {epoch}");
                    epoch = r.Seq;
                    _versions.Add(new VersionInfo(r.Seq, FileStat.FromNs(r.TimeNs), r.Message, r.Source, r.Size, r.FileOffset));
                    for (int k = r.Logs.Length - 1; k >= 0; k--)
                        PushLog(stack, r.Logs[k], ctx, c.Offset);
                    break;
                default:
                    if (owner.IsMain && ReferenceEquals(c, root))
                        ThrowHelper.Corrupt("record", c.Offset, $"a {kind} record in main's own log (main changes only by commits)");
                    try
                    {
                        view = ViewOps.Apply(view, r, null);
                    }
                    catch (DaxfsIOException ex)
                    {
                        ThrowHelper.Corrupt("record", c.Offset, $"{kind} does not apply: {ex.Message}");
                    }
                    ctx.Records++;
                    ctx.Bytes += c.Header.Length;
                    break;
            }
            if (stack.Count > FormatConstants.MaxMergeNesting)
                ThrowHelper.Corrupt("record", c.Offset, "merges nested too deep");
        }
        return false;
    }

    private void PushLog(Stack<LogCursor> stack, LogRef r, ReplayContext ctx, long at)
    {
        if (r.IsEmpty)
            return;
        if (!ctx.SeenLogs.Add(r.LogId))
            ThrowHelper.Corrupt("record", at, $"log {r.LogId} is merged twice (or merges itself)");
        stack.Push(Cursor(r));
    }
}
