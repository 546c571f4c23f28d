using Daxfs.Branching.Branching;
using Daxfs.Branching.Coordination;
using Daxfs.Branching.Format;
using Daxfs.Branching.Log;

using Daxfs.Branching.Replay;

namespace Daxfs.Branching;

public sealed partial class Store
{
    /// <summary>The main branch: read-only, changed only by commits.</summary>
    public Branch Main
    {
        get { ThrowIfUnusable(); return new Branch(this, _picture.Slots[0]!); }
    }

    /// <summary>The branch named <paramref name="name"/>.</summary>
    /// <exception cref="BranchNotFoundException">No live branch has that name.</exception>
    /// <exception cref="BranchInvalidatedException">The branch of that name was invalidated.</exception>
    public Branch GetBranch(string name)
    {
        ArgumentNullException.ThrowIfNull(name);
        Read(name);
        lock (_gate)
        {
            ThrowIfUnusable();
            if (_picture.ByName.TryGetValue(name, out var s))
                return new Branch(this, s);
            if (_picture.InvalidatedNames.ContainsKey(name))
                throw new BranchInvalidatedException(name, KeptSlotNamed(name));
            throw new BranchNotFoundException(name);
        }
    }

    /// <summary>True when invalidated branch <paramref name="name"/> kept its log for a rebase (told by its slot, which a partial picture also knows).</summary>
    private bool KeptSlotNamed(string name)
        => _picture.InvalidatedNames.TryGetValue(name, out int slot) && Volatile.Read(ref SlotAt(slot).State) == (uint)SlotState.Kept;

    /// <summary>
    /// Makes the picture read branch <paramref name="name"/> (with its ancestors and what was forked from it), or
    /// with null every branch, before a call looks at it: an open reads main alone, and the rest when asked.
    /// </summary>
    internal void Read(string? name)
    {
        bool more;
        lock (_gate)
        {
            ThrowIfUnusable();
            more = _picture.Want(name);
        }
        if (more)
            _changes.ForceReread();
        else
            EnsureCurrent();
    }

    /// <summary>Makes the picture read every branch (see <see cref="Read"/>): for the calls that look at them all.</summary>
    internal void ReadAll() => Read(null);

    /// <summary>Live branches the picture has left unread so far (an open reads main alone; see <see cref="Read"/>).</summary>
    internal int UnreadBranches
    {
        get { lock (_gate) return _picture.Wanted is null ? 0 : _picture.Deferred; }
    }

    /// <summary>The kept state of invalidated branch <paramref name="name"/>, or null.</summary>
    private BranchState? KeptNamed(string name)
        => _picture.InvalidatedNames.TryGetValue(name, out int slot) && _picture.Kept.TryGetValue(slot, out var k) ? k : null;

    /// <summary>True when a live branch has that name.</summary>
    public bool BranchExists(string name)
    {
        ArgumentNullException.ThrowIfNull(name);
        Read(name);
        lock (_gate) { ThrowIfUnusable(); return _picture.ByName.ContainsKey(name); }
    }

    /// <summary>The live branch named <paramref name="name"/>, or null (no exception: the mount looks names up often).</summary>
    internal Branch? FindLive(string name)
    {
        Read(name);
        lock (_gate)
        {
            ThrowIfUnusable();
            return _picture.ByName.TryGetValue(name, out var s) && s.Status == BranchState.StatusLive ? new Branch(this, s) : null;
        }
    }

    /// <summary>The live branches other than main, each with its parent's name, by name.</summary>
    internal List<(string Name, string Parent)> LiveBranches()
    {
        ReadAll();
        lock (_gate)
        {
            ThrowIfUnusable();
            var list = new List<(string, string)>();
            foreach (var s in _picture.Slots)
                if (s is { IsMain: false, Status: BranchState.StatusLive, Parent: { } p })
                    list.Add((s.Name, p.Name));
            list.Sort((a, b) => string.CompareOrdinal(a.Item1, b.Item1));
            return list;
        }
    }

