using Daxfs.Branching.Format;
using Daxfs.Branching.Media;

namespace Daxfs.Branching.Coordination;

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
/// the branch's slot first and fails. Entries of stores that are gone (their kernel dropped their entry's
/// byte lock, see <see cref="ProcessTable"/>) are cleared, so they hold nothing back; entries of another
/// kernel cannot be checked and hold space back until they go.
/// </remarks>
internal sealed class LeaseTable
{
    private readonly object _gate = new();
    private readonly Region _region;
    private readonly ProcessTable _table;
    private readonly long _epochWord;
    // Open leases per epoch. A plain dictionary: there are a handful of epochs at most, a scan finds the
    // oldest, and once warm it allocates nothing per lease (a sorted one allocates a node per new epoch
    // and an enumerator per scan, on every read reply of the mount).
    private readonly Dictionary<long, int> _active = [];
    private readonly Queue<(long Epoch, List<(long Offset, long Pages)> Blocks)> _parked = new();
    private int _open;
    private bool _closed;

    public LeaseTable(Region region, ProcessTable table)
    {
        _region = region;
        _table = table;
        _epochWord = FormatConstants.ControlOffset + ControlBlock.ReclaimEpochOffset;
    }

    /// <summary>Leases of this store that are open now.</summary>
    public int Open => Volatile.Read(ref _open);

    /// <summary>Makes sure the reclamation epoch has started (caller holds the region lock).</summary>
    public void Start()
    {
        if (Volatile.Read(ref _region.Word(_epochWord)) == 0)
            Volatile.Write(ref _region.Word(_epochWord), 1);
    }

    public long ParkedPages
    {
        get { lock (_gate) return _parked.Sum(p => p.Blocks.Sum(b => b.Pages)); }
    }

    public long Begin()
    {
        lock (_gate)
        {
            ObjectDisposedException.ThrowIf(_closed, this);
            while (true)
            {
                long e = Volatile.Read(ref _region.Word(_epochWord));
                _active[e] = _active.TryGetValue(e, out int n) ? n + 1 : 1;
                Publish();
                if (Volatile.Read(ref _region.Word(_epochWord)) == e)
                {
                    _open++;
                    return e;
                }
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
                _open--;
                if (_open == 0)
                    Monitor.PulseAll(_gate);
            }
        }
    }

    private void Drop(long e)
    {
        if (_active[e] == 1) _active.Remove(e); else _active[e]--;
    }

    private void Publish()
    {
        int own = _table.Own;
        if (own < 0) return;
        long oldest = 0;
        foreach (long e in _active.Keys)
            if (oldest == 0 || e < oldest) oldest = e;
        Interlocked.Exchange(ref _table.EpochWord(own), oldest); // a full fence: the epoch is visible before the recheck
    }

    /// <summary>
    /// Waits until this store's leases have all ended, at most <paramref name="timeout"/>, and then refuses new
    /// ones (<see cref="ObjectDisposedException"/>), so the region can be unmapped under none. False, leaving the
    /// table open, when a lease is still open.
    /// </summary>
    public bool Close(TimeSpan timeout)
    {
        var deadline = DateTime.UtcNow + timeout;
        lock (_gate)
        {
            while (_open > 0)
            {
                var left = deadline - DateTime.UtcNow;
                if (left <= TimeSpan.Zero || !Monitor.Wait(_gate, left))
                    if (_open > 0) return false;
            }
            _closed = true;
            return true;
        }
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
            // Only entries whose lease could hold back the oldest parked space are asked about (one kernel
            // query each); a lease that began after it, or no lease, holds nothing back.
            long head = _parked.Peek().Epoch;
            long oldest = long.MaxValue;
            for (int i = 0; i < _table.Count; i++)
            {
                long e = Volatile.Read(ref _table.EpochWord(i));
                if (e == 0 || e > head) { if (e != 0) oldest = Math.Min(oldest, e); continue; }
                long word = Volatile.Read(ref _table.OwnerWord(i));
                if (word == 0 || _table.TryClear(i, word))
                    continue; // no reader, or a dead one: it holds nothing
                oldest = Math.Min(oldest, e);
            }
            while (_parked.Count > 0 && _parked.Peek().Epoch < oldest)
                result.AddRange(_parked.Dequeue().Blocks);
        }
        return result;
    }
}
