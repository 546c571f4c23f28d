using System.Text;
using Daxfs.Branching.Branching;
using Daxfs.Branching.Format;
using Daxfs.Branching.Index;
using Daxfs.Branching.Log;

namespace Daxfs.Branching.Replay;

internal sealed partial class RegionPicture
{
    /// <summary>Logs merged into some history (by a merge or a version record).</summary>
    public HashSet<long> MergedLogs { get; } = [];

    /// <summary>Main's view after each version (index = version; 0 = the base image). Persistent views share structure.</summary>
    /// <remarks>Null for a version before the checkpoint main was read from (see <see cref="FirstReadVersion"/>).</remarks>
    public List<View?> VersionViews { get; } = [];

    /// <summary>Tags: name → version.</summary>
    public SortedDictionary<string, long> Tags { get; } = new(StringComparer.Ordinal);

    /// <summary>Settings: name → value (format version 5 on).</summary>
    public SortedDictionary<string, string> Settings { get; } = new(StringComparer.Ordinal);

    /// <summary>Set once the first read of the region (on open) has reported what it found.</summary>
    private bool _opened;

    /// <summary>True once the first read of the region (on open) has reported what it found.</summary>
    public bool Opened => _opened;

    /// <summary>False for a picture that must not rebuild free space (the first try found a damaged log; see <see cref="Store"/>'s re-read).</summary>
    public bool MayRebuildSpace { get; init; } = true;

    /// <summary>True when this picture reads every log only to rebuild free space (nothing else asked for them all).</summary>
    public bool FullForSpace { get; private set; }

