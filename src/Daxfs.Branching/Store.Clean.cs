using System.Diagnostics;
using Daxfs.Branching.Branching;
using Daxfs.Branching.Coordination;
using Daxfs.Branching.Format;
using Daxfs.Branching.Index;
using Daxfs.Branching.Log;

namespace Daxfs.Branching;

/// <summary>What cleaning one branch's log did.</summary>
/// <param name="Branch">The branch.</param>
/// <param name="Kept">True for a branch invalidated with its log kept for a rebase.</param>
/// <param name="Cleaned">False when no part of the log was worth cleaning (nothing was written).</param>
/// <param name="BytesBefore">Arena bytes the branch's log (and the logs merged into it) took before.</param>
/// <param name="BytesAfter">Arena bytes they take after.</param>
/// <param name="CopiedBytes">Bytes of records written again (live payload and metadata).</param>
/// <param name="FreedBytes">Arena bytes given up (reused once no read lease can still see them).</param>
/// <param name="Elapsed">Time the cleaning took.</param>
/// <param name="LockHeld">Time it held the region lock, all steps together (other processes' changes and re-reads wait only for this).</param>
public sealed record CleanReport(string Branch, bool Kept, bool Cleaned, long BytesBefore, long BytesAfter, long CopiedBytes, long FreedBytes,
    TimeSpan Elapsed, TimeSpan LockHeld)
{
    /// <summary>Publications the cleaning made (each copies at most 16 MiB, so another process's pause for each stays short).</summary>
    public int Steps { get; init; } = 1;
}

public sealed partial class Store
{
    /// <summary>
    /// Clean a branch's log automatically, in the process writing it, once the log has grown enough since
    /// its last check and most of what cleaning would copy is dead (see docs/space.md). On by default.
    /// </summary>
    public bool AutoClean { get; set; } = true;

    /// <summary>A log is first checked for cleaning once it holds this many bytes of records.</summary>
    internal const long AutoCleanFirstCheck = 16L << 20;

    /// <summary>
    /// The most one cleaning step copies: every other process checksums what it copied when it next reads the
    /// branch, so a step's pause stays short; a larger cleaning takes several steps.
    /// </summary>
    internal const long MaxCopyPerStep = 16L << 20;

    /// <summary>Cleaning that gives back less than this (freed minus copied) is not worth its work, when automatic.</summary>
    internal const long AutoCleanMinGain = 4L << 20;

    /// <summary>Below this many usable bytes a removal or truncation makes its branch due for cleaning at once.</summary>
    private long LowSpace => Math.Max(AutoCleanFirstCheck, _allocator.ArenaBytes / 8);

    /// <summary>The branch whose log reached its next check in a change of this store; cleaned after the change.</summary>
    private BranchState? _cleanDue;

    [ThreadStatic] private static bool t_cleaning;

    /// <summary>
    /// Cleans the log of the live or kept branch <paramref name="name"/>: its records are written again with only
    /// the bytes its files still read, and the space the rest held is given back (see docs/space.md). Readers and
    /// mounts go on meanwhile; they wait only while the new log is published.
    /// </summary>
    /// <exception cref="BranchNotFoundException">No live or kept branch has that name.</exception>
    /// <exception cref="RegionFullException">The region has too little free space for the copy (it needs the live bytes of the cleaned part).</exception>
    public CleanReport Clean(string name)
    {
        ArgumentNullException.ThrowIfNull(name);
        ReadAll();
        return Clean(name, whole: false);
    }

    /// <summary>As <see cref="Clean(string)"/>; with <paramref name="whole"/>, every block but the tail's is written again, worth it or not (tests).</summary>
    internal CleanReport Clean(string name, bool whole)
    {
        if (name == "main")
            throw new ArgumentException("main's log holds only versions and tags: its history's space is given back by compaction (daxfs compact), not by cleaning", nameof(name));
        EnsureCurrent();
        lock (_gate)
        {
            if (!_picture.ByName.ContainsKey(name) && KeptNamed(name) is null && _picture.InvalidatedNames.ContainsKey(name))
                throw new BranchInvalidatedException(name, $"branch '{name}' was invalidated and its log was not kept: it holds no space to clean (discard it to free its slot)");
        }
        BranchState? Find() => _picture.ByName.TryGetValue(name, out var live) && !live.IsMain ? live : KeptNamed(name);
        var first = CleanState(Find, name, whole ? long.MinValue : 1)!;
        if (whole || !first.Cleaned)
            return first;
        // Each step copies at most MaxCopyPerStep (so the pause it gives other processes stays short): go on while
        // steps give back space.
        var total = first;
        for (int step = 1; step < MaxCleaningSteps; step++)
        {
            // A pause between steps: a process waiting for the region lock (its re-read, its change) gets it, instead
            // of backing off further while step after step takes the lock.
            Thread.Sleep(StepPause);
            var next = CleanState(Find, name, FormatConstants.PageSize)!;
            if (!next.Cleaned)
                break;
            total = total with
            {
                BytesAfter = next.BytesAfter, CopiedBytes = total.CopiedBytes + next.CopiedBytes, FreedBytes = total.FreedBytes + next.FreedBytes,
                Elapsed = total.Elapsed + next.Elapsed, LockHeld = total.LockHeld + next.LockHeld, Steps = total.Steps + 1,
            };
        }
        return total;
    }