    /// <summary>Every branch this region holds: live ones (main first, then by depth and name) and invalidated ones.</summary>
    public IReadOnlyList<BranchInfo> ListBranches()
    {
        ReadAll();
        lock (_gate)
        {
            ThrowIfUnusable();
            var list = new List<BranchInfo>();
            foreach (var s in _picture.Slots)
                if (s is not null && s.Status == BranchState.StatusLive)
                    list.Add(InfoOf(s));
            list.Sort((a, b) => a.Depth != b.Depth ? a.Depth.CompareTo(b.Depth) : string.CompareOrdinal(a.Name, b.Name));
            foreach (var (name, slot) in _picture.InvalidatedNames.OrderBy(kv => kv.Key, StringComparer.Ordinal))
            {
                ref var raw = ref SlotAt(slot);
                list.Add(_picture.Kept.TryGetValue(slot, out var k)
                    ? new BranchInfo(name, k.Parent?.Name, BranchStatus.Invalidated, k.Depth, k.LogBytes, k.Records, FileStat.FromNs(k.CreatedNs)) { Kept = true }
                    : new BranchInfo(name, null, BranchStatus.Invalidated, (int)raw.Depth, 0, 0, FileStat.FromNs(raw.CreatedNs)));
            }
            return list;
        }
    }

    internal BranchInfo InfoOf(BranchState s)
    {
        lock (_gate) // the picture's sets change under this lock (Branch.Info calls in without it)
        {
            var status = s.Status != BranchState.StatusLive ? BranchStatus.Invalidated
                : s.IsSnapshot ? BranchStatus.Version
                : s.IsMain ? BranchStatus.Main
                : s.Children.Count > 0 || s.Slot > 0 && Volatile.Read(ref SlotAt(s.Slot).LiveChildren) > 0 && _picture.PartlyKnown.Contains(s.Slot) ? BranchStatus.Frozen : BranchStatus.Live;
            return new BranchInfo(s.Name, s.Parent?.Name, status, s.Depth, s.LogBytes, s.Records, FileStat.FromNs(s.CreatedNs));
        }
    }

    /// <summary>Why <paramref name="name"/> cannot name a branch, or null when it can.</summary>
    public static string? BranchNameProblem(string name)
    {
        if (string.IsNullOrEmpty(name)) return "a branch name must not be empty";
        if (name.Length > FormatConstants.MaxBranchName) return $"a branch name has at most {FormatConstants.MaxBranchName} characters";
        if (name == "main") return "'main' is the name of the main branch";
        if (!char.IsAsciiLetterOrDigit(name[0])) return "a branch name starts with an ASCII letter or digit";
        foreach (char c in name)
            if (!char.IsAsciiLetterOrDigit(c) && c != '-' && c != '_' && c != '.')
                return $"a branch name holds only ASCII letters, digits, '-', '_' and '.', not '{c}'";
        return null;
    }

    /// <summary>Checks the branch can be used: it is live here and its slot was not reused or ended by another process.</summary>
    internal void CheckLive(BranchState s)
    {
        if (s.Fence is { } fence)
            throw fence;
        if (s.Status != BranchState.StatusLive)
            ThrowHelper.Invalidated(s.Name, s.Kept);
        if (s.IsSnapshot)
            return; // a past version of main: immutable, valid while the store is open
        ref var slot = ref SlotAt(s.Slot);
        long generation = Volatile.Read(ref slot.Generation);
        uint state = Volatile.Read(ref slot.State);
        if (generation != s.Generation || state != (uint)SlotState.Live)
        {
            s.Status = BranchState.StatusInvalidated;
            ThrowHelper.Invalidated(s.Name, generation == s.Generation && state == (uint)SlotState.Kept);
        }
    }

    /// <summary>Checks the branch accepts writes: live, not main, no live children.</summary>
    internal void CheckWritable(BranchState s)
    {
        CheckLive(s);
        if (s.IsMain)
            throw new BranchReadOnlyException(s.Name);
        if (s.IsSnapshot)
            throw new BranchReadOnlyException(s.Name, $"'{s.Name}' is a past version of main and read-only; fork it to change it");
        int children = (int)Volatile.Read(ref SlotAt(s.Slot).LiveChildren);
        if (children > 0)
            throw new BranchFrozenException(s.Name, children);
    }

    private void Own(Branch branch)
    {
        ArgumentNullException.ThrowIfNull(branch);
        if (!ReferenceEquals(branch.Store, this))
            throw new ArgumentException($"branch '{branch.Name}' belongs to another store", nameof(branch));
    }

    // ------------------------------------------------------------------ fork