    /// <summary>
    /// Brings this process's picture of the region up to date, under the region lock. Starting from nothing
    /// (on open) it replays every log; afterwards it replays only what other processes appended since,
    /// notices branches they forked or ended, and derives which branches are stale.
    /// </summary>
    /// <remarks>
    /// Validity is derived, never trusted from a state word alone: a branch is live only if its slot says
    /// so, its parent is live with the generation it was forked from, and its parent's epoch (merges into
    /// it, counted from its log) still equals the one it was forked at. So a commit that died after its
    /// commit point but before marking the losers still invalidates them. The derived states are written
    /// back. With <paramref name="alone"/> (no other process has the region open) free space is rebuilt from what
    /// is reachable, and a torn log tail, where one is possible (<see cref="TornTailsPossible"/>, past the log's
    /// synced tail), is cut back to its longest valid prefix.
    /// </remarks>
    /// <returns>What the first read (on open) found and repaired; null for every later one.</returns>
    /// <remarks>An explicit repair (<see cref="RepairDamage"/>) also cuts damaged logs; see <see cref="Repairs"/>.</remarks>
    public RecoveryReport? Sync(bool alone, bool tookOver)
    {
        PickUpCapacity(); // before anything is checked against the arena's bounds
        // A partial picture (see Wanted) only where nothing needs every log: no torn tail to look for, no repair
        // or fencing, no snapshot (verify reads everything), and, when alone, no space to rebuild.
        if (tookOver)
            Volatile.Write(ref _region.Word(FormatConstants.ControlOffset + ControlBlock.SpaceAuditOffset), 1);
        bool rebuildSpace = alone && MayRebuildSpace && (_super.FormatVersion < FormatConstants.SpaceVersion || RepairDamage
            || Volatile.Read(ref _region.Word(FormatConstants.ControlOffset + ControlBlock.SpaceAuditOffset)) != 0);
        if (Wanted is not null && (TornTailsPossible || RepairDamage || FenceDamage || _region.IsSnapshot || rebuildSpace))
        {
            FullForSpace = rebuildSpace && !(TornTailsPossible || RepairDamage || FenceDamage || _region.IsSnapshot);
            Wanted = null;
        }
        _trusted.Clear();
        var truncated = new List<string>();
        var invalidated = new List<string>();
        int released = 0;
        uint count = _super.SlotCount;

        var raw = new BranchSlot[count];
        var names = new string?[count];
        for (int i = 0; i < count; i++)
        {
            raw[i] = SlotAt(i);
            if (raw[i].State != (uint)SlotState.Free)
                names[i] = CheckSlot(i, in raw[i]);
        }
        if (raw[0].State != (uint)SlotState.Live || names[0] != "main" || raw[0].Depth != 0)
            ThrowHelper.Corrupt("branch slot 0", SlotOffset(0), "slot 0 is not the live main branch");

        // Live slots, parents before children (depth strictly grows, so parent links cannot loop), and the ones read.
        var order = Enumerable.Range(1, (int)count - 1).Where(i => raw[i].State == (uint)SlotState.Live).OrderBy(i => raw[i].Depth).ToList();
        var load = Wanted is null ? null : SlotsToLoad(raw, names, order);
        // The oldest version of main whose view this re-read needs: a checkpoint past it cannot stand in for the history.
        long need = OldestVersionNeeded(raw, order, load, full: rebuildSpace || TornTailsPossible || RepairDamage || FenceDamage || _region.IsSnapshot);

        // Main first: its new versions. A compaction elsewhere (a new Base record) means starting over from its image;
        // so does a view of a version older than the checkpoint main was read from.
        if (Slots[0] is not null && !_rebuild && (MainGainedBase(in raw[0]) || FirstReadVersion > need && FirstReadVersion > BaseVersion))
            Reset();
        bool rebuilding = _rebuild;
        bool fromNothing = Slots[0] is null || _rebuild;
        StartMain(in raw[0], fromNothing ? need : -1);
        if (Slots[0]!.Fence is null)
        {
            try
            {
                CatchUp(Slots[0]!, in raw[0], alone, truncated);
                if (_checkpoint is { } unused)
                    throw new CheckpointMisplacedException(unused.Offset, $"main's log holds no Version record for its version {unused.Header.Version}");
            }
            catch (Exception e) when (e is CheckpointMisplacedException || e is CorruptionException && FirstReadVersion > BaseVersion && !FenceDamage)
            {
                // Derived data that does not fit the history: main is read from its base image instead (verify reports it).
                // (A history that fails on its own fails again below, and that is the error.)
                CheckpointProblem = e.Message;
                Reset();
                StartMain(in raw[0], need: -1);
                CatchUp(Slots[0]!, in raw[0], alone, truncated);
            }
        }

        // Branches this process knew that ended or were replaced since.
        for (int i = 1; i < count; i++)
        {
            var st = Slots[i];
            if (st is not null && (raw[i].State != (uint)SlotState.Live || raw[i].Generation != st.Generation))
            {
                Forget(st, raw[i].State is (uint)SlotState.Invalidated or (uint)SlotState.Kept ? BranchState.StatusInvalidated : BranchState.StatusEnded);
                if (raw[i].State == (uint)SlotState.Kept && raw[i].Generation == st.Generation && !rebuilding)
                {
                    st.Kept = true; // invalidated elsewhere with its log kept: the picture built so far stays good
                    Kept[i] = st;
                }
                // (After a compaction elsewhere the picture was reset: the kept branch is rebuilt from its slot below.)
            }
        }

        var deferred = new HashSet<int>();
        var stale = new HashSet<int>();
        var keep = new HashSet<int>(); // stale because main moved on, forked to be kept: their logs stay
        var relogged = new HashSet<int>(); // replayed from their head again: a cleaning moved it (or their parent's)
        foreach (int i in order)
        {
            if (load is not null && !load.Contains(i))
            {
                deferred.Add(i); // not read: nothing asked for it (its slot is left as it is)
                continue;
            }
            ref readonly var s = ref raw[i];
            int p = (int)s.ParentSlot;
            var parent = p < count ? Slots[p] : null;
            bool parentMatches = p < count && p != i && raw[p].State == (uint)SlotState.Live && raw[p].Generation == s.ParentGeneration && s.Depth == raw[p].Depth + 1;
            // A branch forked from a past version of main is not invalidated by later commits: it never was
            // based on main's current state. Any other branch is stale once its parent's epoch moved on.
            bool detached = (s.Flags & BranchSlot.FlagDetached) != 0 && p == 0;
            if (parent is { Fence: { } parentFence } && parentMatches)
            {
                // Built on a fenced branch: whether it is still valid cannot be told, so it is fenced too.
                if (Slots[i] is not { Fence: not null })
                {
                    var fenced = Slots[i] ?? NewState(i, in s, names[i]!, parent);
                    fenced.View = parent.View;
                    fenced.Fence = FencedBy(fenced, parent, parentFence);
                    Slots[i] = fenced;
                    ByName[names[i]!] = fenced;
                    InvalidatedNames.Remove(names[i]!);
                }
                continue;
            }
            bool valid = parent is not null && parentMatches && !_cutSlots.Contains(p)
                && (detached ? s.ForkEpoch >= BaseVersion && s.ForkEpoch <= CurrentVersion : s.ForkEpoch == parent.Epoch);
            if (!valid)
            {
                if (Slots[i] is { } gone)
                    Forget(gone, BranchState.StatusInvalidated);
                // Under a stale parent, or a commit into the parent came after the fork: invalidated.
                // Under an ended parent (abort, discard): ended with it.
                if (parentMatches && (stale.Contains(p) || parent is not null))
                {
                    stale.Add(i);
                    invalidated.Add(names[i]!);
                    if ((s.Flags & BranchSlot.FlagKeep) != 0 && !detached && !MergedLogs.Contains(s.LogId) && (p == 0 || keep.Contains(p)))
                        keep.Add(i);
                }
                else
                {
                    released++;
                }
                continue;
            }
            var st = Slots[i];
            if (st is not null && rebuilding)
                st.View = detached ? VersionView(s.ForkEpoch) : parent!.View; // its log is replayed again from its head
            View? from = null;
            View? before = null;
            long beforeTail = 0;
            if (st is not null && !rebuilding && st.Fence is null && (HeadMoved(st, in s) || relogged.Contains(p)))
            {
                before = st.View;
                beforeTail = st.Log.Tail;
                // Its log was cleaned (a new head), or its parent's was: the view is built again on the parent's
                // view from the head. The old view stays in place until the new one is done, so readers never see a
                // half-built one.
                ResetLog(st);
                from = detached ? VersionView(s.ForkEpoch) : parent!.View;
                relogged.Add(i);
            }
            if (st is null)
            {
                st = NewState(i, in s, names[i]!, parent);
                st.View = detached ? VersionView(s.ForkEpoch) : parent!.View;
                st.Detached = detached;
                st.BaseVersion = detached ? s.ForkEpoch : parent!.IsMain ? parent.Epoch : parent.BaseVersion;
                if (ByName.ContainsKey(names[i]!))
                    ThrowHelper.Corrupt($"branch slot {i}", SlotOffset(i), $"name '{names[i]}' is used by two live branches");
                Slots[i] = st;
                ByName[names[i]!] = st;
                InvalidatedNames.Remove(names[i]!);
            }
            if (st.Fence is null)
                CatchUp(st, in s, alone, truncated, from);
            st.Cleanings = s.Cleanings;
            if (before is not null && st.Log.Tail == beforeTail && st.Fence is null && !ReferenceEquals(st.View, before))
                st.View.SameContentAs(before); // built again on moved bytes, nothing appended: the same tree
        }

        // Families, derived fields and names, written back.
        foreach (var st in Slots)
            st?.Children.Clear();
        foreach (var st in Slots)
            if (st?.Parent is { } par) par.Children.Add(st);
        // While anything is fenced nothing is written back: what this picture derived rests on damaged logs.
        bool writeBack = Fenced.Count == 0;
        Deferred = deferred.Count;
        DeferredNames.Clear();
        foreach (int i in deferred)
            DeferredNames.Add(names[i]!);
        for (int i = 1; i < count; i++)
        {
            if (Slots[i] is not null || deferred.Contains(i))
                continue;
            ref var slot = ref SlotAt(i);
            if (slot.State == (uint)SlotState.Live && writeBack)
            {
                if (stale.Contains(i) && !MergedLogs.Contains(slot.LogId))
                {
                    if (keep.Contains(i)) Volatile.Write(ref slot.State, (uint)SlotState.Kept); // head and tail stay
                    else MarkInvalidated(ref slot); // invalidated by a commit elsewhere
                }
                else
                    Volatile.Write(ref slot.State, (uint)SlotState.Free); // committed (its log is history) or ended with its parent
            }
            if (slot.State is (uint)SlotState.Invalidated or (uint)SlotState.Kept && names[i] is { } n && !ByName.ContainsKey(n))
                InvalidatedNames[n] = i;
        }
        foreach (var key in InvalidatedNames.Where(kv => SlotAt(kv.Value).State is not ((uint)SlotState.Invalidated or (uint)SlotState.Kept)).Select(kv => kv.Key).ToList())
            InvalidatedNames.Remove(key);
        SyncKept(count, names, alone && writeBack, truncated, buildNew: load is null);
        // A branch with children left unread does not know them all: its count of live children stays as the slot says.
        PartlyKnown.Clear();
        foreach (int i in deferred)
            PartlyKnown.Add((int)raw[i].ParentSlot);
        var partlyKnown = PartlyKnown;
        foreach (var st in Slots)
        {
            if (st is null || !writeBack) continue;
            ref var slot = ref SlotAt(st.Slot);
            if (slot.Epoch != st.Epoch) Volatile.Write(ref slot.Epoch, st.Epoch);
            if (slot.LiveChildren != (uint)st.Children.Count && !partlyKnown.Contains(st.Slot)) Volatile.Write(ref slot.LiveChildren, (uint)st.Children.Count);
        }

        if (alone && writeBack && rebuildSpace)
        {
            // Free space: whatever a live branch or main's history reaches is in use; the rest is free. (Not
            // while a log is fenced: what lies past its damage is unreachable, yet may still be salvaged.)
            var used = new List<(long, long)>();
            foreach (var st in Slots)
                if (st is not null) used.AddRange(st.AllBlocks());
            foreach (var st in Kept.Values)
                used.AddRange(st.AllBlocks());
            if (BaseRun is { } run)
                used.Add(run);
            if (RepairDamage && CheckCheckpoint() is not null)
                Volatile.Write(ref CheckpointWord, 0); // a repair drops a damaged checkpoint: its pages come back below
            if (CheckpointRun() is { } checkpoint)
                used.Add(checkpoint);
            _allocator.Rebuild(used);
            long maxLog = MergedLogs.Count == 0 ? 1 : MergedLogs.Max();
            foreach (var st in Slots.Concat(Kept.Values))
                if (st is not null) maxLog = Math.Max(maxLog, st.Log.LogId);
            ref long next = ref _region.Word(FormatConstants.ControlOffset + ControlBlock.NextLogIdOffset);
            if (Volatile.Read(ref next) <= maxLog)
                Volatile.Write(ref next, maxLog + 1);
            Volatile.Write(ref _region.Word(FormatConstants.ControlOffset + ControlBlock.SpaceAuditOffset), 0);
        }
        else
        {
            _allocator.Recount();
        }

        _trusted.Clear(); // trusted for the walks of this re-read only
        if (_opened)
            return null;
        _opened = true;
        return new RecoveryReport(truncated, invalidated, released, tookOver)
        {
            Repairs = Repairs.ToArray(),
            RepairedDamage = Damaged.Select(e => new DamageFound(e.Structure, e.Offset, e.Detail, e.Consequences ?? "")).ToArray(),
        };
    }

