using Daxfs.Branching.Format;
using Daxfs.Branching.Media;

namespace Daxfs.Branching.Branching;

/// <summary>
/// Read leases of this process, published in its entry of the region's process table, and the blocks
/// this process gave up that wait for every process's leases to move past them.
/// </summary>
/// <remarks>
/// Why a lease keeps its spans valid, in every process: space a branch gives up (abort, discard,
/// invalidation) is parked under the region's reclamation epoch r, which then advances to r + 1
/// (an atomic increment, after the branch's slot already says it ended). A lease records the epoch it
/// began in, and each process publishes the oldest epoch its open leases began in. Parked space is
/// reused only when every live process's published epoch is above r. A lease publishes its epoch and
/// then reads the counter again, retrying if it moved: so either the giver of space sees the lease
/// (and waits for it), or the lease began after the branch had ended, and every read through it checks
/// the branch's slot first and fails. Dead processes' entries are cleared, so they hold nothing back.
/// </remarks>
internal sealed class LeaseTable
{
    private readonly object _gate = new();
    private readonly Region _region;
    private readonly long _epochWord;
    private readonly long _tableOffset;
    // Open leases per epoch. A plain dictionary: there are a handful of epochs at most, a scan finds the
    // oldest, and once warm it allocates nothing per lease (a sorted one allocates a node per new epoch
    // and an enumerator per scan, on every read reply of the mount).
    private readonly Dictionary<long, int> _active = [];
    private readonly Queue<(long Epoch, List<(long Offset, long Pages)> Blocks)> _parked = new();
    private long _entry = -1;

    public LeaseTable(Region region)
    {
        _region = region;
        _epochWord = FormatConstants.ControlOffset + ControlBlock.ReclaimEpochOffset;
        _tableOffset = FormatConstants.ControlOffset + ControlBlock.ProcessTableOffset;
    }

    private long EntryOffset(int i) => _tableOffset + (long)i * ControlBlock.ProcessEntrySize;

    /// <summary>Takes an entry in the process table (caller holds the region lock). Returns how many other live processes have the region open.</summary>
    public int Register()
    {
        int others = 0, free = -1;
        for (int i = 0; i < ControlBlock.ProcessSlots; i++)
        {
            ref long owner = ref _region.Word(EntryOffset(i));
            long word = Volatile.Read(ref owner);
            if (word != 0 && !RegionLock.IsAlive(word))
            {
                // A process died with the region open: its leases end with it.
                Volatile.Write(ref _region.Word(EntryOffset(i) + 8), 0);
                Volatile.Write(ref owner, 0);
                word = 0;
            }
            if (word == 0) { if (free < 0) free = i; }
            else others++;
        }
        if (free < 0)
            throw new StoreBusyException($"{_region.Path}: {ControlBlock.ProcessSlots} processes already have this region open");
        Volatile.Write(ref _region.Word(EntryOffset(free) + 8), 0);
        Volatile.Write(ref _region.Word(EntryOffset(free)), RegionLock.s_self);
        _entry = EntryOffset(free);
        if (Volatile.Read(ref _region.Word(_epochWord)) == 0)
            Volatile.Write(ref _region.Word(_epochWord), 1);
        return others;
    }

    /// <summary>Gives up this process's entry (its leases end).</summary>
    public void Unregister()
    {
        if (_entry < 0) return;
        Volatile.Write(ref _region.Word(_entry + 8), 0);
        Interlocked.CompareExchange(ref _region.Word(_entry), 0, RegionLock.s_self);
        _entry = -1;
    }

    public long ParkedPages
    {
        get { lock (_gate) return _parked.Sum(p => p.Blocks.Sum(b => b.Pages)); }
    }

    public long Begin()
    {
        lock (_gate)
        {
            while (true)
            {
                long e = Volatile.Read(ref _region.Word(_epochWord));
                _active[e] = _active.TryGetValue(e, out int n) ? n + 1 : 1;
                Publish();
                if (Volatile.Read(ref _region.Word(_epochWord)) == e)
                    return e;
                Drop(e);
            }
        }
    }

    public void End(long epoch)
    {
        lock (_gate)
        {
            if (_active.ContainsKey(epoch))
            {
                Drop(epoch);
                Publish();
            }
        }
    }

    private void Drop(long e)
    {
        if (_active[e] == 1) _active.Remove(e); else _active[e]--;
    }

    private void Publish()
    {
        if (_entry < 0) return;
        long oldest = 0;
        foreach (long e in _active.Keys)
            if (oldest == 0 || e < oldest) oldest = e;
        Interlocked.Exchange(ref _region.Word(_entry + 8), oldest); // a full fence: the epoch is visible before the recheck
    }

    /// <summary>Parks blocks given up now (caller holds the region lock, after the owner's slot says it ended).</summary>
    public void Park(List<(long Offset, long Pages)> blocks)
    {
        if (blocks.Count == 0) return;
        long r = Interlocked.Increment(ref _region.Word(_epochWord)) - 1;
        lock (_gate)
            _parked.Enqueue((r, blocks));
    }

    /// <summary>Removes and returns the parked blocks no live process's lease can still see (caller holds the region lock).</summary>
    public List<(long Offset, long Pages)> TakeReclaimable()
    {
        var result = new List<(long, long)>();
        lock (_gate)
        {
            if (_parked.Count == 0)
                return result;
            long oldest = long.MaxValue;
            for (int i = 0; i < ControlBlock.ProcessSlots; i++)
            {
                long word = Volatile.Read(ref _region.Word(EntryOffset(i)));
                if (word == 0) continue;
                long e = Volatile.Read(ref _region.Word(EntryOffset(i) + 8));
                if (e == 0) continue;
                if (word != RegionLock.s_self && !RegionLock.IsAlive(word)) continue; // a dead reader holds nothing
                oldest = Math.Min(oldest, e);
            }
            while (_parked.Count > 0 && _parked.Peek().Epoch < oldest)
                result.AddRange(_parked.Dequeue().Blocks);
        }
        return result;
    }
}
