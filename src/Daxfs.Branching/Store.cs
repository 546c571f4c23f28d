using System.Text;
using Daxfs.Branching.Branching;
using Daxfs.Branching.Coordination;
using Daxfs.Branching.Format;
using Daxfs.Branching.Index;
using Daxfs.Branching.Replay;
using Daxfs.Branching.Log;
using Daxfs.Branching.Media;

namespace Daxfs.Branching;

/// <summary>
/// A region opened by this process: the base image, the branch table and every branch's delta log,
/// with the branch operations (fork, commit, abort, discard) and access to each branch's files.
/// </summary>
/// <remarks>
/// Thread-safe: changes are serialized by an in-process lock and the region's lock; reads take no lock.
/// Dispose waits for this store's open read leases, then closes the mapping: spans handed out before must not be used after.
/// </remarks>
public sealed partial class Store : IDisposable
{
    /// <summary>The default directory for regions: memory that every process can map.</summary>
    public const string DefaultDirectory = "/dev/shm";

    private readonly object _gate;
    private readonly ChangeScope _changes;
    private readonly Region _region;
    private readonly Superblock _super;
    private readonly BlockAllocator _allocator;
    private RegionPicture _picture; // replaced only by the first re-read, when a damaged log stops a rebuild of free space
    /// <summary>Runs reserved for base images being written by this process (given back on failure or close).</summary>
    private readonly List<(long Offset, long Pages)> _compactionRuns = [];
    private int _slotHint = 1;
    private readonly Rec _rec = new();
    private bool _disposed;

    private Store(Region region, Superblock super, BlockAllocator allocator, bool repair, bool fence = false)
    {
        _region = region;
        _super = super;
        _allocator = allocator;
        _changes = new ChangeScope(region, (super.ProcessTableOffset, (int)super.ProcessSlots, (super.Flags & Superblock.FlagSharedAcrossKernels) != 0), Reread, ReclaimParked, ThrowIfUnusable);
        _gate = _changes.Gate;
        _picture = NewPicture(repair, fence, rebuildSpace: true);
    }

    /// <summary>A picture of the region for this store (see <see cref="Reread"/> for why there may be a second).</summary>
    private RegionPicture NewPicture(bool repair, bool fence, bool rebuildSpace)
    {
        long lastBoot = Volatile.Read(ref _region.Word(FormatConstants.ControlOffset + ControlBlock.BootTagOffset));
        // A regular file last opened by another boot of this machine (or another kernel) may hold records torn
        // by a crash of the machine; memory, and a file this kernel already had open, cannot.
        return new RegionPicture(_region, _super, _allocator, _region.Kind == RegionKind.File && lastBoot != ProcessIdentity.BootTag)
        {
            RepairDamage = repair,
            FenceDamage = fence,
            MayRebuildSpace = rebuildSpace,
        };
    }

    /// <summary>True when the region has format version 3 (or later): only then are its records (open files kept after their last name goes, exchanging renames, access times, special files) written.</summary>
    internal bool WritesVersion3 => _super.FormatVersion >= 3;

    /// <summary>The region file's path.</summary>
    public string Path => _region.Path;

    /// <summary>What backs the region.</summary>
    public RegionKind Kind => _region.Kind;

    /// <summary>What opening the region found and repaired.</summary>
    public RecoveryReport Recovery { get; private set; }

    /// <summary>How long a change waits for the region lock before failing with <see cref="StoreBusyException"/>.</summary>
    public TimeSpan LockTimeout
    {
        get => _changes.Lock.Timeout;
        set => _changes.Lock.Timeout = value;
    }

    /// <summary>A fresh path under <see cref="DefaultDirectory"/> for a region named <paramref name="name"/>.</summary>
    public static string DefaultPath(string name) => System.IO.Path.Combine(DefaultDirectory, name + ".daxfs");

    internal Region Region => _region;

    /// <summary>The store's part in the region's coordination (lock, process table, leases, change counter).</summary>
    internal ChangeScope Coordination => _changes;


    // ------------------------------------------------------------------ create

    /// <summary>
    /// Creates a region at <paramref name="path"/> holding the tree collected by <paramref name="image"/> as its
    /// base image, with an empty main branch, and opens it.
    /// </summary>
    public static Store Create(string path, BaseImageBuilder image, StoreOptions? options = null) =>
        Build(path, image, options, publish: true, out _)!;