    /// <summary>
    /// Brings the picture of kept branches (slot state Kept) up to date: drops those discarded or reused, and
    /// builds the others, parents first, by replaying their logs on the version their chain was based on. A
    /// kept branch that cannot be rebuilt (its kept parent is gone, or its base version was folded away) is
    /// released when this process has the region alone, so its space is rebuilt as free.
    /// </summary>
    private void SyncKept(uint count, string?[] names, bool alone, List<string> truncated, bool buildNew)
    {
        var relogged = new HashSet<int>();
        foreach (var (i, k) in Kept.OrderBy(kv => kv.Value.Depth).ToList())
        {
            var s = SlotAt(i);
            if (s.State != (uint)SlotState.Kept || s.Generation != k.Generation)
                Kept.Remove(i);
            else if (k.Fence is null && (HeadMoved(k, in s) || relogged.Contains((int)s.ParentSlot)))
            {
                TrustValidated(k);
                Kept.Remove(i); // cleaned (or its kept parent was): built again below, from its head
                relogged.Add(i);
            }
            else if (k.Fence is null)
            {
                CatchUp(k, in s, alone, truncated); // records another process wrote before the commit that kept it
                k.Cleanings = s.Cleanings;
            }
        }
        if (!buildNew)
            return; // a partial picture builds kept branches only once everything is read (a rebase asks for that)
        var order = Enumerable.Range(1, (int)count - 1).Where(i => SlotAt(i).State == (uint)SlotState.Kept && !Kept.ContainsKey(i))
            .OrderBy(i => SlotAt(i).Depth).ToList();
        foreach (int i in order)
        {
            var s = SlotAt(i);
            int p = (int)s.ParentSlot;
            var parent = p == 0 ? Slots[0] : Kept.TryGetValue(p, out var kp) && kp.Generation == s.ParentGeneration ? kp : null;
            bool buildable = parent is not null && s.Depth == parent.Depth + 1
                && (p != 0 || (s.ForkEpoch >= BaseVersion && s.ForkEpoch <= CurrentVersion));
            if (!buildable)
            {
                if (alone)
                {
                    Volatile.Write(ref SlotAt(i).State, (uint)SlotState.Free);
                    if (names[i] is { } gone) InvalidatedNames.Remove(gone);
                }
                continue;
            }
            var st = NewState(i, in s, names[i] ?? CheckSlot(i, in s), parent);
            if (parent!.Fence is { } parentFence)
            {
                st.View = parent.View;
                st.Fence = FencedBy(st, parent, parentFence);
                st.Kept = true;
                st.Status = BranchState.StatusInvalidated;
                Kept[i] = st;
                continue;
            }
            st.View = p == 0 ? VersionView(s.ForkEpoch) : parent!.View;
            st.BaseVersion = p == 0 ? s.ForkEpoch : parent!.BaseVersion;
            st.Kept = true;
            st.Status = BranchState.StatusInvalidated;
            CatchUp(st, in s, alone, truncated);
            st.Cleanings = s.Cleanings;
            Kept[i] = st;
        }
    }

