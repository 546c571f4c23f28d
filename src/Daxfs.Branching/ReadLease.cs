using Daxfs.Branching.Branching;
using Daxfs.Branching.Coordination;

namespace Daxfs.Branching;

/// <summary>
/// Keeps the region bytes under spans handed out by reads from being reused while it is held.
/// Dispose it when done with the spans.
/// </summary>
public sealed class ReadLease : IDisposable
{
    private readonly LeaseTable _table;
    private readonly long _epoch;
    private int _ended;

    internal ReadLease(LeaseScope scope)
    {
        _table = scope.Table;
        _epoch = scope.Epoch;
    }

    /// <summary>Ends the lease.</summary>
    public void Dispose()
    {
        if (Interlocked.Exchange(ref _ended, 1) == 0)
            _table.End(_epoch);
    }
}

/// <summary>
/// A read lease without an object, for the project's own hot paths (each read reply of the mount): disposing
/// it ends the lease. A struct, so a <c>using</c> of it allocates nothing; dispose it exactly once.
/// </summary>
internal readonly struct LeaseScope(LeaseTable table, long epoch) : IDisposable
{
    public LeaseTable Table => table;

    public long Epoch => epoch;

    public void Dispose() => table.End(epoch);
}
