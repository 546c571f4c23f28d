using System.Text;
using Daxfs.Branching.Branching;
using Daxfs.Branching.Format;
using Daxfs.Branching.Index;
using Daxfs.Branching.Log;
using Daxfs.Branching.Media;

namespace Daxfs.Branching.Replay;

/// <summary>
/// One store's picture of the region, rebuilt from the logs: every live and kept branch's state (view, log
/// position, family), main's versions and their views, tags, and the base image history starts from; and
/// the re-read that brings it up to date with what other processes appended (see <see cref="Sync"/>).
/// </summary>
/// <remarks>
/// Changed only under the store's gate and the region lock (the re-read) or under the gate (a change of this
/// store); readers take the gate. Nothing here is shared with other processes except through the region.
/// </remarks>
internal sealed partial class RegionPicture
{
    private readonly Region _region;
    private readonly Superblock _super;
    private BaseImage? _base;
    private readonly BlockAllocator _allocator;

    /// <param name="region">The mapped region.</param>
    /// <param name="super">Its validated superblock.</param>
    /// <param name="allocator">The arena's allocator.</param>
    /// <param name="tornTailsPossible">True only for a regular file opened for the first time since a machine crash could have torn its last writes.</param>
    public RegionPicture(Region region, Superblock super, BlockAllocator allocator, bool tornTailsPossible)
    {
        TornTailsPossible = tornTailsPossible;
        _region = region;
        _super = super;
        _allocator = allocator;
        Slots = new BranchState?[super.SlotCount];
    }

    /// <summary>
    /// The region's original base image, opened (and validated) the first time it is needed: on a region of
    /// format version 4 whose main history starts from a compacted image, its pages are arena space and hold
    /// other bytes, so it is never opened.
    /// </summary>
    private BaseImage Original => _base ??= BaseImage.Open(_region, _super.BaseOffset, _super.BaseLength);

    /// <summary>True when the region gives the original base image's pages to the arena once compaction replaced it (format version 4 on).</summary>
    public bool ReusesOriginalBase => _super.FormatVersion >= FormatConstants.SpaceVersion;

    /// <summary>True while main's history starts from the region's original base image.</summary>
    public bool OnOriginalBase => CurrentBase is null || ReferenceEquals(CurrentBase, _base);

    /// <summary>The original base image's run of pages (from its page-aligned start up to the arena).</summary>
    public (long Offset, long Pages) OriginalRun => (_super.BaseOffset, (_super.ArenaOffset - _super.BaseOffset) / FormatConstants.PageSize);

    /// <summary>
    /// Where log blocks and compacted images may lie: the arena, and on a version 4 region whose original base image
    /// was replaced, the pages that image held too.
    /// </summary>
    private long AreaStart(bool retired) => retired && ReusesOriginalBase ? _super.BaseOffset : _super.ArenaOffset;

    /// <summary>
    /// Version 4 on: takes in a capacity another process grew the region to (the control block's capacity word).
    /// Checked against the bitmap's coverage and the file's length before use.
    /// </summary>
    private void PickUpCapacity()
    {
        if (_super.FormatVersion < FormatConstants.SpaceVersion || _region.Kind == RegionKind.DaxDevice)
            return;
        long grown = Volatile.Read(ref _region.Word(FormatConstants.ControlOffset + ControlBlock.CapacityOffset));
        if (grown == 0 || grown <= _region.Length)
            return;
        CheckGrownCapacity(_region, _super, grown, _region.Mapped);
        _region.Grow(grown);
        _allocator.SetBounds(_allocator.ArenaOffset, grown);
    }

    /// <summary>Validates the control block's capacity word (format version 4 on) before a region takes it.</summary>
    public static void CheckGrownCapacity(Region region, in Superblock super, long grown, long mapped)
    {
        long at = FormatConstants.ControlOffset + ControlBlock.CapacityOffset;
        long coverage = super.BitmapLength * 8 * FormatConstants.PageSize;
        if (grown % FormatConstants.PageSize != 0 || grown < super.Capacity || grown > coverage || grown > mapped)
            ThrowHelper.Corrupt("control block", at, $"capacity word {grown} out of range: it must be a multiple of 4096 between the superblock's capacity {super.Capacity} and the {Math.Min(coverage, mapped)} bytes the bitmap and mapping cover");
        long file = region.FileLength;
        if (file < grown)
            ThrowHelper.Corrupt("region file", file, $"{region.Path} holds {file} bytes but the region grew to {grown}: it was truncated, and what lay past byte {file} is gone");
    }