    /// <summary>The pause between two steps of one cleaning.</summary>
    private static readonly TimeSpan StepPause = TimeSpan.FromMilliseconds(5);

    /// <summary>The most steps one on-demand cleaning of a branch takes.</summary>
    private const int MaxCleaningSteps = 256;

    /// <summary>Cleans every live branch and every kept branch (see <see cref="Clean(string)"/>), one at a time.</summary>
    public IReadOnlyList<CleanReport> CleanAll()
    {
        ReadAll();
        List<string> names;
        lock (_gate)
        {
            ThrowIfUnusable();
            names = _picture.Slots.Where(s => s is { IsMain: false, Status: BranchState.StatusLive, IsSnapshot: false }).Select(s => s!.Name)
                .Concat(_picture.Kept.Values.Select(k => k.Name)).Distinct().Order(StringComparer.Ordinal).ToList();
        }
        var reports = new List<CleanReport>();
        foreach (var n in names)
        {
            try { reports.Add(Clean(n)); }
            catch (BranchNotFoundException) { } // ended meanwhile
        }
        return reports;
    }

    /// <summary>Notes that <paramref name="s"/>'s log reached its next check (caller holds the gate).</summary>
    private void NoteLogGrowth(BranchState s)
    {
        if (s.NextCleanCheck == 0)
            s.NextCleanCheck = AutoCleanFirstCheck;
        if (s.LogBytes >= s.NextCleanCheck && AutoClean && !s.IsMain && !s.IsSnapshot)
            _cleanDue = s;
    }

    /// <summary>Runs the automatic cleaning a change made due, after the change (never inside one, never nested).</summary>
    private void RunDueClean()
    {
        if (t_cleaning || Volatile.Read(ref _cleanDue) is null)
            return;
        var due = Interlocked.Exchange(ref _cleanDue, null);
        if (due is null || due.Status != BranchState.StatusLive)
            return;
        t_cleaning = true;
        try
        {
            // Short of space, any gain is worth a step (it is what makes the next write fit).
            long minGain = _allocator.UsableBytes < LowSpace ? FormatConstants.PageSize : AutoCleanMinGain;
            CleanState(() => ReferenceEquals(_picture.Slots[due.Slot], due) ? due : null, due.Name, minGain, auto: true);
        }
        catch (DaxfsException)
        {
            // Best effort: the change that made it due succeeded; a full region or a busy lock waits for the next check.
        }
        finally
        {
            t_cleaning = false;
            // Checked again only once the log grew by half of what it holds now (at least the first check's size):
            // a log that is all live costs one walk per growth by half.
            due.NextCleanCheck = due.LogBytes + Math.Max(due.LogBytes / 2, AutoCleanFirstCheck);
        }
    }