    /// <summary>Fences <paramref name="st"/> for <paramref name="damage"/> found in its log (see <see cref="FenceDamage"/>).</summary>
    private void Fence(BranchState st, CorruptionException damage)
    {
        st.Fence = damage;
        Fenced.Add(damage);
    }

    /// <summary>The error a branch forked from a fenced one answers with: its parent's damage, and why it matters here.</summary>
    private static CorruptionException FencedBy(BranchState st, BranchState parent, CorruptionException parentFence)
        => new(parentFence.Structure, parentFence.Offset, parentFence.Detail,
            $"branch '{st.Name}' was forked from '{parent.Name}', which this damage fences, so it is fenced too (nothing of it is dropped)");

    /// <summary>Ends this process's picture of a branch another process ended (no space is touched here).</summary>
    private void Forget(BranchState st, int status)
    {
        st.Status = status;
        st.Log.ReleaseSpare(); // a block this process reserved for it and never published
        Slots[st.Slot] = null;
        if (ByName.TryGetValue(st.Name, out var named) && ReferenceEquals(named, st))
            ByName.Remove(st.Name);
        st.Parent?.Children.Remove(st);
    }

    /// <summary>
    /// The branches this picture reads, by name (null: every one). Main is always read; a named branch is read with
    /// its ancestors, so what it is based on is known (what was forked from it is told by its slot's count of live
    /// children, which every change keeps; see <see cref="PartlyKnown"/>).
    /// Branches no one asked for are left unread: their slots are not judged, written back or counted, and an open
    /// costs what it reads, not what the region holds. Set to null for good once anything needs every log.
    /// </summary>
    public HashSet<string>? Wanted { get; set; } = ["main"];

    /// <summary>Slots of branches with a live child the last re-read left unread: their children are not all known here.</summary>
    public HashSet<int> PartlyKnown { get; } = [];

    /// <summary>Live branches the last re-read left unread (see <see cref="Wanted"/>).</summary>
    public int Deferred { get; private set; }

    /// <summary>Asks the picture to read branch <paramref name="name"/> too (null: every branch); true when that is more than it reads now.</summary>
    public bool Want(string? name)
    {
        if (Wanted is null)
            return false;
        if (name is null)
        {
            Wanted = null;
            return true;
        }
        // A name this picture already reads, or one no unread live branch holds, needs no re-read now (a branch forked
        // under that name later is read at the next re-read, since the name stays wanted).
        return Wanted.Add(name) && DeferredNames.Contains(name);
    }

    /// <summary>Names of the live branches the last re-read left unread.</summary>
    private HashSet<string> DeferredNames { get; } = new(StringComparer.Ordinal);

