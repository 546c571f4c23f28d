using System.Diagnostics;
using Daxfs.Branching.Format;
using Daxfs.Branching.Media;

namespace Daxfs.Branching.Coordination;

/// <summary>
/// The region's process table: one entry per store that has the region open, holding the store's word and
/// the oldest epoch its read leases may still see (see <see cref="LeaseTable"/>).
/// </summary>
/// <remarks>
/// <para>
/// Liveness comes from the kernel: the store that holds entry <c>i</c> keeps an open-file-description lock
/// on the entry's first byte for as long as it has the region open, and the kernel drops that lock when the
/// store's descriptor closes (the process exited or was killed, in whatever PID or user namespace it ran).
/// Whoever changes an entry it does not own holds that byte lock while it does: a store claiming the entry,
/// or a store clearing the entry of one that is gone. So an entry is never cleared under a live owner, and
/// two stores never claim one entry. A store registers before it first takes the region lock, so every
/// holder of the region lock has an entry with its word.
/// </para>
/// <para>
/// Each store's word is its own (a random number beside its kernel's boot tag), so two stores of one
/// process, or two processes numbered alike by different PID namespaces, are never confused.
/// </para>
/// <para>
/// A word with another kernel's boot tag is, on a region created as shared by several kernels, a store this
/// kernel cannot check: it is taken as live and never cleared. On any other region it can only be a store
/// of an earlier boot (the region is a file or a device that outlived a reboot), which is gone.
/// </para>
/// <para>
/// Costs: opening scans the table (64-byte entries) and asks the kernel about each entry in use; a lease
/// touches only the store's own entry; reclamation asks only about entries whose lease would hold it back.
/// </para>
/// </remarks>
internal sealed class ProcessTable
{
    private readonly Region _region;
    private readonly long _offset;
    private readonly int _count;
    private readonly bool _sharedAcrossKernels;
    private int _own = -1;

    public ProcessTable(Region region, long offset, int count, bool sharedAcrossKernels)
    {
        _region = region;
        _offset = offset;
        _count = count;
        _sharedAcrossKernels = sharedAcrossKernels;
    }

    /// <summary>Number of entries.</summary>
    public int Count => _count;

    /// <summary>This store's entry, or -1 before it registered and after it unregistered.</summary>
    public int Own => _own;

    /// <summary>This store's word (0 before it registered).</summary>
    public long OwnWord { get; private set; }

    public long EntryOffset(int i) => _offset + (long)i * ProcessEntry.Size;

    public ref long OwnerWord(int i) => ref _region.Word(EntryOffset(i) + ProcessEntry.OwnerOffset);

    public ref long EpochWord(int i) => ref _region.Word(EntryOffset(i) + ProcessEntry.LeaseEpochOffset);

    /// <summary>
    /// True when this kernel can tell whether the store of <paramref name="word"/> lives: it is of this kernel, or
    /// the region is not shared by several kernels (so another tag is a store of an earlier boot).
    /// </summary>
    public bool Checkable(long word) => !_sharedAcrossKernels || ProcessIdentity.SameKernel(word);

    /// <summary>
    /// Takes an entry for this store, without the region lock: an entry is free when its word is 0 or names a
    /// store that is gone, and this store owns it once it holds the entry's byte lock and has swapped its
    /// own word in.
    /// </summary>
    /// <exception cref="StoreBusyException">Every entry is held.</exception>
    public void Register()
    {
        Debug.Assert(_own < 0, "a store registers once");
        long mine = ProcessIdentity.NewWord();
        while (Holds(mine))
            mine = ProcessIdentity.NewWord(); // drawn again: two stores must never share a word
        for (int i = 0; i < _count; i++)
        {
            long word = Volatile.Read(ref OwnerWord(i));
            if (word != 0 && !Checkable(word))
                continue; // another kernel's: never ours to take
            if (!_region.TryLock(EntryOffset(i)))
                continue; // a live store holds it, or one clearing it or giving it up
            // The byte is ours, so any checkable word left here names a store that is gone.
            while (true)
            {
                word = Volatile.Read(ref OwnerWord(i));
                if (word != 0 && !Checkable(word))
                    break;
                if (Interlocked.CompareExchange(ref OwnerWord(i), mine, word) == word)
                {
                    if (word != 0) // taken from a store that went without giving it up: its space may be marked in use still
                        Volatile.Write(ref _region.Word(FormatConstants.ControlOffset + ControlBlock.SpaceAuditOffset), 1);
                    // The rest of the entry is written only once it is ours: until then it may be another
                    // kernel's store's, which won the word first.
                    Volatile.Write(ref EpochWord(i), 0);
                    ProcessIdentity.BootId.CopyTo(_region.WritableSpan(EntryOffset(i) + ProcessEntry.BootIdOffset, 16));
                    Volatile.Write(ref _region.At<int>(EntryOffset(i) + ProcessEntry.PidOffset), ProcessIdentity.Pid);
                    _own = i;
                    OwnWord = mine;
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
            if (word != 0 && !TryClear(i, word))
                others++;
        }
        return others;
    }

    /// <summary>
    /// Clears entry <paramref name="i"/> if the store of <paramref name="word"/> is gone (nobody holds the entry's
    /// byte lock, and this kernel can tell). Returns false when it may be live. While clearing, this store holds
    /// the byte lock, so no store can claim the entry meanwhile.
    /// </summary>
    public bool TryClear(int i, long word)
    {
        if (i == _own || !Checkable(word) || !_region.TryLock(EntryOffset(i)))
            return false;
        try
        {
            if (Volatile.Read(ref OwnerWord(i)) == word)
            {
                // It went without giving its entry up: whatever it reserved or parked may be marked in use still.
                Volatile.Write(ref _region.Word(FormatConstants.ControlOffset + ControlBlock.SpaceAuditOffset), 1);
                Volatile.Write(ref EpochWord(i), 0); // its leases end with it
                Interlocked.CompareExchange(ref OwnerWord(i), 0, word);
            }
        }
        finally
        {
            _region.Unlock(EntryOffset(i));
        }
        return true;
    }

    /// <summary>Gives up this store's entry: its leases end. The word is cleared before the byte lock goes.</summary>
    public void Unregister()
    {
        if (_own < 0)
            return;
        Volatile.Write(ref EpochWord(_own), 0);
        Interlocked.CompareExchange(ref OwnerWord(_own), 0, OwnWord);
        _region.Unlock(EntryOffset(_own));
        _own = -1;
    }

    /// <summary>True when some entry holds <paramref name="word"/>.</summary>
    public bool Holds(long word) => Find(word) >= 0;

    private int Find(long word)
    {
        for (int i = 0; i < _count; i++)
            if (Volatile.Read(ref OwnerWord(i)) == word)
                return i;
        return -1;
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

    /// <summary>The store of <paramref name="word"/> for messages: its pid and kernel, from its entry when one holds the word.</summary>
    public string Describe(long word)
    {
        int i = Find(word);
        return i < 0
            ? ProcessIdentity.Describe(word, 0, default)
            : ProcessIdentity.Describe(word, Volatile.Read(ref _region.At<int>(EntryOffset(i) + ProcessEntry.PidOffset)), _region.Span(EntryOffset(i) + ProcessEntry.BootIdOffset, 16));
    }
}
