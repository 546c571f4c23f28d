namespace Daxfs.Branching.Branching;

/// <summary>
/// Read leases of this process and the blocks waiting for them to end.
/// </summary>
/// <remarks>
/// Why a lease keeps its spans valid: a lease records the reclamation epoch current when it began.
/// Blocks a branch gives up (abort, discard, invalidation) are parked with the epoch current at that
/// moment, and the epoch then advances. A parked batch is returned to the allocator only when every
/// active lease began after the batch was parked, so no lease that could have handed out a span into
/// those blocks is still open. A lease begun later cannot reach the blocks: the branch that owned them
/// was already gone from every view.
/// </remarks>
internal sealed class LeaseTable
{
    private readonly object _gate = new();
    private readonly SortedDictionary<long, int> _active = [];
    private readonly Queue<(long Epoch, List<(long Offset, long Pages)> Blocks)> _parked = new();
    private long _epoch = 1;

    public int ActiveCount
    {
        get { lock (_gate) return _active.Values.Sum(); }
    }

    public long ParkedPages
    {
        get { lock (_gate) return _parked.Sum(p => p.Blocks.Sum(b => b.Pages)); }
    }

    public long Begin()
    {
        lock (_gate)
        {
            long e = _epoch;
            _active[e] = _active.TryGetValue(e, out int n) ? n + 1 : 1;
            return e;
        }
    }

    public void End(long epoch)
    {
        lock (_gate)
        {
            if (!_active.TryGetValue(epoch, out int n))
                return;
            if (n == 1) _active.Remove(epoch); else _active[epoch] = n - 1;
        }
    }

    /// <summary>Parks blocks given up now.</summary>
    public void Park(List<(long Offset, long Pages)> blocks)
    {
        if (blocks.Count == 0) return;
        lock (_gate)
        {
            _parked.Enqueue((_epoch, blocks));
            _epoch++;
        }
    }

    /// <summary>Removes and returns the parked blocks no active lease can still see.</summary>
    public List<(long Offset, long Pages)> TakeReclaimable()
    {
        var result = new List<(long, long)>();
        lock (_gate)
        {
            long oldest = long.MaxValue;
            foreach (var kv in _active) { oldest = kv.Key; break; }
            while (_parked.Count > 0 && _parked.Peek().Epoch < oldest)
                result.AddRange(_parked.Dequeue().Blocks);
        }
        return result;
    }
}