    /// <summary>
    /// True when a record can have been torn by a machine crash: the region is a regular file and the kernel
    /// that last opened it is not this one (a reboot since). Only then is a log that fails validation past its
    /// synced tail cut back; anywhere else a failure is damage.
    /// </summary>
    public bool TornTailsPossible { get; }

    /// <summary>
    /// Set only by an explicit repair: a log of its own that fails validation is cut back to its last valid
    /// record even where that is not a torn write (what depends on the cut part is listed in <see cref="Repairs"/>
    /// and dropped: the branches forked from a cut branch are invalidated). Damage inside a merged log is still
    /// an error.
    /// </summary>
    public bool RepairDamage { get; init; }

    /// <summary>
    /// Set by a fencing open (<see cref="Store.OpenFenced"/>): a branch whose own log, or a log merged into it,
    /// fails validation is fenced (<see cref="BranchState.Fence"/>) with the branches forked from it, instead of
    /// failing the whole open, and nothing is cut. While anything is fenced, free space is never rebuilt (blocks
    /// past the damage may still be salvageable) and the store refuses changes.
    /// </summary>
    public bool FenceDamage { get; init; }

    /// <summary>The damage a fencing open found, one entry per fenced log (branches fenced for their parent are not repeated).</summary>
    public List<CorruptionException> Fenced { get; } = [];

    /// <summary>What an explicit repair cut, and what that dropped.</summary>
    public List<string> Repairs { get; } = [];

    /// <summary>The failures an explicit repair cut at (a repairing snapshot reports them as damage).</summary>
    public List<CorruptionException> Damaged { get; } = [];

    /// <summary>Slots of branches whose log a repair cut: the branches forked from them lose their base.</summary>
    private readonly HashSet<int> _cutSlots = [];

    /// <summary>Live branches by slot (null: free, or not live).</summary>
    public BranchState?[] Slots { get; }

    /// <summary>Live branches by name.</summary>
    public Dictionary<string, BranchState> ByName { get; } = new(StringComparer.Ordinal);

    /// <summary>Names of invalidated branches (slot state Invalidated or Kept) → slot.</summary>
    public Dictionary<string, int> InvalidatedNames { get; } = new(StringComparer.Ordinal);

    /// <summary>Branches a commit to main invalidated with their logs kept (slot state Kept), by slot.</summary>
    public Dictionary<int, BranchState> Kept { get; } = [];

    /// <summary>The versions of main, oldest first.</summary>
    public List<VersionInfo> Versions { get; } = [];

    public long SlotOffset(int slot) => _super.SlotTableOffset + (long)slot * BranchSlot.Size;

    public ref BranchSlot SlotAt(int slot) => ref _region.At<BranchSlot>(SlotOffset(slot));

    public LogCursor Cursor(LogRef r) => new(_region, _allocator.ArenaOffset, _allocator.ArenaEnd, r);

    /// <summary>A cursor for the scans that tell whether the original base image was replaced (they run before the bounds are known).</summary>
    private LogCursor WideCursor(LogRef r, long block = 0, long position = 0) => block == 0
        ? new(_region, AreaStart(retired: true), _allocator.ArenaEnd, r)
        : new(_region, AreaStart(retired: true), _allocator.ArenaEnd, r, block, position);

    /// <summary>The version main's current base image holds (0: the region's original image).</summary>
    public long BaseVersion { get; private set; }

    /// <summary>The base image main's history now starts from.</summary>
    public BaseImage? CurrentBase { get; private set; }

    /// <summary>The arena pages of the current base image when compaction wrote it; null for the original one.</summary>
    public (long Offset, long Pages)? BaseRun => CurrentBase is { } b && !OnOriginalBase
        ? (b.Offset, FormatConstants.AlignUp(b.EndOffset - b.Offset, FormatConstants.PageSize) / FormatConstants.PageSize)
        : null;

    /// <summary>The image this process just wrote and validated, so publishing it does not validate it twice.</summary>
    public BaseImage? Published { get; set; }

    /// <summary>Moves each time this process rebuilds its picture from nothing (after a compaction), so cached views are refetched.</summary>
    private long _generation;