    /// <summary>
    /// Forks a new branch named <paramref name="name"/> whose view equals <paramref name="parent"/>'s now.
    /// O(1): no data or index is copied. The parent is frozen (read-only) while the child lives.
    /// </summary>
    /// <exception cref="ArgumentException"><see cref="ForkOptions.KeepForRebase"/> on a fork of a branch that is not kept.</exception>
    public Branch Fork(Branch parent, string name, ForkOptions? options = null)
    {
        Own(parent);
        if (BranchNameProblem(name) is { } why)
            throw new ArgumentException($"invalid branch name '{name}': {why}", nameof(name));
        Read(name); // a branch of that name the picture left unread is read, so the name is judged on what the region holds
        return Locked(() =>
        {
            var p = parent.State;
            CheckLive(p);
            long baseVersion = -1;
            if (p.IsSnapshot)
            {
                // A fork of a past version: a child of main based on that version, which later commits leave alone.
                baseVersion = p.SnapshotOf;
                VersionViewRead(baseVersion); // refuses a version compaction folded away, before anything is written
                p = _picture.Slots[0]!;
            }
            // Keeping needs the whole chain kept: a kept branch's base is its parent's final state.
            bool keep = p.KeepForRebase || options?.KeepForRebase == true;
            if (keep && !p.IsMain && !p.KeepForRebase)
                throw new ArgumentException($"'{name}' cannot be kept for rebase: its parent '{p.Name}' was not forked to be kept", nameof(options));
            if (_picture.ByName.ContainsKey(name))
                throw new BranchExistsException(name);
            int slot = FindSlot(name);
            ref var raw = ref SlotAt(slot);
            long generation = raw.Generation + 1;
            long logId = Interlocked.Increment(ref _region.Word(FormatConstants.ControlOffset + ControlBlock.NextLogIdOffset)) - 1;
            long now = BaseImageBuilder.NowNs();
            // Fill the slot while it is not live, then publish it with one store of the state word.
            Volatile.Write(ref raw.State, (uint)SlotState.Free);
            var filled = default(BranchSlot);
            filled.Depth = (uint)(p.Depth + 1);
            filled.Generation = generation;
            filled.ParentSlot = (uint)p.Slot;
            filled.ParentGeneration = p.Generation;
            filled.ForkEpoch = baseVersion >= 0 ? baseVersion : p.Epoch;
            filled.Flags = (baseVersion >= 0 ? BranchSlot.FlagDetached : 0) | (keep ? BranchSlot.FlagKeep : 0);
            filled.LogId = logId;
            filled.CreatedNs = now;
            WriteName(ref filled, name);
            filled.IdentityCrc = BranchSlot.ComputeIdentityCrc(in filled);
            raw = filled;
            FaultPoints.Hit("fork.slot-filled");
            Volatile.Write(ref raw.State, (uint)SlotState.Live);
            FaultPoints.Hit("fork.published");
            var s = new BranchState
            {
                Slot = slot,
                Generation = generation,
                Name = name,
                Parent = p,
                Depth = p.Depth + 1,
                CreatedNs = now,
                Log = null!,
            };
            s.Log = new LogAppender(_region, _allocator, SlotOffset(slot), logId, 0, 0, 0, 0, s.OwnBlocks);
            s.View = baseVersion >= 0 ? VersionViewRead(baseVersion) : p.View;
            s.Detached = baseVersion >= 0;
            s.KeepForRebase = keep;
            s.BaseVersion = baseVersion >= 0 ? baseVersion : p.IsMain ? p.Epoch : p.BaseVersion;
            _picture.Slots[slot] = s;
            _picture.ByName[name] = s;
            _picture.InvalidatedNames.Remove(name);
            p.Children.Add(s);
            _picture.Want(name);
            // Where this store did not read all of the parent's children, the slot's count (which every change keeps) goes up by one.
            ref uint liveChildren = ref SlotAt(p.Slot).LiveChildren;
            Volatile.Write(ref liveChildren, _picture.Wanted is null || !_picture.PartlyKnown.Contains(p.Slot) ? (uint)p.Children.Count : Volatile.Read(ref liveChildren) + 1);
            return new Branch(this, s);
        });
    }

