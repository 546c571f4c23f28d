using System.Diagnostics;
using Daxfs.Branching.Format;
using Daxfs.Branching.Media;

namespace Daxfs.Branching.Coordination;

/// <summary>
/// How one store takes part in the region's coordination: its in-process gate, the region lock, its entry
/// of the process table, its read leases, the change counter that tells it when to re-read what other
/// processes changed, and the poison that stops it after a broken invariant.
/// </summary>
/// <remarks>
/// <para>
/// A change enters the gate (one thread of this store at a time), then the region lock (one store of any
/// process at a time). If the change counter moved since this store last looked, or the lock was taken over
/// from a holder that died half-way, the store re-reads the region before the change runs (the
/// <c>reread</c> callback, which rebuilds the store's picture). The counter is bumped on entry as well as on
/// exit: a process that dies inside a change still tells the others that something moved.
/// </para>
/// <para>
/// Reads take neither lock: they compare the counter with the value this store saw last (one shared word)
/// and re-read only when it moved.
/// </para>
/// </remarks>
internal sealed class ChangeScope
{
    private readonly Region _region;
    private readonly Action<bool> _reread;
    private readonly Func<int> _reclaim;
    private readonly Action _throwIfUnusable;
    private long _seen = -1;
    private bool _held;
    private Exception? _poison;

    /// <param name="region">The mapped region.</param>
    /// <param name="processTable">Offset and entry count of the region's process table.</param>
    /// <param name="reread">Brings the store's picture up to date; its argument says the store has the region alone.</param>
    /// <param name="reclaim">Returns parked space no lease can still see to the allocator; the number of runs returned.</param>
    /// <param name="throwIfUnusable">Throws when the store is closed or poisoned.</param>
    public ChangeScope(Region region, (long Offset, int Count, bool SharedAcrossKernels) processTable, Action<bool> reread, Func<int> reclaim, Action throwIfUnusable)
    {
        _region = region;
        _reread = reread;
        _reclaim = reclaim;
        _throwIfUnusable = throwIfUnusable;
        Processes = new ProcessTable(region, processTable.Offset, processTable.Count, processTable.SharedAcrossKernels);
        Lock = new RegionLock(region, Processes);
        Leases = new LeaseTable(region, Processes);
    }

    /// <summary>The in-process gate: held by the thread inside a change, and by readers of the store's picture.</summary>
    public object Gate { get; } = new();

    public RegionLock Lock { get; }

    public ProcessTable Processes { get; }

    public LeaseTable Leases { get; }

    private ref long ChangeCounter => ref _region.Word(FormatConstants.ControlOffset + ControlBlock.ChangeCounterOffset);

    /// <summary>
    /// Joins the region (caller is opening the store): takes the region lock, an entry of the process table,
    /// and reads the whole region. The read makes full repairs only when no other store has the region open.
    /// </summary>
    public void Join()
    {
        if (_region.IsSnapshot)
        {
            JoinAsSnapshot();
            return;
        }
        // The entry first: a store holds an entry whenever it holds the region lock, which is how a process
        // of another kernel tells a real holder from a stale word (see RegionLock).
        Processes.Register();
        try
        {
            Lock.Acquire();
            try
            {
                int others = Processes.CountOthers();
                Leases.Start();
                _reread(others == 0);
                Volatile.Write(ref _seen, Volatile.Read(ref ChangeCounter));
            }
            finally
            {
                Lock.Release();
            }
        }
        catch
        {
            Processes.Unregister();
            throw;
        }
    }

    /// <summary>
    /// Joins as a read-only snapshot (the region is mapped privately, its file opened read-only): no entry, no
    /// lock word. It holds the region lock shared, for as long as it is open, so no store changes the region
    /// under its picture; changes of other stores wait meanwhile. The picture is read once and never re-read.
    /// </summary>
    private void JoinAsSnapshot()
    {
        Lock.AcquireShared();
        try
        {
            // As a lone open would: every repair it would make lands in this process's private copy only, so the
            // picture (and the recovery report) show what an open for writing would find and do.
            _reread(true);
            Volatile.Write(ref _seen, Volatile.Read(ref ChangeCounter));
        }
        catch
        {
            Lock.ReleaseShared();
            throw;
        }
    }

    /// <summary>
    /// Leaves the region (caller holds the gate and is closing the store): under the region lock, waiting at
    /// most <paramref name="wait"/>, runs <paramref name="lastChange"/>, gives up the entry and returns parked
    /// space. If the lock stays busy it only gives up the entry.
    /// </summary>
    public void Leave(TimeSpan wait, Action lastChange)
    {
        Debug.Assert(Monitor.IsEntered(Gate), "leaving holds the gate");
        if (_region.IsSnapshot)
        {
            Lock.ReleaseShared();
            return;
        }
        bool clean = false;
        try
        {
            if (_poison is not null)
                return;
            try
            {
                Lock.Timeout = wait;
                Lock.Acquire();
                try
                {
                    // No lease of this store is open (the caller waited for them), so its entry holds nothing
                    // back; it is given up only after the lock, since a holder always has an entry.
                    lastChange();
                    _reclaim();
                    clean = Leases.ParkedPages == 0;
                    Interlocked.Increment(ref ChangeCounter);
                }
                finally
                {
                    Lock.Release();
                }
            }
            catch (StoreBusyException)
            {
                // Busy: what this store held stays marked in use until the next full recovery.
            }
        }
        finally
        {
            // Space this store could not give back (another process's lease still saw it, the lock was busy, or the
            // store was poisoned) is marked in use with nothing reaching it: the next lone open rebuilds free space.
            // Said before the entry goes, so no lone open can begin (and clear the word) in between.
            if (!clean)
                MarkSpaceAudit();
            Processes.Unregister(); // whatever failed above, the entry goes, so no store counts this one any longer
        }
    }