    /// <summary>
    /// Builds a region for <paramref name="path"/> as <see cref="Create"/> does, but leaves it under its temporary name
    /// beside the path (<see cref="UnpublishedRegion.BuildingPath"/>), to be opened and filled there and put in place
    /// by <see cref="UnpublishedRegion.Publish"/>; disposed unpublished, it is deleted. While it is held, the next
    /// build of the same path does not take it for abandoned; once its holder dies, that build removes it (as it
    /// removes what a killed <see cref="Create"/> left). Regular files only, not DAX devices.
    /// </summary>
    public static UnpublishedRegion CreateUnpublished(string path, BaseImageBuilder image, StoreOptions? options = null)
    {
        Build(path, image, options, publish: false, out var unpublished);
        return unpublished!;
    }

    private static Store? Build(string path, BaseImageBuilder image, StoreOptions? options, bool publish, out UnpublishedRegion? unpublished)
    {
        unpublished = null;
        ArgumentNullException.ThrowIfNull(path);
        ArgumentNullException.ThrowIfNull(image);
        options ??= new StoreOptions();
        if (options.BranchSlots < 2 || options.BranchSlots > 1 << 20)
            throw new ArgumentOutOfRangeException(nameof(options), $"BranchSlots must be between 2 and {1 << 20}, not {options.BranchSlots}");
        if (options.Capacity < 0)
            throw new ArgumentOutOfRangeException(nameof(options), "Capacity must not be negative");
        if (options.ProcessSlots < 2 || options.ProcessSlots > ProcessEntry.MaxSlots)
            throw new ArgumentOutOfRangeException(nameof(options), $"ProcessSlots must be between 2 and {ProcessEntry.MaxSlots}, not {options.ProcessSlots}");

        const long page = FormatConstants.PageSize;
        long processTable = 2 * page;
        long processBytes = FormatConstants.AlignUp((long)options.ProcessSlots * ProcessEntry.Size, page);
        long slotTable = processTable + processBytes;
        long slotBytes = FormatConstants.AlignUp((long)options.BranchSlots * BranchSlot.Size, page);
        long bitmap = slotTable + slotBytes;
        long estimate = image.EstimateSize();
        long capacity = options.Capacity;
        if (Region.KindOf(path) == RegionKind.DaxDevice)
        {
            // A device region always spans the whole device.
            long device = Region.DaxDeviceSize(path);
            if (capacity != 0 && capacity != device)
                throw new ArgumentOutOfRangeException(nameof(options), $"{path}: a device region spans the whole device ({device} bytes); leave Capacity at 0");
            capacity = device;
        }
        // The bitmap covers every page the region may ever have: the capacity (or an estimate of it) and the
        // growth Resize may add later, which costs a bit per page and address space only.
        long guess = capacity > 0 ? capacity : bitmap + estimate + (1L << 30) + (1L << 20);
        if (options.MaxCapacity < 0 || options.MaxCapacity != 0 && options.MaxCapacity < guess)
            throw new ArgumentOutOfRangeException(nameof(options), $"the maximum capacity (MaxCapacity, mkfs --max-capacity) {options.MaxCapacity} is below the capacity {guess}");
        bool onDax = Region.KindOf(path) == RegionKind.DaxDevice;
        long coverage = onDax ? guess : options.MaxCapacity != 0 ? options.MaxCapacity : Math.Max(2 * guess, 16L << 30);
        if (!onDax)
        {
            Region.RemoveAbandonedBuilds(path); // what killed builds of this path left (on tmpfs, memory): before the room is counted
            CheckRoom(path, guess, options.Sparse);
        }
        long bitmapBytes = FormatConstants.AlignUp((coverage / page + 7) / 8 + 8, page);
        long baseOffset = bitmap + bitmapBytes;
        const long minArena = 1L << 20;
        long minimum = FormatConstants.AlignUp(baseOffset + estimate + minArena, page);
        if (capacity == 0)
            capacity = FormatConstants.AlignUp(baseOffset + estimate + (1L << 30), page);
        if (capacity < minimum)
            throw new ArgumentOutOfRangeException(nameof(options),
                $"{path}: capacity {capacity} bytes is too small; this tree needs at least {minimum} bytes ({minimum >> 20} MiB), an allocation bitmap of {bitmapBytes} bytes for growth up to {coverage} bytes included");
        capacity = capacity / page * page;

        // A file region is built under a temporary name beside the path and renamed over it only once whole: a
        // failed or interrupted build leaves any region already there as it was (and processes mapping it never
        // see it shrink), and never a half-built file under the region's name.
        bool onDevice = Region.KindOf(path) == RegionKind.DaxDevice;
        if (onDevice && !publish)
            throw new NotSupportedException($"{path}: a device region is built in place; it cannot be built unpublished");
        if (!onDevice && !options.Overwrite && (File.Exists(path) || new FileInfo(path).LinkTarget is not null))
            Region.RefuseExisting(path);
        string building = onDevice ? path : System.IO.Path.Combine(System.IO.Path.GetDirectoryName(System.IO.Path.GetFullPath(path)) ?? ".",
            $".{System.IO.Path.GetFileName(path)}.building-{Guid.NewGuid():N}");
        var region = Region.Create(building, capacity, overwrite: false, reserve: !options.Sparse);
        if (!onDevice && !region.TryLock(Region.BuildingLockByte))
        {
            region.Dispose();
            throw new IOException($"{building}: cannot lock the region being built");
        }
        try
        {
            capacity = region.Length / page * page;
            long baseLength = image.WriteTo(region, baseOffset, capacity - minArena, options.Progress);
            long arena = FormatConstants.AlignUp(baseOffset + baseLength, page);
            if (arena >= capacity)
                throw new ArgumentOutOfRangeException(nameof(options), $"{path}: capacity {capacity} leaves no room for the delta arena");

            region.WritableSpan(FormatConstants.ControlOffset, FormatConstants.PageSize).Clear();
            region.WritableSpan(processTable, (int)processBytes).Clear(); // a device keeps old bytes: start the table empty
            ref var control = ref region.At<ControlBlock>(FormatConstants.ControlOffset);
            control.Magic = ControlBlock.MagicValue;
            control.NextLogId = 2; // main's log is 1
            control.BootTag = ProcessIdentity.BootTag;

            region.WritableSpan(slotTable, (int)slotBytes).Clear();
            ref var main = ref region.At<BranchSlot>(slotTable);
            main.State = (uint)SlotState.Live;
            main.Generation = 1;
            main.LogId = 1;
            main.CreatedNs = BaseImageBuilder.NowNs();
            WriteName(ref main, "main");
            main.IdentityCrc = BranchSlot.ComputeIdentityCrc(in main);

            var allocator = new BlockAllocator(region, bitmap, bitmapBytes, arena, capacity - arena);
            allocator.Rebuild([]);

            ref var sb = ref region.At<Superblock>(FormatConstants.SuperblockOffset);
            sb = default;
            sb.FormatVersion = FormatConstants.Version;
            sb.PageSize = (uint)page;
            sb.Capacity = capacity;
            sb.ControlOffset = FormatConstants.ControlOffset;
            sb.ProcessTableOffset = processTable;
            sb.ProcessSlots = (uint)options.ProcessSlots;
            sb.ProcessEntrySize = ProcessEntry.Size;
            sb.Flags = options.SharedAcrossKernels ? Superblock.FlagSharedAcrossKernels : 0;
            sb.SlotTableOffset = slotTable;
            sb.SlotCount = (uint)options.BranchSlots;
            sb.SlotSize = BranchSlot.Size;
            sb.BitmapOffset = bitmap;
            sb.BitmapLength = bitmapBytes;
            sb.BaseOffset = baseOffset;
            sb.BaseLength = baseLength;
            sb.ArenaOffset = arena;
            sb.ArenaLength = capacity - arena;
            sb.CreatedNs = BaseImageBuilder.NowNs();
            // Everything else reaches the file before the magic does: a crash mid-build leaves no valid region.
            region.Flush(0, region.Length);
            sb.Magic = Superblock.MagicValue;
            sb.Crc = Crc32C.Compute(region.Span(0, 252));
            region.Flush(0, page);
        }
        catch
        {
            region.Dispose();
            if (!onDevice)
            {
                try { File.Delete(building); } catch (IOException) { }
            }
            throw;
        }
        region.Dispose();
        if (!publish)
        {
            // The build lock passes from the builder's open to the holder's (two opens of one file cannot both hold it).
            var hold = Region.HoldBuilding(building);
            if (hold is null)
            {
                try { File.Delete(building); } catch (IOException) { }
                throw new IOException($"{building}: cannot hold the region being built");
            }
            unpublished = new UnpublishedRegion(building, path, options.Overwrite, hold);
            return null;
        }
        if (!onDevice)
        {
            try
            {
                Region.Replace(building, path, options.Overwrite);
            }
            catch
            {
                try { File.Delete(building); } catch (IOException) { }
                throw;
            }
        }
        return Open(path);
    }