    /// <summary>The live slots a partial re-read reads: the wanted ones, their ancestors, and what it read before.</summary>
    private HashSet<int> SlotsToLoad(BranchSlot[] raw, string?[] names, List<int> byDepth)
    {
        var load = new HashSet<int>();
        foreach (int i in byDepth)
        {
            if (Slots[i] is not null || Wanted!.Contains(names[i]!))
            {
                // Its ancestors (depth falls at every step, so a hostile parent link cannot loop).
                for (int at = i; at != 0 && load.Add(at);)
                {
                    int p = (int)raw[at].ParentSlot;
                    if (p >= raw.Length || raw[p].State != (uint)SlotState.Live || raw[p].Depth >= raw[at].Depth)
                        break;
                    at = p;
                }
            }
        }
        return load;
    }

    /// <summary>True when a cleaning replaced part of the slot's log since this process walked it: its head moved, or (version 4 on) its cleaning count.</summary>
    private static bool HeadMoved(BranchState st, in BranchSlot s) => st.Log.Head != 0 && s.Tail != 0 && (s.Head != st.Log.Head || s.Cleanings != st.Cleanings);

    /// <summary>
    /// Blocks this process validated (a branch's own blocks up to its tail, and the logs merged into it): walking
    /// them again after another process's cleaning skips their checksums.
    /// </summary>
    private readonly Dictionary<long, long> _trusted = [];

    /// <summary>What this process validated of <paramref name="st"/>'s logs stays trusted for the walk that follows (the blocks a cleaning kept are walked again).</summary>
    private void TrustValidated(BranchState st)
    {
        foreach (var (o, p) in st.OwnBlocks)
            _trusted[o] = o == st.Log.LastBlock ? st.Log.Tail : o + p * FormatConstants.PageSize;
        foreach (var (o, p) in st.MergedBlocks)
            _trusted[o] = o + p * FormatConstants.PageSize;
    }

    /// <summary>Forgets what this process replayed of a branch's log (not its view), so the next catch-up walks it from its head.</summary>
    private static void ForgetLog(BranchState st)
    {
        st.Log.Resume(0, 0, 0, 0);
        st.OwnBlocks.Clear();
        st.MergedBlocks.Clear();
        st.Epoch = 0;
        st.Records = 0;
        st.LogBytes = 0;
    }

    /// <summary>As <see cref="ForgetLog"/>, keeping what was validated trusted for the walk that follows (after a cleaning).</summary>
    private void ResetLog(BranchState st)
    {
        TrustValidated(st);
        ForgetLog(st);
    }

    public static void MarkInvalidated(ref BranchSlot slot)
    {
        Volatile.Write(ref slot.State, (uint)SlotState.Invalidated);
        Volatile.Write(ref slot.Tail, 0);
        Volatile.Write(ref slot.Head, 0);
    }