    /// <summary>Throws if the store is poisoned.</summary>
    /// <summary>Says that some space may be marked in use that no log reaches (see <see cref="ControlBlock.SpaceAuditOffset"/>).</summary>
    public void MarkSpaceAudit() => Volatile.Write(ref _region.Word(FormatConstants.ControlOffset + ControlBlock.SpaceAuditOffset), 1);

    /// <summary>True when some space may be marked in use that no log reaches.</summary>
    public bool SpaceAuditDue => Volatile.Read(ref _region.Word(FormatConstants.ControlOffset + ControlBlock.SpaceAuditOffset)) != 0;

    /// <summary>Clears the audit word after free space was rebuilt from every log (caller holds the region lock, alone).</summary>
    public void ClearSpaceAudit() => Volatile.Write(ref _region.Word(FormatConstants.ControlOffset + ControlBlock.SpaceAuditOffset), 0);

    /// <summary>
    /// Makes the next look at the region re-read it, at once: the picture was asked to take in more of the region
    /// (a branch it had left unread). Inside a change of this thread, re-reads directly (the lock is held).
    /// </summary>
    public void ForceReread()
    {
        if (_held && Monitor.IsEntered(Gate))
        {
            _reread(false);
            return;
        }
        Volatile.Write(ref _seen, -3);
        EnsureCurrent();
    }

    public void ThrowIfPoisoned()
    {
        if (_poison is not null)
            throw new StorePoisonedException(_poison);
    }

    /// <summary>Enters a change: the gate, then the region lock, then a re-read if anything moved. Pair with <see cref="Exit"/>.</summary>
    public void Enter()
    {
        if (_held && Monitor.IsEntered(Gate))
            throw new InvalidOperationException("a change began inside another change of the same store");
        if (_region.IsSnapshot)
            throw new InvalidOperationException($"{_region.Path}: opened as a read-only snapshot; nothing can be changed through it");
        Monitor.Enter(Gate);
        try
        {
            _throwIfUnusable();
            _region.CheckBacking(); // a truncated file: an error here, not SIGBUS on the lock word
            Lock.Acquire();
        }
        catch
        {
            Monitor.Exit(Gate);
            throw;
        }
        _held = true;
        try
        {
            if (Lock.TookOverFromDead)
                Volatile.Write(ref _seen, -2); // a dead holder may have left a change half-done: re-derive everything
            if (Volatile.Read(ref ChangeCounter) != _seen)
                _reread(false);
            // Bump the counter on entry too: if this process dies inside the change, readers elsewhere still
            // see that something moved, take the lock over and re-derive, instead of reading a stale picture.
            Volatile.Write(ref _seen, Interlocked.Increment(ref ChangeCounter));
            if (_reclaim() > 0)
                Volatile.Write(ref _seen, Interlocked.Increment(ref ChangeCounter));
        }
        catch (Exception ex)
        {
            PoisonIfBroken(ex);
            Exit(changed: false);
            throw;
        }
    }

    /// <summary>Leaves a change; <paramref name="changed"/> tells other processes to re-read the region.</summary>
    public void Exit(bool changed)
    {
        try
        {
            if (_poison is null)
            {
                // Space returned to the bitmap is a change too: other processes recount their free pages.
                if (_reclaim() > 0)
                    changed = true;
                if (changed)
                    Volatile.Write(ref _seen, Interlocked.Increment(ref ChangeCounter));
            }
        }
        finally
        {
            _held = false;
            try { Lock.Release(); }
            finally { Monitor.Exit(Gate); }
        }
    }

    /// <summary>
    /// Brings the store's picture up to date if another process changed the region since. Cheap when nothing
    /// changed: one shared-word read. Called before every read and change.
    /// </summary>
    public void EnsureCurrent()
    {
        _throwIfUnusable();
        if (_region.IsSnapshot)
            return; // a snapshot's picture is the one it read
        if (Volatile.Read(ref ChangeCounter) == Volatile.Read(ref _seen) || _held && Monitor.IsEntered(Gate))
            return;
        Enter(); // re-reads on entry
        Exit(changed: false);
    }

    /// <summary>The change counter now: a copying read compares it before and after (no process can end a branch,
    /// and so free and reuse its bytes, without moving it first).</summary>
    public long Stamp() => Volatile.Read(ref ChangeCounter);

    /// <summary>True when no change began since <paramref name="stamp"/> was read; orders the copy's loads before the check.</summary>
    public bool UnchangedSince(long stamp)
    {
        Interlocked.MemoryBarrier();
        return Volatile.Read(ref ChangeCounter) == stamp;
    }

    /// <summary>
    /// Exception filter for changes: an unexpected failure (not a user-facing error) poisons the store so no
    /// later call writes on top of a half-done change. Always false, so the exception flows on.
    /// </summary>
    public bool PoisonIfBroken(Exception ex)
    {
        if (ex is CorruptionException || ex is not (DaxfsException or ArgumentException or InvalidOperationException or ObjectDisposedException))
            _poison ??= ex;
        return false;
    }
}