    /// <summary>Refuses, before anything is written, a capacity the file system holding <paramref name="path"/> cannot back.</summary>
    private static void CheckRoom(string path, long capacity, bool sparse)
    {
        string dir = System.IO.Path.GetDirectoryName(System.IO.Path.GetFullPath(path)) ?? "/";
        if (!Directory.Exists(dir))
            return; // the create names the missing directory
        long free = Libc.RoomFor(dir, Region.KindOf(path) == RegionKind.Memory), total = Libc.TotalBytes(dir);
        long existing = File.Exists(path) ? new FileInfo(path).Length : 0; // a region replaced gives its space back
        if (!sparse && free >= 0 && capacity > free + existing)
            throw new IOException($"{path}: a capacity of {capacity} bytes ({capacity >> 20} MiB) is more than the {free} bytes ({free >> 20} MiB) free on the file system holding {dir}: choose a smaller --capacity, or another place");
        if (sparse && total > 0 && capacity > total)
            throw new IOException($"{path}: a capacity of {capacity} bytes ({capacity >> 20} MiB) is more than the whole file system holding {dir} ({total} bytes, {total >> 20} MiB), sparse or not");
    }

    private static unsafe void WriteName(ref BranchSlot slot, string name)
    {
        var bytes = Encoding.UTF8.GetBytes(name);
        fixed (byte* p = slot.Name)
        {
            var dst = new Span<byte>(p, FormatConstants.MaxBranchName);
            dst.Clear();
            bytes.CopyTo(dst);
        }
        slot.NameLength = (uint)bytes.Length;
    }