    private CleanReport? CleanState(Func<BranchState?> find, string name, long minGain, bool auto = false)
    {
        var clock = Stopwatch.StartNew();
        var held = new Stopwatch();
        LogCleaner.Snapshot snap;
        BranchState st;
        long generation, mergedBytes, cleanings;
        var cleaner = new LogCleaner(_region, _allocator.ArenaOffset, _allocator.ArenaEnd);
        LogCleaner.Plan? plan;
        List<(long Offset, long Pages)> runs;
        var lease = BeginReadScope(); // what the snapshot reaches is not reused until the copy is done
        bool leased = true;
        try
        {
            lock (_gate)
            {
                ThrowIfUnusable();
                st = find() ?? throw new BranchNotFoundException(name);
                if (st.Fence is { } fence)
                    throw fence;
                generation = st.Generation;
                cleanings = SlotAt(st.Slot).Cleanings;
                mergedBytes = st.MergedBlocks.Sum(b => b.Pages) * FormatConstants.PageSize;
                var trusted = new Dictionary<long, long>();
                foreach (var (o, p) in st.OwnBlocks)
                    trusted[o] = o == st.Log.LastBlock ? st.Log.Tail : o + p * FormatConstants.PageSize;
                foreach (var (o, p) in st.MergedBlocks)
                    trusted[o] = o + p * FormatConstants.PageSize;
                snap = new LogCleaner.Snapshot(st.Log.LogId, st.Log.Head, st.Log.Tail, st.OwnBlocks.ToList(), st.View, trusted);
            }
            long before = snap.Blocks.Sum(b => b.Pages) * FormatConstants.PageSize + mergedBytes;
            // A step copies no more than the arena can hold now (the reserve included): in a full region, cleaning
            // starts with what it can, and each step makes room for the next.
            long room;
            lock (_gate)
            {
                _allocator.UseReserve = true;
                room = _allocator.UsableBytes;
                _allocator.UseReserve = false;
            }
            long fits = Math.Max(0, room - room / 16 - (16L << 10)); // less what blocks' headers and ends take
            plan = snap.Head == 0 ? null : cleaner.Choose(snap, mergedBytes, minGain, MaxCopyPerStep, minGain == long.MinValue ? long.MaxValue : fits,
                anywhere: _super.FormatVersion >= FormatConstants.SpaceVersion);
            if (plan is not null && auto && plan.FreedBytes - plan.CopyBytes < plan.CopyBytes)
                plan = null; // more live than dead in the best prefix: not worth it yet
            if (plan is null)
                return new CleanReport(st.Name, st.Kept, false, before, before, 0, 0, clock.Elapsed, held.Elapsed) { Steps = 0 };
            held.Start();
            runs = Locked(() =>
            {
                _allocator.UseReserve = true; // cleaning gives space back: it may use the reserve to get going
                try { return ReserveRuns(plan); }
                finally { _allocator.UseReserve = false; }
            });
            held.Stop();
            LogCleaner.Result result;
            try
            {
                result = cleaner.Write(snap, plan, runs);
            }
            catch
            {
                Locked(() => { foreach (var (o, p) in runs) _allocator.Free(o, p); });
                throw;
            }
            leased = false;
            lease.Dispose(); // the copy is done; the publication checks the branch is still the one copied
            held.Start();
            bool published = Locked(() => Publish(st, generation, cleanings, snap, plan, runs, result));
            held.Stop();
            BranchState now = st.Kept ? (_picture.Kept.TryGetValue(st.Slot, out var k) ? k : st) : st;
            long after = now.AllBlocks().Sum(b => b.Pages) * FormatConstants.PageSize;
            return new CleanReport(st.Name, st.Kept, published, before, published ? after : before, published ? plan.CopyBytes : 0,
                published ? Math.Max(0, before - after) : 0, clock.Elapsed, held.Elapsed);
        }
        finally
        {
            if (leased) lease.Dispose();
        }
    }

    /// <summary>Reserves unlinked arena runs for a plan's copy (caller holds the locks); all or nothing.</summary>
    private List<(long Offset, long Pages)> ReserveRuns(LogCleaner.Plan plan)
    {
        const long page = FormatConstants.PageSize;
        long perRun = BlockHeader.Size + plan.LargestRecord + 64; // a record that does not fit a block's end wastes at most this
        // Runs as small as a page or two when that is what there is (a full region), at least what the largest record needs.
        long minPages = FormatConstants.AlignUp(perRun + RecordHeader.Size + RecordCodec.WritePayloadOffset + page, page) / page;
        var runs = new List<(long, long)>();
        long capacity = 0;
        try
        {
            while (capacity < plan.CopyBytes)
            {
                long pages = Math.Max(minPages, FormatConstants.AlignUp(plan.CopyBytes - capacity + perRun, page) / page);
                while (true)
                {
                    try
                    {
                        runs.Add((_allocator.Allocate(pages), pages));
                        break;
                    }
                    catch (RegionFullException) when (pages > minPages)
                    {
                        pages = Math.Max(minPages, pages / 2);
                    }
                }
                capacity += pages * page - perRun;
            }
            return runs;
        }
        catch (RegionFullException)
        {
            foreach (var (o, p) in runs) _allocator.Free(o, p);
            throw new RegionFullException(plan.CopyBytes, _allocator.UsableBytes,
                $"cleaning needs {plan.CopyBytes} bytes free for the live part it copies and the region has {_allocator.UsableBytes}; compact, discard branches or resize first");
        }
    }