    /// <summary>A free slot; else the slot of an invalidated branch (the one named <paramref name="name"/> first).</summary>
    private int FindSlot(string name)
    {
        if (KeptSlotNamed(name))
            throw new BranchExistsException(name, $"'{name}' was invalidated and its changes are kept for a rebase; rebase or discard it before reusing the name");
        if (_picture.InvalidatedNames.TryGetValue(name, out int same))
            return same;
        int n = _picture.Slots.Length;
        for (int k = 0; k < n - 1; k++)
        {
            int i = 1 + (_slotHint - 1 + k) % (n - 1);
            if (_picture.Slots[i] is null && SlotAt(i).State == (uint)SlotState.Free)
            {
                _slotHint = i + 1 >= n ? 1 : i + 1;
                return i;
            }
        }
        foreach (var (oldName, slot) in _picture.InvalidatedNames)
        {
            if (Volatile.Read(ref SlotAt(slot).State) == (uint)SlotState.Kept)
                continue; // a kept log is given back only by a rebase's discard, never taken silently
            _picture.InvalidatedNames.Remove(oldName);
            return slot;
        }
        if (_picture.Want(null))
        {
            // Branches left unread may have ended or gone stale without their slots saying so yet: read them all, then look again.
            _changes.ForceReread();
            return FindSlot(name);
        }
        throw new BranchTableFullException(n);
    }

    // ------------------------------------------------------------------ commit

    /// <summary>
    /// Commits leaf branch <paramref name="branch"/>: its whole chain (branch → … → main) becomes main's view
    /// atomically, as one new version. Every other branch is invalidated. No payload bytes move: the chain's
    /// logs become part of main's history.
    /// </summary>
    /// <returns>The new version.</returns>
    public VersionInfo Commit(Branch branch, string message = "")
    {
        Own(branch);
        ArgumentNullException.ThrowIfNull(message);
        ReadAll(); // it invalidates every other branch
        return Locked(() => CommitToMain(branch.State, message));
    }

    /// <summary>
    /// Commits leaf branch <paramref name="branch"/> into its parent only: the parent's view becomes the
    /// branch's, the branch ends, and its siblings (with their descendants) are invalidated. When the parent
    /// is main this is the same as <see cref="Commit"/> and returns the new version; otherwise null.
    /// </summary>
    public VersionInfo? CommitToParent(Branch branch, string message = "")
    {
        Own(branch);
        ArgumentNullException.ThrowIfNull(message);
        ReadAll(); // it invalidates the siblings
        return Locked<VersionInfo?>(() =>
        {
            var b = branch.State;
            CheckLive(b);
            if (b.IsMain || b.IsSnapshot)
                throw new InvalidOperationException($"{b.Name} cannot be committed: fork a branch from it");
            if (b.Parent!.IsMain)
                return CommitToMain(b, message);
            if (b.Children.Count > 0)
                throw new BranchNotLeafException(b.Name, "commit");
            var p = b.Parent;
            CheckLive(p);
            long time = BaseImageBuilder.NowNs();
            var child = b.Log.Ref;
            long epoch = p.Epoch + 1;
            int len = RecordCodec.EncodeMerge(default, child, epoch, message);
            long at = p.Log.Reserve(RecordKind.Merge, time, len);
            RecordCodec.EncodeMerge(p.Log.Body(at, len), child, epoch, message);
            bool durable = _region.Kind != Media.RegionKind.Memory;
            if (durable) _region.Flush(0, _region.Length);
            p.Log.Publish(at, durable); // the commit point
            FaultPoints.Hit("commit-parent.published");
            _picture.MergedLogs.Add(child.LogId);
            p.Epoch = epoch;
            Volatile.Write(ref SlotAt(p.Slot).Epoch, epoch);
            p.View = b.View;
            p.MergedBlocks.AddRange(b.AllBlocks());
            p.Records += b.Records;
            p.LogBytes += b.LogBytes;
            End(b, SlotState.Free, freeBlocks: false);
            FaultPoints.Hit("commit-parent.invalidating");
            foreach (var sibling in p.Children.ToArray())
                foreach (var s in sibling.SelfAndDescendants().ToList())
                    End(s, SlotState.Invalidated, freeBlocks: true);
            p.Children.Clear();
            Volatile.Write(ref SlotAt(p.Slot).LiveChildren, 0u);
            return null;
        });
    }