    // ------------------------------------------------------------------ open

    /// <summary>
    /// Opens an existing region, validating every structure before use and recovering from a crash: stale
    /// branches are marked invalidated, space that nothing reaches is returned to the arena, and, only on a
    /// regular file opened for the first time since a reboot, a log tail torn by the machine's crash is cut
    /// back to its longest valid prefix. Anywhere else a log that fails validation is damage, and nothing is cut.
    /// </summary>
    /// <exception cref="CorruptionException">A structure failed validation; names it, its offset and what depends on it.</exception>
    /// <exception cref="FormatVersionException">The region has another format version.</exception>
    public static Store Open(string path) => Open(path, TimeSpan.FromSeconds(30));

    /// <summary>
    /// Opens an existing region as <see cref="Open(string)"/> does, waiting at most <paramref name="lockTimeout"/>
    /// for the region lock; <see cref="LockTimeout"/> starts at that value too (set it for later changes).
    /// </summary>
    /// <exception cref="StoreBusyException">The region lock stayed held that long, or every process-table entry is held.</exception>
    public static Store Open(string path, TimeSpan lockTimeout) => Open(Region.Open(path ?? throw new ArgumentNullException(nameof(path))), lockTimeout, repair: false);

    /// <summary>
    /// Opens a region read-only, as a snapshot: the file is opened for reading and mapped privately, so nothing
    /// this store does reaches it (what opening derives stays in this process), and nothing is repaired. The
    /// snapshot holds the region lock shared while it is open: changes by other stores wait until it is
    /// disposed, so its picture stays whole. Reads work; every change throws <see cref="InvalidOperationException"/>.
    /// <c>daxfs verify</c> uses it.
    /// </summary>
    /// <exception cref="CorruptionException">A structure failed validation; names it, its offset and what depends on it.</exception>
    /// <exception cref="StoreBusyException">A change held the region lock for longer than <paramref name="lockTimeout"/>.</exception>
    public static Store OpenSnapshot(string path, TimeSpan lockTimeout) => OpenSnapshot(path, lockTimeout, repair: false);

    /// <summary>
    /// As <see cref="OpenSnapshot(string, TimeSpan)"/>; with <paramref name="repair"/>, the snapshot shows the
    /// region as <see cref="OpenRepairing"/> would leave it (its <see cref="Recovery"/> lists the repairs), while
    /// the file stays untouched: a repair's dry run, and the source of what it salvages first.
    /// </summary>
    public static Store OpenSnapshot(string path, TimeSpan lockTimeout, bool repair)
        => Open(Region.OpenSnapshot(path ?? throw new ArgumentNullException(nameof(path))), lockTimeout, repair);