    /// <summary>Checks a used slot's fields; returns its name.</summary>
    private unsafe string CheckSlot(int i, in BranchSlot s)
    {
        long at = SlotOffset(i);
        if (s.State > (uint)SlotState.Kept)
            ThrowHelper.Corrupt($"branch slot {i}", at, $"unknown state {s.State}");
        if (s.NameLength == 0 || s.NameLength > FormatConstants.MaxBranchName)
            ThrowHelper.Corrupt($"branch slot {i}", at, $"name length {s.NameLength} out of range");
        uint identity = BranchSlot.ComputeIdentityCrc(in s);
        if (identity != s.IdentityCrc)
            ThrowHelper.Corrupt($"branch slot {i}", at, $"identity checksum mismatch (stored {s.IdentityCrc:X8}, computed {identity:X8})");
        string name;
        fixed (byte* p = s.Name)
        {
            var bytes = new ReadOnlySpan<byte>(p, (int)s.NameLength);
            string? why = i == 0 ? (bytes.SequenceEqual("main"u8) ? null : "slot 0 is not named main") : Store.BranchNameProblem(Encoding.ASCII.GetString(bytes));
            if (why is not null)
                ThrowHelper.Corrupt($"branch slot {i}", at, $"bad name: {why}");
            name = Encoding.ASCII.GetString(bytes);
        }
        if (s.State is not ((uint)SlotState.Live or (uint)SlotState.Kept))
            return name;
        if (i != 0 && (s.ParentSlot >= _super.SlotCount || s.Depth == 0 || s.Depth >= _super.SlotCount))
            ThrowHelper.Corrupt($"branch slot {i}", at, $"parent slot {s.ParentSlot} or depth {s.Depth} out of range");
        if (s.Epoch < 0 || s.ForkEpoch < 0 || s.LogId <= 0)
            ThrowHelper.Corrupt($"branch slot {i}", at, "negative epoch or log id");
        if (s.Tail != 0 && (s.Head == 0 || s.Tail < AreaStart(retired: true) || s.Tail > _allocator.ArenaEnd))
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
            KeepForRebase = (s.Flags & BranchSlot.FlagKeep) != 0,
        };
        st.Log = new LogAppender(_region, _allocator, SlotOffset(slot), s.LogId, 0, 0, 0, 0, st.OwnBlocks);
        return st;
    }

    /// <summary>
    /// Replays what the slot's log holds beyond what this process applied. A record that fails validation is
    /// cut back to the log's longest valid prefix only when it can be a torn write (a regular file after a
    /// reboot, past the log's synced tail) and no other process has the region open; otherwise it is a
    /// <see cref="CorruptionException"/> naming the log, the record and what depends on it. Nothing committed is
    /// ever cut: a commit's records lie before the synced tail.
    /// </summary>
    private void CatchUp(BranchState st, in BranchSlot s, bool alone, List<string> truncated, View? from = null)
    {
        var log = st.Log;
        if (s.LogId != log.LogId)
            ThrowHelper.Corrupt($"branch slot {st.Slot}", SlotOffset(st.Slot), $"log id changed from {log.LogId} to {s.LogId}");
        long head = s.Tail == 0 ? 0 : s.Head;
        if (s.Tail == log.Tail && (head == log.Head || s.Tail == 0))
        {
            if (from is not null)
                st.View = from; // an empty log on a parent whose view was built again
            return;
        }
        if (log.Head != 0 && head != log.Head)
            ThrowHelper.Corrupt($"branch slot {st.Slot}", SlotOffset(st.Slot), $"log head moved from {log.Head} to {head}");
        if (log.Tail != 0 && s.Tail != 0 && s.Tail < log.Tail && s.Tail >= log.LastBlock && s.Tail <= log.LastBlockEnd)
            ThrowHelper.Corrupt($"branch slot {st.Slot}", SlotOffset(st.Slot), $"log tail went back from {log.Tail} to {s.Tail}");
        var logRef = new LogRef(s.LogId, head, s.Tail);
        LogCursor? cursor = null;
        CorruptionException? failure = null;
        try
        {
            cursor = log.Head == 0 ? new LogCursor(_region, _allocator.ArenaOffset, _allocator.ArenaEnd, logRef) { Mark = s.SyncedTail, Trusted = _trusted.Count > 0 ? _trusted : null }
                : new LogCursor(_region, _allocator.ArenaOffset, _allocator.ArenaEnd, logRef, log.LastBlock, log.Tail);
        }
        catch (CorruptionException e) when (log.Head == 0)
        {
            failure = e; // the first block is unreadable: nothing of this log survives
        }
        if (cursor is not null)
        {
            var view = from ?? st.View;
            long epoch = st.Epoch;
            try
            {
                failure = Replay(st, ref view, cursor, ref epoch);
            }
            catch (CorruptionException e) when (FenceDamage)
            {
                Fence(st, e); // damage inside a log merged into this one
                return;
            }
            st.View = view;
            st.Epoch = epoch;
        }
        bool torn = failure is not null;
        if (failure is not null)
        {
            // A torn tail is cut only where one is physically possible: a regular file after a machine crash
            // (TornTailsPossible), and only in the bytes written since the log's last flushed publication. Any
            // other failure is damage: reported, with what depends on it, and nothing is cut.
            bool pastSynced = s.SyncedTail == 0 || cursor is { MarkReached: true };
            bool repairing = RepairDamage && alone;
            if (repairing && (!TornTailsPossible || !pastSynced))
            {
                string what = st.IsMain ? "main's log" : $"the log of branch '{st.Name}'";
                Repairs.Add($"{what} (log {s.LogId}) cut back at offset {failure.Offset} ({failure.Detail}); dropped: "
                    + (st.IsMain ? $"every version after {st.Epoch} and every record after it (tags, tag deletions, compactions); invalidated: the branches forked since"
                                 : "its records from there on; invalidated: the branches forked from it"));
                Damaged.Add(new CorruptionException(failure.Structure, failure.Offset, $"{what} (log {s.LogId}): {failure.Detail}", failure.Consequences ?? Consequences(st, st.Epoch)));
                if (!st.IsMain) _cutSlots.Add(st.Slot);
            }
            else if (!TornTailsPossible || !alone || !pastSynced)
            {
                string where = st.IsMain ? "main's log" : $"the log of branch '{st.Name}'";
                string why = !TornTailsPossible ? "a torn write cannot happen here (memory, or no machine crash since the region was last open)"
                    : !alone ? "other processes have the region open" : "the record lies in the part of the log already flushed to the file";
                var damage = new CorruptionException(failure.Structure, failure.Offset, $"{where} (log {s.LogId}) fails validation: {failure.Detail}; not cut back, since {why}",
                    failure.Consequences ?? Consequences(st, st.Epoch));
                if (FenceDamage)
                {
                    Fence(st, damage);
                    return;
                }
                throw new CorruptionException(failure.Structure, failure.Offset, $"{where} (log {s.LogId}) fails validation: {failure.Detail}; not cut back, since {why}",
                    failure.Consequences ?? Consequences(st, st.Epoch));
            }
        }
        long tail = cursor is null ? 0 : torn ? cursor.ValidEnd : s.Tail;
        if (cursor is not null && tail == cursor.Blocks[0].Offset + BlockHeader.Size && log.Head == 0)
            tail = 0; // nothing valid in the first block
        if (torn)
        {
            truncated.Add(st.Name);
            // What was forked from it was built on records that are gone: it is invalidated, never rebuilt on
            // the shorter log.
            if (!st.IsMain) _cutSlots.Add(st.Slot);
            if (alone)
            {
                ref var slot = ref SlotAt(st.Slot);
                Volatile.Write(ref slot.Tail, tail);
                if (tail == 0) Volatile.Write(ref slot.Head, 0);
                // The cut and everything before it are written back, and only then marked as flushed: a later
                // failure before the mark is damage, one past it (unflushed appends) may be torn.
                _region.Flush(0, _region.Length);
                Volatile.Write(ref slot.SyncedTail, tail);
                _region.Flush(SlotOffset(st.Slot), BranchSlot.Size);
            }
        }
        else if (cursor is not null && log.Head == 0 && s.SyncedTail != 0 && !cursor.MarkReached && !RepairDamage)
        {
            // The whole log read clean, yet it ends before the point a flushed publication recorded: its Tail
            // word was damaged (a lower Tail would silently hide committed records).
            var damage = new CorruptionException($"branch slot {st.Slot}", SlotOffset(st.Slot),
                $"{(st.IsMain ? "main's log" : $"the log of branch '{st.Name}'")} ends at {s.Tail}, before its flushed tail {s.SyncedTail}: the Tail word is damaged",
                st.IsMain ? "the versions after the Tail word's position are hidden, not lost: repair the Tail word from a backup, or restore the region file" : "records of this branch after that point are hidden");
            if (!FenceDamage)
                throw damage;
            Fence(st, damage);
            return;
        }
        if (cursor is not null && tail != 0)
        {
            // Blocks newly reached, up to the one holding the tail (the resume block is already counted).
            for (int k = log.Head == 0 ? 0 : 1; k < cursor.Blocks.Count; k++)
            {
                st.OwnBlocks.Add(cursor.Blocks[k]);
                if (cursor.Blocks[k].Offset == cursor.ValidBlock) break;
            }
            log.Resume(head, cursor.ValidBlock, cursor.ValidBlockEnd, tail);
        }
        else if (tail == 0)
        {
            log.Resume(0, 0, 0, 0);
        }
    }

    /// <summary>
    /// Walks a log from the cursor and every log it merges (depth-first, in order), applying each record to
    /// <paramref name="view"/>. Returns the failure when the root log failed validation (the walk stopped there;
    /// the caller decides whether it is a torn tail), null when the whole log is good. A failure inside a merged
    /// log is damage to history: it is thrown, naming what depends on it.
    /// </summary>
    private CorruptionException? Replay(BranchState owner, ref View view, LogCursor root, ref long epoch)
    {
        var stack = new Stack<LogCursor>();
        // Within one walk a log may be reached once: a second reference is a loop or a log merged twice.
        // (Across walks a log is legitimately walked again, when a history that merged it is merged in turn.)
        var reached = new HashSet<long> { root.LogId };
        stack.Push(root);
        var r = new Rec();
        long pendingVersion = 0; // a version whose chain is being replayed; its view is taken when the walk is back at main's log
        while (stack.Count > 0)
        {
            if (pendingVersion != 0 && stack.Count == 1)
            {
                VersionViews.Add(view);
                pendingVersion = 0;
            }
            var c = stack.Peek();
            bool more;
            try
            {
                more = c.MoveNext();
            }
            catch (CorruptionException e) when (ReferenceEquals(c, root))
            {
                return e;
            }
            catch (CorruptionException e) when (e.Consequences is null)
            {
                string consequences = owner.IsMain
                    ? $"log {c.LogId} is part of version {pendingVersion}: main's versions before {pendingVersion} are intact; version {pendingVersion}, every later version and every branch forked from them depend on it"
                    : $"log {c.LogId} was merged into branch '{owner.Name}': that branch and every branch forked from it depend on it; main and the other branches are intact";
                throw new CorruptionException(e.Structure, e.Offset, e.Detail, consequences);
            }
            if (!more)
            {
                stack.Pop();
                if (!ReferenceEquals(c, root))
                    owner.MergedBlocks.AddRange(c.Blocks);
                continue;
            }
            var kind = (RecordKind)c.Header.Kind;
            RecordCodec.Decode(r, kind, c.Header.TimeNs, c.Offset, c.Body, c.BodyOffset);
            bool own = ReferenceEquals(c, root);
            switch (kind)
            {
                case RecordKind.Merge:
                    if (owner.IsMain && own)
                        ThrowHelper.Corrupt("record", c.Offset, "a merge record in main's own log");
                    if (own)
                    {
                        if (r.Epoch != epoch + 1)
                            ThrowHelper.Corrupt("record", c.Offset, $"merge epoch {r.Epoch} does not follow {epoch}");
                        epoch = r.Epoch;
                    }
                    PushLog(stack, reached, r.Logs[0], c.Offset);
                    break;
                case RecordKind.Version:
                    if (!owner.IsMain || !own)
                        ThrowHelper.Corrupt("record", c.Offset, "a version record outside main's own log");
                    if (r.Seq != epoch + 1)
                        ThrowHelper.Corrupt("record", c.Offset, $"version {r.Seq} does not follow {epoch}");
                    epoch = r.Seq;
                    bool folded = r.Seq <= BaseVersion;
                    Versions.Add(new VersionInfo(r.Seq, FileStat.FromNs(r.TimeNs), r.Message, r.Source, r.Size, r.FileOffset) { Folded = r.Seq < BaseVersion });
                    owner.Records += r.Size;
                    owner.LogBytes += r.FileOffset;
                    if (folded)
                    {
                        // Its changes are in the base image; its logs may already hold other data.
                        foreach (var l in r.Logs) MergedLogs.Add(l.LogId);
                        break;
                    }
                    if (_checkpoint is { } cp && r.Seq <= cp.Header.Version)
                    {
                        // Its changes are in the checkpoint's view: its logs are not walked (their ids are still known).
                        foreach (var l in r.Logs) MergedLogs.Add(l.LogId);
                        if (r.Seq < cp.Header.Version)
                        {
                            VersionViews.Add(null);
                            break;
                        }
                        if (c.Offset + c.Header.Length != cp.Header.ResumePosition || c.ValidBlock != cp.Header.ResumeBlock)
                            throw new CheckpointMisplacedException(cp.Offset, $"it says version {r.Seq} ends at {cp.Header.ResumePosition} in main's log, and it ends at {c.Offset + c.Header.Length}");
                        view = cp.View;
                        VersionViews.Add(view);
                        _checkpoint = null; // used
                        break;
                    }
                    for (int k = r.Logs.Length - 1; k >= 0; k--)
                        PushLog(stack, reached, r.Logs[k], c.Offset);
                    pendingVersion = r.Seq;
                    break;
                case RecordKind.Base:
                    if (!owner.IsMain || !own)
                        ThrowHelper.Corrupt("record", c.Offset, "a base record outside main's own log");
                    if (r.Seq < 1 || r.Seq > epoch || r.Seq > BaseVersion)
                        ThrowHelper.Corrupt("record", c.Offset, $"base record folds version {r.Seq}, outside versions 1 to {Math.Min(epoch, BaseVersion)}");
                    break;
                case RecordKind.Tag:
                    if (!owner.IsMain || !own)
                        ThrowHelper.Corrupt("record", c.Offset, "a tag record outside main's own log");
                    if (Store.BranchNameProblem(r.Name) is { } why)
                        ThrowHelper.Corrupt("record", c.Offset, $"bad tag name: {why}");
                    if (r.Flags != 0) Tags.Remove(r.Name);
                    else if (r.Seq < 0 || r.Seq > epoch) ThrowHelper.Corrupt("record", c.Offset, $"tag '{r.Name}' names version {r.Seq}, beyond {epoch}");
                    else Tags[r.Name] = r.Seq;
                    break;
                case RecordKind.Setting:
                    if (!owner.IsMain || !own)
                        ThrowHelper.Corrupt("record", c.Offset, "a setting record outside main's own log");
                    if (_super.FormatVersion < FormatConstants.SettingsVersion)
                        ThrowHelper.Corrupt("record", c.Offset, $"a setting record in a format version {_super.FormatVersion} region (settings came with version {FormatConstants.SettingsVersion})");
                    if (Store.SettingNameProblem(r.Name) is { } bad)
                        ThrowHelper.Corrupt("record", c.Offset, $"bad setting name: {bad}");
                    if (r.Flags != 0) Settings.Remove(r.Name);
                    else Settings[r.Name] = r.Message;
                    break;
                default:
                    if (owner.IsMain && own)
                        ThrowHelper.Corrupt("record", c.Offset, $"a {kind} record in main's own log (main changes only by commits)");
                    try
                    {
                        view = ViewOps.Apply(view, r, null);
                    }
                    catch (DaxfsIOException ex)
                    {
                        ThrowHelper.Corrupt("record", c.Offset, $"{kind} does not apply: {ex.Message}");
                    }
                    if (!owner.IsMain)
                    {
                        owner.Records++;
                        owner.LogBytes += c.Header.Length;
                    }
                    else
                    {
                        RecordsSinceCheckpoint++;
                    }
                    break;
            }
            if (stack.Count > FormatConstants.MaxMergeNesting)
                ThrowHelper.Corrupt("record", c.Offset, "merges nested too deep");
        }
        if (pendingVersion != 0)
            VersionViews.Add(view);
        return null;
    }

    /// <summary>What depends on a failure in <paramref name="st"/>'s own log after <paramref name="epoch"/> merges or versions, and what is intact.</summary>
    private string Consequences(BranchState st, long epoch)
    {
        if (st.IsMain)
            return $"main's versions up to {epoch} are intact; every later version, the tags naming them and every branch forked since depend on it";
        // The slots name the branches forked from it (their pictures are built after their parent's, if at all).
        var forked = new List<string>();
        var below = new HashSet<int> { st.Slot };
        for (bool grew = true; grew;)
        {
            grew = false;
            for (int i = 1; i < Slots.Length; i++)
            {
                var slot = SlotAt(i);
                if (slot.State == (uint)SlotState.Live && !below.Contains(i) && below.Contains((int)slot.ParentSlot) && slot.Depth > st.Depth)
                {
                    below.Add(i);
                    grew = true;
                    try { forked.Add($"'{CheckSlot(i, in slot)}'"); }
                    catch (CorruptionException) { forked.Add($"the branch in slot {i}"); }
                }
            }
        }
        return $"the records of branch '{st.Name}' before it are intact; what depends on it: branch '{st.Name}'"
            + (forked.Count > 0 ? $" and the branches forked from it ({string.Join(", ", forked)})" : "")
            + "; main and the other branches are intact";
    }

    private void PushLog(Stack<LogCursor> stack, HashSet<long> reached, LogRef r, long at)
    {
        if (!reached.Add(r.LogId))
            ThrowHelper.Corrupt("record", at, $"log {r.LogId} is merged twice (or merges itself)");
        MergedLogs.Add(r.LogId);
        if (r.IsEmpty)
            return;
        stack.Push(_trusted.Count > 0 ? new LogCursor(_region, _allocator.ArenaOffset, _allocator.ArenaEnd, r) { Trusted = _trusted } : Cursor(r));
    }
}