    private VersionInfo CommitToMain(BranchState b, string message)
    {
        CheckLive(b);
        if (b.IsMain || b.IsSnapshot)
            throw new InvalidOperationException($"{b.Name} cannot be committed: fork a branch from it");
        if (b.Children.Count > 0)
            throw new BranchNotLeafException(b.Name, "commit");
        var main = _picture.Slots[0]!;
        var chain = new List<BranchState>();
        for (var s = b; !s.IsMain; s = s.Parent!)
        {
            CheckLive(s);
            chain.Add(s);
        }
        chain.Reverse();
        if (chain[0].Detached && chain[0].BaseVersion != main.Epoch)
            throw new BranchStaleBaseException(b.Name, chain[0].BaseVersion, main.Epoch);
        var refs = chain.Select(s => s.Log.Ref).ToArray(); // empty logs too: recovery learns every chain member was committed
        long records = chain.Sum(s => s.Records), bytes = chain.Sum(s => s.LogBytes);
        long seq = main.Epoch + 1;
        long time = BaseImageBuilder.NowNs();
        int len = RecordCodec.EncodeVersion(default, seq, refs, b.Name, message, records, bytes);
        long at = main.Log.Reserve(RecordKind.Version, time, len);
        RecordCodec.EncodeVersion(main.Log.Body(at, len), seq, refs, b.Name, message, records, bytes);
        bool durable = _region.Kind != Media.RegionKind.Memory;
        if (durable) _region.Flush(0, _region.Length); // the chain's records reach the file before the version does
        FaultPoints.Hit("commit.before-publish");
        main.Log.Publish(at, durable); // the commit point: from here the version exists
        FaultPoints.Hit("commit.published");
        foreach (var r in refs) _picture.MergedLogs.Add(r.LogId);
        main.Epoch = seq;
        Volatile.Write(ref SlotAt(0).Epoch, seq);
        FaultPoints.Hit("commit.epoch-stored");
        main.View = b.View;
        _picture.VersionViews.Add(b.View);
        foreach (var s in chain)
            main.MergedBlocks.AddRange(s.AllBlocks());
        main.Records += records;
        main.LogBytes += bytes;
        var version = new VersionInfo(seq, FileStat.FromNs(time), message, b.Name, records, bytes);
        _picture.Versions.Add(version);
        // Every other branch is now stale: end the chain (its logs are history) and invalidate the rest,
        // except chains forked from past versions, which were never based on main's state.
        var chainSet = new HashSet<BranchState>(chain);
        bool first = true;
        foreach (var top in main.Children.Where(c => !c.Detached || chainSet.Contains(c)).ToArray())
            foreach (var s in top.SelfAndDescendants().ToList())
            {
                // Kept only when the whole chain above it is kept too: under a committed branch its base was never a version.
                var to = chainSet.Contains(s) ? SlotState.Free : s.KeepForRebase && !chainSet.Contains(top) ? SlotState.Kept : SlotState.Invalidated;
                End(s, to, freeBlocks: to == SlotState.Invalidated);
                if (first) FaultPoints.Hit("commit.invalidating");
                first = false;
            }
        main.Children.RemoveAll(c => c.Status != BranchState.StatusLive);
        Volatile.Write(ref SlotAt(0).LiveChildren, (uint)main.Children.Count);
        MaybeWriteCheckpoint(main, records); // last: the commit is whole without it
        return version;
    }

    // ------------------------------------------------------------------ abort, discard

    /// <summary>
    /// Aborts <paramref name="branch"/>: discards its whole chain back to main, and every branch forked from
    /// the discarded ones. Other branches are unaffected.
    /// </summary>
    public void Abort(Branch branch)
    {
        Own(branch);
        ReadAll();
        Locked(() =>
        {
            var b = branch.State;
            CheckLive(b);
            if (b.IsMain || b.IsSnapshot)
                throw new InvalidOperationException($"{b.Name} cannot be aborted");
            var top = b;
            while (!top.Parent!.IsMain) top = top.Parent;
            var all = top.SelfAndDescendants().ToList();
            // Ending the top first is the commit point: on recovery its descendants have no live parent.
            foreach (var s in all)
            {
                End(s, SlotState.Free, freeBlocks: true);
                FaultPoints.Hit("abort.top-ended");
            }
        });
    }