    /// <summary>
    /// Opens a damaged region for an explicit repair: every log of its own that fails validation is cut back to
    /// its last valid record, whether or not that can be a torn write, and what depended on the cut part is
    /// dropped (for main: the later versions and their tags; for a branch: its later records, and the branches
    /// forked from it are invalidated). <see cref="Recovery"/>.<see cref="RecoveryReport.Repairs"/> lists each cut.
    /// Nothing is cut while another process has the region open (the open then fails as <see cref="Open(string)"/>
    /// would). Damage inside a log that a version or merge brought in, and damaged base data, are not repaired.
    /// Salvage first: <see cref="OpenSnapshot(string, TimeSpan, bool)"/> with repair shows what will remain, readable.
    /// </summary>
    public static Store OpenRepairing(string path) => Open(Region.Open(path ?? throw new ArgumentNullException(nameof(path))), TimeSpan.FromSeconds(30), repair: true);

    /// <summary>
    /// Opens a region to serve what is intact even when some of it is damaged (the mount uses it): a branch
    /// whose log, or a log merged into it, fails validation is fenced instead of failing the open, and so is
    /// every branch forked from it. Reading a fenced branch, or a file of it, throws the
    /// <see cref="CorruptionException"/> naming the damage; main, the other branches and main's intact past
    /// versions read as usual. Damage in main's own log fences main and every branch built on its current
    /// state. Nothing is cut or freed, and while anything is fenced the store refuses every change (the damage
    /// stays as found, for <c>daxfs verify</c> and <c>daxfs repair</c>). <see cref="Fenced"/> lists what it found,
    /// including damage that later re-reads find in logs other processes append to.
    /// Damage outside the logs (the superblock, the slot table, the base image's structure) still fails the open.
    /// </summary>
    /// <exception cref="CorruptionException">A structure outside the branch logs failed validation.</exception>
    public static Store OpenFenced(string path) => Open(Region.Open(path ?? throw new ArgumentNullException(nameof(path))), TimeSpan.FromSeconds(30), repair: false, fence: true);

    /// <summary>The damage a store opened with <see cref="OpenFenced"/> fenced, one entry per damaged log (empty when the region is intact).</summary>
    public IReadOnlyList<DamageFound> Fenced
    {
        get
        {
            lock (_gate)
                return _picture.Fenced.Select(e => new DamageFound(e.Structure, e.Offset, e.Detail, e.Consequences ?? "")).ToArray();
        }
    }

    private static Store Open(Region region, TimeSpan lockTimeout, bool repair, bool fence = false)
    {
        try
        {
            var sb = ValidateSuperblock(region);
            ref readonly var control = ref region.At<ControlBlock>(sb.ControlOffset);
            if (control.Magic != ControlBlock.MagicValue)
                ThrowHelper.Corrupt("control block", sb.ControlOffset, "bad magic");
            long capacity = sb.Capacity;
            if (sb.FormatVersion >= FormatConstants.SpaceVersion && region.Kind != RegionKind.DaxDevice)
            {
                // The region may have grown since it was made (the control block's capacity word), and may grow while
                // open: map as much address space as its bitmap covers, so growth never moves the mapping.
                long coverage = sb.BitmapLength * 8 * FormatConstants.PageSize;
                long grown = Volatile.Read(ref region.Word(FormatConstants.ControlOffset + ControlBlock.CapacityOffset));
                long mapped = Math.Max(coverage, region.Mapped);
                if (grown != 0)
                {
                    RegionPicture.CheckGrownCapacity(region, in sb, grown, mapped);
                    capacity = grown;
                }
                region.MapFor(mapped, capacity);
            }
            var allocator = new BlockAllocator(region, sb.BitmapOffset, sb.BitmapLength, sb.ArenaOffset, capacity - sb.ArenaOffset);
            var store = new Store(region, sb, allocator, repair, fence);
            store.LockTimeout = lockTimeout;
            store._changes.Join();
            return store;
        }
        catch
        {
            region.Dispose();
            throw;
        }
    }

