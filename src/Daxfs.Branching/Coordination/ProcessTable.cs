using System.Diagnostics;
using Daxfs.Branching.Format;
using Daxfs.Branching.Media;

namespace Daxfs.Branching.Coordination;

/// <summary>
/// The region's process table: one entry per store that has the region open, holding the store's process
/// word and the oldest epoch its read leases may still see (see <see cref="LeaseTable"/>).
/// </summary>
/// <remarks>
/// <para>
/// Liveness comes from the kernel: the store that holds entry <c>i</c> keeps an open-file-description lock
/// on the entry's first byte for as long as it has the region open. The kernel drops that lock when the
/// store's descriptor closes, so an entry whose word is set but whose byte nobody locks belongs to a process
/// that is gone, in whatever PID or user namespace it ran. Registering takes the byte lock before it sets the
/// word, and unregistering clears the word before it lets the lock go, so a live store's entry is never
/// judged dead. A store registers before it first takes the region lock, and clearing the entries of
/// stores that are gone happens under that lock, so a cleared entry can never be one whose new owner
/// already published a lease.
/// </para>
/// <para>
/// An entry whose word carries another kernel's boot tag cannot be checked from here (its lock lives in
/// that kernel): it is taken as live and never cleared. The owner word is taken by compare-and-swap, so
/// stores of two kernels never share an entry.
/// </para>
/// <para>
/// Costs: opening scans the table once (reads of 32-byte entries) and asks the kernel about each entry that
/// is in use; a lease touches only the store's own entry; reclamation asks the kernel only about entries
/// whose lease would hold it back.
/// </para>
/// </remarks>
internal sealed class ProcessTable
{
    private readonly Region _region;
    private readonly long _offset;
    private readonly int _count;
    private int _own = -1;

    public ProcessTable(Region region, long offset, int count)
    {
        _region = region;
        _offset = offset;
        _count = count;
    }

    /// <summary>Number of entries.</summary>
    public int Count => _count;

    /// <summary>This store's entry, or -1 before it registered and after it unregistered.</summary>
    public int Own => _own;

    public long EntryOffset(int i) => _offset + (long)i * ProcessEntry.Size;

    public ref long OwnerWord(int i) => ref _region.Word(EntryOffset(i) + ProcessEntry.OwnerOffset);

    public ref long EpochWord(int i) => ref _region.Word(EntryOffset(i) + ProcessEntry.LeaseEpochOffset);

    /// <summary>
    /// Takes an entry for this store, without the region lock: an entry is free when its word is 0 or names a
    /// store of this kernel that is gone, and this store owns it once it holds the entry's byte lock and has
    /// swapped its own word in.
    /// </summary>
    /// <exception cref="StoreBusyException">Every entry is held.</exception>
    public void Register()
    {
        Debug.Assert(_own < 0, "a store registers once");
        for (int i = 0; i < _count; i++)
        {
            long word = Volatile.Read(ref OwnerWord(i));
            if (word != 0 && !ProcessIdentity.SameKernel(word))
                continue; // another kernel's: never ours to take
            if (!_region.TryLock(EntryOffset(i)))
                continue; // a live store of this kernel holds it (or is between clearing its word and unlocking)
            // The byte is ours, so any word of this kernel left here names a store that is gone.
            while (true)
            {
                word = Volatile.Read(ref OwnerWord(i));
                if (word != 0 && !ProcessIdentity.SameKernel(word))
                    break;
                if (Interlocked.CompareExchange(ref OwnerWord(i), ProcessIdentity.Word, word) == word)
                {
                    // Its epoch and boot id are written only once the entry is ours: until then they may be
                    // another kernel's store's, which won the word first.
                    Volatile.Write(ref EpochWord(i), 0);
                    ProcessIdentity.BootId.CopyTo(_region.WritableSpan(EntryOffset(i) + ProcessEntry.BootIdOffset, 16));
                    _own = i;
                    return;
                }
            }
            _region.Unlock(EntryOffset(i));
        }
        throw new StoreBusyException($"{_region.Path}: all {_count} entries of the process table are held by stores that have this region open");
    }

    /// <summary>
    /// Clears the entries of stores that are gone and counts the others, live or of another kernel (caller
    /// holds the region lock). Every store that holds the lock or has finished opening is counted.
    /// </summary>
    public int CountOthers()
    {
        int others = 0;
        for (int i = 0; i < _count; i++)
        {
            if (i == _own)
                continue;
            long word = Volatile.Read(ref OwnerWord(i));
            if (word == 0)
                continue;
            if (IsLive(i, word))
                others++;
            else
                Clear(i, word); // a process died with the region open: its leases end with it
        }
        return others;
    }

    /// <summary>True when some entry holds <paramref name="word"/> (a process word of another kernel, checked by the region lock).</summary>
    public bool Holds(long word)
    {
        for (int i = 0; i < _count; i++)
            if (Volatile.Read(ref OwnerWord(i)) == word)
                return true;
        return false;
    }

    /// <summary>Gives up this store's entry: its leases end. The word is cleared before the byte lock goes.</summary>
    public void Unregister()
    {
        if (_own < 0)
            return;
        Volatile.Write(ref EpochWord(_own), 0);
        Interlocked.CompareExchange(ref OwnerWord(_own), 0, ProcessIdentity.Word);
        _region.Unlock(EntryOffset(_own));
        _own = -1;
    }

    /// <summary>
    /// True when entry <paramref name="i"/>, whose owner word is <paramref name="word"/> (not 0), belongs to a
    /// store that may still be running: this one, one whose kernel still holds its byte lock, or one of
    /// another kernel, which cannot be checked.
    /// </summary>
    public bool IsLive(int i, long word)
    {
        if (i == _own || !ProcessIdentity.SameKernel(word))
            return true;
        return _region.LockedElsewhere(EntryOffset(i));
    }

    /// <summary>Clears the entry of a store that is gone (caller holds the region lock and judged it dead).</summary>
    public void Clear(int i, long word)
    {
        Debug.Assert(i != _own, "this store's own entry is never judged dead");
        Volatile.Write(ref EpochWord(i), 0);
        Interlocked.CompareExchange(ref OwnerWord(i), 0, word);
    }

    /// <summary>Number of entries held now (for diagnostics and tests).</summary>
    public int InUse()
    {
        int n = 0;
        for (int i = 0; i < _count; i++)
            if (Volatile.Read(ref OwnerWord(i)) != 0)
                n++;
        return n;
    }

    /// <summary>The boot id stored in the entry that holds <paramref name="word"/> (for messages), or empty.</summary>
    public ReadOnlySpan<byte> BootIdOf(long word)
    {
        for (int i = 0; i < _count; i++)
            if (Volatile.Read(ref OwnerWord(i)) == word)
                return _region.Span(EntryOffset(i) + ProcessEntry.BootIdOffset, 16);
        return default;
    }
}