    /// <summary>
    /// Discards leaf <paramref name="branch"/> alone (one level of backtracking); its parent goes on. For a branch
    /// invalidated with its changes kept, this is <see cref="DiscardInvalidated"/>.
    /// </summary>
    public void Discard(Branch branch)
    {
        Own(branch);
        ReadAll();
        Locked(() =>
        {
            var b = branch.State;
            if (b.Status != BranchState.StatusLive && KeptState(b) is { } kept)
            {
                DiscardKept(kept);
                return;
            }
            CheckLive(b);
            if (b.IsMain || b.IsSnapshot)
                throw new InvalidOperationException($"{b.Name} cannot be discarded");
            if (b.Children.Count > 0)
                throw new BranchNotLeafException(b.Name, "discard");
            End(b, SlotState.Free, freeBlocks: true);
            FaultPoints.Hit("discard.ended");
        });
    }

    /// <summary>
    /// Forgets invalidated branch <paramref name="name"/>: its name becomes free, and when its changes were kept
    /// for a rebase (<see cref="ForkOptions.KeepForRebase"/>) their space is given back, with that of kept
    /// branches forked from it.
    /// </summary>
    /// <exception cref="BranchNotFoundException">No invalidated branch has that name.</exception>
    /// <exception cref="InvalidOperationException">The branch of that name is live (use <see cref="Discard"/> or <see cref="Abort"/>).</exception>
    public void DiscardInvalidated(string name)
    {
        ArgumentNullException.ThrowIfNull(name);
        ReadAll();
        Locked(() =>
        {
            if (_picture.ByName.ContainsKey(name))
                throw new InvalidOperationException($"branch '{name}' is live; discard or abort it instead");
            if (KeptNamed(name) is { } kept)
            {
                DiscardKept(kept);
                return;
            }
            if (!_picture.InvalidatedNames.Remove(name, out int slot))
                throw new BranchNotFoundException(name);
            Volatile.Write(ref SlotAt(slot).State, (uint)SlotState.Free);
        });
    }

    /// <summary>This process's current state of a kept branch a handle was taken on (after a re-read, a new object), or null.</summary>
    private BranchState? KeptState(BranchState s)
        => _picture.Kept.TryGetValue(s.Slot, out var k) && k.Generation == s.Generation ? k : null;

    /// <summary>Frees a kept branch and every kept branch forked from it: slots free, blocks parked under the lease epochs.</summary>
    private void DiscardKept(BranchState top)
    {
        var doomed = _picture.Kept.Values.Where(k => { for (var a = k; a is not null; a = a.Parent) if (ReferenceEquals(a, top)) return true; return false; })
            .OrderBy(k => k.Depth).ToList();
        foreach (var k in doomed)
        {
            Volatile.Write(ref SlotAt(k.Slot).State, (uint)SlotState.Free);
            _changes.Leases.Park(k.AllBlocks());
            _picture.Kept.Remove(k.Slot);
            _picture.InvalidatedNames.Remove(k.Name);
            k.Kept = false;
            k.Status = BranchState.StatusEnded;
            FaultPoints.Hit("discard-kept.freed");
        }
    }

    /// <summary>Ends a branch here and in its slot; parks its blocks for reuse once no lease can see them.</summary>
    private void End(BranchState s, SlotState to, bool freeBlocks)
    {
        ref var slot = ref SlotAt(s.Slot);
        if (to == SlotState.Invalidated)
            RegionPicture.MarkInvalidated(ref slot);
        else
            Volatile.Write(ref slot.State, (uint)to); // Kept leaves head and tail naming the log
        s.Status = to is SlotState.Invalidated or SlotState.Kept ? BranchState.StatusInvalidated : BranchState.StatusEnded;
        s.Log.ReleaseSpare();
        if (freeBlocks)
            _changes.Leases.Park(s.AllBlocks());
        _picture.Slots[s.Slot] = null;
        _picture.ByName.Remove(s.Name);
        if (to is SlotState.Invalidated or SlotState.Kept)
            _picture.InvalidatedNames[s.Name] = s.Slot;
        if (to == SlotState.Kept)
        {
            s.Kept = true;
            _picture.Kept[s.Slot] = s;
        }
        if (s.Parent is { } p && p.Children.Remove(s))
            Volatile.Write(ref SlotAt(p.Slot).LiveChildren, (uint)p.Children.Count);
    }
}