    /// <summary>
    /// Publishes a cleaned prefix (caller holds the locks): if the branch is still the one copied, with the same
    /// head, the slot's head moves to the fresh blocks (one store: the commit point), the replaced blocks are
    /// parked for read leases, and this store's picture of the branch (and of what was forked from it) is rebuilt.
    /// Otherwise the fresh blocks are given back and false returned.
    /// </summary>
    private bool Publish(BranchState st, long generation, long cleanings, LogCleaner.Snapshot snap, LogCleaner.Plan plan, List<(long Offset, long Pages)> runs,
        LogCleaner.Result result)
    {
        ref var slot = ref SlotAt(st.Slot);
        bool same = st.Generation == generation && slot.Generation == generation && slot.LogId == snap.LogId && slot.Head == snap.Head && slot.Tail != 0
            && slot.Cleanings == cleanings
            && (st.Kept ? slot.State == (uint)SlotState.Kept && _picture.Kept.TryGetValue(st.Slot, out var k) && ReferenceEquals(k, st)
                        : slot.State == (uint)SlotState.Live && ReferenceEquals(_picture.Slots[st.Slot], st) && st.Status == BranchState.StatusLive);
        if (!same)
        {
            foreach (var (o, p) in runs) _allocator.Free(o, p);
            return false;
        }
        bool durable = _region.Kind != Media.RegionKind.Memory;
        if (durable)
            foreach (var (o, p) in result.Written) _region.Flush(o, p * FormatConstants.PageSize);
        FaultPoints.Hit("clean.written");
        // The synced tail names a record end in the chain; if it lay in the replaced part it moves to the copy's end.
        long synced = slot.SyncedTail;
        var replaced = snap.Blocks.Take(plan.Blocks).Skip(plan.First).ToList();
        bool syncedInPrefix = synced != 0 && replaced.Any(b => synced > b.Offset && synced <= b.Offset + b.Pages * FormatConstants.PageSize);
        if (syncedInPrefix)
        {
            Volatile.Write(ref slot.SyncedTail, 0); // none, for the instant between: never one the chain does not reach
            if (durable) _region.Flush(SlotOffset(st.Slot), BranchSlot.Size);
        }
        if (_super.FormatVersion >= FormatConstants.SpaceVersion)
        {
            // First the slot's cleaning count: every other process walks the log again, and a cleaning planned on
            // the chain as it was finds the count moved and gives up. (Moved alone, by a crash here, it costs a walk.)
            Volatile.Write(ref slot.Cleanings, cleanings + 1);
            if (durable) _region.Flush(SlotOffset(st.Slot), BranchSlot.Size);
        }
        if (plan.First == 0)
            Volatile.Write(ref slot.Head, result.Head); // the commit point
        else
            Volatile.Write(ref _region.Word(plan.Before + BlockHeader.NextOffset), result.Head); // the commit point: the block before the run links to the copy
        if (durable)
        {
            if (plan.First != 0) _region.Flush(plan.Before, BlockHeader.Size);
            _region.Flush(SlotOffset(st.Slot), BranchSlot.Size);
        }
        FaultPoints.Hit("clean.published");
        if (syncedInPrefix && result.LastRecordEnd != 0)
        {
            Volatile.Write(ref slot.SyncedTail, result.LastRecordEnd);
            if (durable) _region.Flush(SlotOffset(st.Slot), BranchSlot.Size);
        }
        foreach (var (o, p) in result.Unused) _allocator.Free(o, p);
        var retired = replaced;
        retired.AddRange(result.Merged);
        _changes.Leases.Park(retired);

        // This store's picture follows without a replay: the copied bytes' extents move to the copy in the views of
        // the branch and of what was forked from it (where they still point at the old bytes), and the log's
        // bookkeeping takes the new blocks in place of the old ones.
        var affected = st.Kept
            ? _picture.Kept.Values.Where(k => { for (var a = k; a is not null; a = a.Parent) if (ReferenceEquals(a, st)) return true; return false; }).ToList()
            : st.SelfAndDescendants().ToList();
        foreach (var b in affected)
        {
            var before = b.View;
            var moved = ViewOps.MoveExtents(before, result.Moves);
            if (!ReferenceEquals(moved, before))
            {
                moved.SameContentAs(before);
                b.View = moved;
            }
        }
        st.OwnBlocks.RemoveRange(plan.First, plan.Blocks - plan.First);
        st.OwnBlocks.InsertRange(plan.First, result.Written);
        foreach (var m in result.Merged)
            st.MergedBlocks.Remove(m);
        if (plan.First == 0)
            st.Log.Resume(result.Head, st.Log.LastBlock, st.Log.LastBlockEnd, st.Log.Tail);
        st.Records += result.NewRecords - result.OldRecords;
        st.LogBytes += result.NewBytes - result.OldBytes;
        st.Cleanings = slot.Cleanings;
        return true;
    }
}