    private static Superblock ValidateSuperblock(Region region)
    {
        if (region.Length < FormatConstants.PageSize)
            throw new NotARegionException(region.Path);
        var sb = region.At<Superblock>(0);
        if (sb.Magic != Superblock.MagicValue)
        {
            // A region whose superblock alone is damaged still has its control block: that is damage (exit 3). A file
            // with neither is not a region at all (a typo'd path, another file): said so.
            bool control = region.Length >= FormatConstants.ControlOffset + 8 && region.At<ulong>(FormatConstants.ControlOffset) == ControlBlock.MagicValue;
            if (!control)
                throw new NotARegionException(region.Path);
            ThrowHelper.Corrupt("superblock", 0, "bad magic: the control block is a region's, so its superblock is damaged (or its creation did not finish)");
        }
        uint crc = Crc32C.Compute(region.Span(0, 252));
        if (crc != sb.Crc)
            ThrowHelper.Corrupt("superblock", 0, $"checksum mismatch (stored {sb.Crc:X8}, computed {crc:X8})");
        if (sb.Capacity > region.Length)
            ThrowHelper.Corrupt("region file", region.Length, $"the file holds {region.Length} bytes but its superblock records a capacity of {sb.Capacity}: it was truncated, and what lay past byte {region.Length} is gone");
        if (region.Length < 3 * FormatConstants.PageSize)
            ThrowHelper.Corrupt("superblock", 0, $"region of {region.Length} bytes is too small to hold a region header");
        if (sb.FormatVersion < FormatConstants.OldestVersion || sb.FormatVersion > FormatConstants.Version)
            throw new FormatVersionException(sb.FormatVersion, FormatConstants.Version);
        const long page = FormatConstants.PageSize;
        if (sb.PageSize != page || sb.SlotSize != BranchSlot.Size || sb.ProcessEntrySize != ProcessEntry.Size)
            ThrowHelper.Corrupt("superblock", 0, $"page size {sb.PageSize}, slot size {sb.SlotSize} or process entry size {sb.ProcessEntrySize} unsupported");
        // Version 4 on, the file may hold more than the superblock's capacity: the region grew (or was growing).
        if (sb.FormatVersion < FormatConstants.SpaceVersion ? sb.Capacity != region.Length / page * page : sb.Capacity % page != 0)
            ThrowHelper.Corrupt("superblock", 16, $"capacity {sb.Capacity} does not match the file's {region.Length} bytes");
        if (sb.ControlOffset != FormatConstants.ControlOffset)
            ThrowHelper.Corrupt("superblock", 24, "control block offset");
        if (sb.SlotCount < 2 || sb.SlotCount > 1 << 20)
            ThrowHelper.Corrupt("superblock", 40, $"slot count {sb.SlotCount} out of range");
        if (sb.ProcessSlots < 2 || sb.ProcessSlots > ProcessEntry.MaxSlots)
            ThrowHelper.Corrupt("superblock", 112, $"process table of {sb.ProcessSlots} entries out of range");
        if ((sb.Flags & ~Superblock.FlagSharedAcrossKernels) != 0)
            ThrowHelper.Corrupt("superblock", 120, $"unknown flags {sb.Flags:X8}");
        // The areas follow each other in a fixed order, page-aligned, inside the capacity.
        long at = 2 * page;
        Area(ref at, sb.ProcessTableOffset, (long)sb.ProcessSlots * ProcessEntry.Size, "process table", sb.Capacity);
        Area(ref at, sb.SlotTableOffset, (long)sb.SlotCount * BranchSlot.Size, "slot table", sb.Capacity);
        Area(ref at, sb.BitmapOffset, sb.BitmapLength, "bitmap", sb.Capacity);
        Area(ref at, sb.BaseOffset, sb.BaseLength, "base image", sb.Capacity);
        Area(ref at, sb.ArenaOffset, sb.ArenaLength, "arena", sb.Capacity);
        if (sb.ArenaOffset + sb.ArenaLength != sb.Capacity)
            ThrowHelper.Corrupt("superblock", 88, "arena does not end at the capacity");
        return sb;
    }

    private static void Area(ref long at, long offset, long length, string name, long capacity)
    {
        if (offset < at || offset % FormatConstants.PageSize != 0 || length < 0 || offset > capacity || length > capacity - offset)
            ThrowHelper.Corrupt("superblock", 0, $"{name} [{offset}, +{length}) misplaced (expected at or after {at}, page-aligned, inside {capacity})");
        at = offset + length;
    }