    /// <summary>Set by <see cref="Reset"/>: the next re-read starts from nothing.</summary>
    private bool _rebuild;

    /// <summary>Moves each time the picture is rebuilt from nothing.</summary>
    public long Generation => Volatile.Read(ref _generation);

    /// <summary>The newest version of main.</summary>
    public long CurrentVersion => BaseVersion + VersionViews.Count - 1;

    /// <summary>Refuses a version main does not have (any more): as <see cref="VersionView"/> does, without needing its view.</summary>
    public void CheckVersion(long version)
    {
        if (version >= 0 && version < BaseVersion)
            throw new VersionFoldedException(version, BaseVersion);
        if (version < 0 || version > CurrentVersion)
            throw new ArgumentOutOfRangeException(nameof(version), $"no version {version}: main has versions {BaseVersion} to {CurrentVersion}");
    }

    /// <summary>Main's view at version <paramref name="version"/> (caller holds the in-process lock).</summary>
    public View VersionView(long version)
    {
        CheckVersion(version);
        return VersionViews[(int)(version - BaseVersion)] ?? throw new HistoryNotReadException(version);
    }

    /// <summary>
    /// Forgets everything derived from the logs (views, versions, tags, positions), keeping the branches this
    /// process knows, so the next re-read rebuilds them from the base image main's log now names.
    /// </summary>
    public void Reset()
    {
        foreach (var st in Slots)
            if (st is not null) ForgetLog(st);
        VersionViews.Clear();
        Versions.Clear();
        Tags.Clear();
        Settings.Clear();
        MergedLogs.Clear();
        Kept.Clear(); // rebuilt from their slots, on the new image
        _checkpoint = null;
        RecordsSinceCheckpoint = 0;
        _rebuild = true;
        Interlocked.Increment(ref _generation);
    }

    /// <summary>True when main's log gained a Base record (a compaction) since this process last read it.</summary>
    private bool MainGainedBase(in BranchSlot mainSlot)
    {
        var log = Slots[0]!.Log;
        if (mainSlot.Tail == 0 || mainSlot.Tail == log.Tail || log.Head == 0)
            return false;
        try
        {
            var c = WideCursor(new LogRef(log.LogId, log.Head, mainSlot.Tail), log.LastBlock, log.Tail);
            while (c.MoveNext())
                if ((RecordKind)c.Header.Kind == RecordKind.Base)
                    return true;
        }
        catch (CorruptionException)
        {
            // The catch-up that follows reports it.
        }
        return false;
    }

    /// <summary>
    /// The base image main's history starts from: the one the last valid Base record of main's log names, else
    /// the region's original image. Sets the base version and the image's arena run.
    /// </summary>
    private BaseImage LatestBase(in BranchSlot mainSlot)
    {
        BaseVersion = 0;
        if (mainSlot.Tail == 0)
            return Original;
        Rec? last = null;
        var r = new Rec();
        try
        {
            var c = WideCursor(new LogRef(mainSlot.LogId, mainSlot.Head, mainSlot.Tail));
            while (c.MoveNext())
            {
                if ((RecordKind)c.Header.Kind != RecordKind.Base)
                    continue;
                RecordCodec.Decode(r, RecordKind.Base, c.Header.TimeNs, c.Offset, c.Body, c.BodyOffset);
                last = new Rec { Seq = r.Seq, FileOffset = r.FileOffset, Size = r.Size, Ino = r.Ino, Offset = r.Offset };
            }
        }
        catch (CorruptionException)
        {
            // A torn tail: only what precedes it counts; the catch-up cuts or reports it.
        }
        if (last is null)
            return Original;
        if (last.Seq < 1 || last.FileOffset % FormatConstants.PageSize != 0 || last.FileOffset < AreaStart(retired: true)
            || last.Size < BaseHeader.Size || last.Size > _allocator.ArenaEnd - last.FileOffset)
            ThrowHelper.Corrupt("record", last.Offset, $"base image [{last.FileOffset}, +{last.Size}) for version {last.Seq} is not a page-aligned run inside the arena");
        var image = Published is { } mine && mine.Offset == last.FileOffset && mine.EndOffset - mine.Offset == last.Size && mine.NextIno == last.Ino
            ? mine
            : BaseImage.Open(_region, last.FileOffset, last.Size, last.Ino);
        BaseVersion = last.Seq;
        return image;
    }
}
