using Daxfs.Branching.Branching;

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

    internal ReadLease(LeaseTable table, long epoch)
    {
        _table = table;
        _epoch = epoch;
    }

    /// <summary>Ends the lease.</summary>
    public void Dispose()
    {
        if (Interlocked.Exchange(ref _ended, 1) == 0)
            _table.End(_epoch);
    }
}