    internal long SlotOffset(int slot) => _picture.SlotOffset(slot);

    internal ref BranchSlot SlotAt(int slot) => ref _picture.SlotAt(slot);

    internal LogCursor Cursor(LogRef r) => _picture.Cursor(r);

    // ------------------------------------------------------------------ lifecycle

    /// <summary>How long <see cref="Dispose"/> waits for this store's open read leases to end.</summary>
    public TimeSpan LeaseWaitOnDispose { get; set; } = TimeSpan.FromSeconds(5);

    /// <summary>
    /// Closes the region. Spans handed out earlier must not be used afterwards. If a read lease of this
    /// store is still open, waits up to <see cref="LeaseWaitOnDispose"/> for it to end; the mapping is never
    /// closed under an open lease.
    /// </summary>
    /// <exception cref="InvalidOperationException">A read lease stayed open: the store is left open (dispose it again after the lease ends).</exception>
    public void Dispose()
    {
        // Waits outside the gate (a thread holding a lease may need the gate to finish its read); from here on no
        // lease can begin, so none is open when the mapping goes.
        if (!_changes.Leases.Close(LeaseWaitOnDispose))
            throw new InvalidOperationException($"{_region.Path}: {_changes.Leases.Open} read lease(s) of this store are still open after {LeaseWaitOnDispose.TotalSeconds:0.#} s; end them before disposing the store (its mapping stays open until then)");
        lock (_gate)
        {
            if (_disposed) return;
            _disposed = true;
            try
            {
                if (!BackingIntact())
                    return; // truncated under us: touching the region would raise SIGBUS; closing drops our locks
                // Give back blocks reserved but never linked, and parked space no lease still needs; what cannot
                // be given back now (the lock is busy, or another process's lease still sees it) is reclaimed by
                // the next open that finds the region with no other process.
                _changes.Leave(TimeSpan.FromSeconds(2), () =>
                {
                    foreach (var s in _picture.Slots)
                        if (s is not null && s.Status == BranchState.StatusLive)
                            s.Log.ReleaseSpare();
                    foreach (var (offset, pages) in _compactionRuns)
                        _allocator.Free(offset, pages);
                    _compactionRuns.Clear();
                });
            }
            finally
            {
                _region.Dispose();
            }
        }
    }

    private bool BackingIntact()
    {
        try { _region.CheckBacking(); return true; }
        catch (CorruptionException) { return false; }
    }

    internal void ThrowIfUnusable()
    {
        ObjectDisposedException.ThrowIf(_disposed, this);
        _changes.ThrowIfPoisoned();
    }

    /// <summary>Enters a change: the in-process gate, the region lock, and a re-read if another process changed the region. Pair with <see cref="ExitChange"/>.</summary>
    internal void EnterChange()
    {
        _changes.Enter();
        if (_picture.Fenced.Count > 0)
        {
            var first = _picture.Fenced[0];
            _changes.Exit(changed: false);
            throw new CorruptionException(first.Structure, first.Offset, first.Detail,
                $"this store serves what is intact and refuses every change while the region is damaged ({_picture.Fenced.Count} damaged log(s)); run daxfs verify, then daxfs repair");
        }
    }

    /// <summary>Leaves a change; <paramref name="changed"/> tells other processes to re-read the region.</summary>
    internal void ExitChange(bool changed)
    {
        _changes.Exit(changed);
        RunDueClean();
    }

    /// <inheritdoc cref="Region.CheckBacking"/>
    internal void CheckBacking() => _region.CheckBacking();

    /// <inheritdoc cref="ChangeScope.PoisonIfBroken"/>
    internal bool PoisonIfBroken(Exception ex) => _changes.PoisonIfBroken(ex);

    /// <inheritdoc cref="ChangeScope.EnsureCurrent"/>
    internal void EnsureCurrent() => _changes.EnsureCurrent();

    /// <inheritdoc cref="ChangeScope.Stamp"/>
    internal long ChangeStamp() => _changes.Stamp();

    /// <inheritdoc cref="ChangeScope.UnchangedSince"/>
    internal bool UnchangedSince(long stamp) => _changes.UnchangedSince(stamp);

    /// <summary>Copies tried without a lease before a copying read takes one.</summary>
    internal const int OptimisticCopies = 3;

    /// <summary>
    /// Runs a change under the in-process lock and the region lock. An unexpected failure inside poisons
    /// the store: later calls fail instead of writing on top of a half-done change.
    /// </summary>
    internal T Locked<T>(Func<T> change)
    {
        EnterChange();
        try
        {
            return change();
        }
        catch (Exception ex) when (PoisonIfBroken(ex))
        {
            throw;
        }
        finally
        {
            ExitChange(changed: true);
        }
    }

    internal void Locked(Action change) => Locked(() => { change(); return 0; });

    /// <summary>Brings the picture up to date with the region (caller holds the gate and the region lock); the first time, keeps what it found.</summary>
    private void Reread(bool alone)
    {
        RecoveryReport? report;
        try
        {
            report = _picture.Sync(alone, _changes.Lock.TookOverFromDead);
        }
        catch (CorruptionException e) when (_picture.FullForSpace && !_picture.Opened)
        {
            // The first read went through every log to rebuild free space, and a damaged one stopped it. Rebuilding is
            // only reclaiming leaked space: read what is needed instead, and leave the space (and the audit word) for
            // later. The damaged branch answers with its damage when it is read.
            _picture = NewPicture(_picture.RepairDamage, _picture.FenceDamage, rebuildSpace: false);
            report = _picture.Sync(alone, _changes.Lock.TookOverFromDead) is { } r ? r with { SpaceNotRebuilt = e.Message } : null;
        }
        if (report is { } first)
        {
            Recovery = first;
            ref long boot = ref _region.Word(FormatConstants.ControlOffset + ControlBlock.BootTagOffset);
            if (_region.Kind == RegionKind.File && Volatile.Read(ref boot) != ProcessIdentity.BootTag)
            {
                // From now on a record that fails validation is damage, not a torn write: this boot wrote it.
                Volatile.Write(ref boot, ProcessIdentity.BootTag);
                _region.Flush(FormatConstants.ControlOffset, FormatConstants.PageSize);
            }
        }
    }

    /// <summary>Returns parked space no lease can still see to the bitmap; the number of blocks returned.</summary>
    private int ReclaimParked()
    {
        int n = 0;
        foreach (var (offset, pages) in _changes.Leases.TakeReclaimable())
        {
            _allocator.Free(offset, pages);
            n++;
            FaultPoints.Hit("reclaim.freeing");
        }
        return n;
    }

    /// <summary>
    /// Begins a read lease: spans from reads stay valid until it is disposed, even if their branch is
    /// aborted, discarded or invalidated meanwhile (their space is reused only after the lease ends).
    /// </summary>
    /// <remarks>SAFETY: without a lease, a span is valid only until the region next changes (its branch can end, or its log be cleaned).</remarks>
    public ReadLease BeginRead() => new(BeginReadScope());

    /// <summary>As <see cref="BeginRead"/>, without allocating (see <see cref="LeaseScope"/>).</summary>
    internal LeaseScope BeginReadScope()
    {
        ThrowIfUnusable();
        EnsureCurrent();
        return new LeaseScope(_changes.Leases, _changes.Leases.Begin());
    }

    /// <summary>Space and counts of the region now.</summary>
    public RegionUsage Usage
    {
        get
        {
            ReadAll(); // it counts the live branches
            lock (_gate)
            {
                ThrowIfUnusable();
                int live = _picture.Slots.Count(s => s is not null && s.Status == BranchState.StatusLive);
                var image = _picture.CurrentBase!;
                return new RegionUsage(_region.Path, _region.Kind, _region.Length, image.EndOffset - image.Offset, _allocator.ArenaBytes,
                    _allocator.FreeBytes, _changes.Leases.ParkedPages * FormatConstants.PageSize, image.InodeCount, live, (int)_super.SlotCount, _picture.Versions.Count)
                { MaxCapacity = MaxCapacity, ReserveBytes = _allocator.ReservePages * FormatConstants.PageSize };
            }
        }
    }

    /// <summary>The versions of main, oldest first.</summary>
    public IReadOnlyList<VersionInfo> Versions
    {
        get { EnsureCurrent(); lock (_gate) { ThrowIfUnusable(); return _picture.Versions.ToArray(); } }
    }

    /// <summary>Main's current version (0 before the first commit); cheaper than <see cref="Versions"/>, which copies the list.</summary>
    public long CurrentVersion
    {
        get { EnsureCurrent(); lock (_gate) { ThrowIfUnusable(); return _picture.CurrentVersion; } }
    }
}
