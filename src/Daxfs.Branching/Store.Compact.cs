using System.Diagnostics;
using Daxfs.Branching.Branching;
using Daxfs.Branching.Coordination;
using Daxfs.Branching.Building;
using Daxfs.Branching.Format;
using Daxfs.Branching.Index;
using Daxfs.Branching.Replay;
using Daxfs.Branching.Log;

namespace Daxfs.Branching;

/// <summary>How <see cref="Store.Compact"/> folds history.</summary>
public sealed record CompactOptions
{
    /// <summary>
    /// Versions to keep readable before the current one (0: fold everything up to the current version).
    /// Tagged versions, and versions that branches were forked from, are kept whatever this says.
    /// </summary>
    public long Keep { get; init; }

    /// <summary>Receives progress while the new base image is written.</summary>
    public IProgress<BuildProgress>? Progress { get; init; }
}

/// <summary>What a compaction did.</summary>
/// <param name="FoldedVersion">The version that became the new base image (the oldest version still readable); -1 when nothing was folded.</param>
/// <param name="RetiredVersions">Versions folded away by this compaction (no longer readable).</param>
/// <param name="Entries">Files, directories and symlinks in the new base image.</param>
/// <param name="CopiedBytes">File and symlink bytes copied into it.</param>
/// <param name="BaseBytes">Bytes of the new base image.</param>
/// <param name="ReleasedBytes">Bytes given up: the retired versions' logs and the previous compacted base. They return
/// to the arena at once, or when the last read lease that could still see them ends.</param>
/// <param name="Elapsed">Time the compaction took.</param>
/// <param name="Reason">Why nothing was folded (when <paramref name="FoldedVersion"/> is -1).</param>
public readonly record struct CompactionReport(long FoldedVersion, long RetiredVersions, long Entries, long CopiedBytes, long BaseBytes,
    long ReleasedBytes, TimeSpan Elapsed, string? Reason);

public sealed partial class Store
{
    /// <summary>The oldest version of main that can still be read: the one compaction last folded into the base image (0 before any).</summary>
    public long OldestVersion
    {
        get { EnsureCurrent(); lock (_gate) { ThrowIfUnusable(); return _picture.BaseVersion; } }
    }

    /// <summary>The view reads of <paramref name="s"/> use now (a past version's is refetched after a rebuild).</summary>
    internal View ViewOf(BranchState s) => s.IsSnapshot && s.PictureGeneration != _picture.Generation ? SnapshotView(s) : s.View;

    /// <summary>A read-only view of a past version, refetched when this process rebuilt its picture.</summary>
    private View SnapshotView(BranchState s)
    {
        lock (_gate)
        {
            if (s.PictureGeneration != _picture.Generation)
            {
                s.View = VersionViewRead(s.SnapshotOf);
                s.PictureGeneration = _picture.Generation;
            }
            return s.View;
        }
    }

    /// <summary>
    /// Folds main's history up to a version into a new base image and retires the older versions, so their
    /// logs' space returns to the arena. The version folded is the current one minus <see cref="CompactOptions.Keep"/>,
    /// moved back to the oldest tagged version and to the oldest version a live branch was forked from; every
    /// version from it on reads exactly as before. The new image is written outside the region lock (other
    /// processes go on working) and published with one record in main's log; processes reading older views
    /// under a <see cref="ReadLease"/> keep them until the lease ends.
    /// </summary>
    /// <exception cref="RegionFullException">No free run of the arena is large enough for the new image.</exception>
    /// <exception cref="DaxfsException">Another process compacted, tagged or forked an older version meanwhile (nothing changed; try again).</exception>
    public CompactionReport Compact(CompactOptions? options = null)
    {
        options ??= new CompactOptions();
        if (options.Keep < 0)
            throw new ArgumentOutOfRangeException(nameof(options), $"Keep must not be negative, not {options.Keep}");
        ReadAll();
        ReadHistory(0); // main's whole history: what it folds, and every block it gives back
        var clock = Stopwatch.StartNew();
        using var lease = BeginRead(); // the folded version's bytes stay put while they are copied outside the lock

        // 1. Under the locks: choose the version, plan its image and reserve the space for it.
        string? reason = null;
        long fold = -1, generation = 0, offset = 0, pages = 0, previousBase = 0;
        CompactedImage? image = null;
        Locked(() =>
        {
            long target = Math.Min(_picture.CurrentVersion - options.Keep, OldestPinnedVersion());
            if (target <= _picture.BaseVersion)
            {
                reason = target < _picture.CurrentVersion - options.Keep
                    ? $"a tag or a branch forked from a past version keeps version {target}, which is already the base"
                    : $"nothing to fold: the oldest readable version is {_picture.BaseVersion} and {options.Keep} of the {_picture.CurrentVersion - _picture.BaseVersion} after it are kept";
                return;
            }
            fold = target;
            previousBase = _picture.BaseVersion;
            generation = _picture.Generation;
            image = new CompactedImage(VersionViewRead(target));
            pages = FormatConstants.AlignUp(image.Length, FormatConstants.PageSize) / FormatConstants.PageSize;
            if (pages * FormatConstants.PageSize > _allocator.FreeBytes)
                throw new RegionFullException(pages * FormatConstants.PageSize, _allocator.FreeBytes,
                    $"compaction needs {pages * FormatConstants.PageSize} bytes free for the new base image and the arena has {_allocator.FreeBytes}: "
                    + "clean branch logs (daxfs gc) or discard branches and try again, or grow the region (daxfs resize)");
            try
            {
                offset = _allocator.Allocate(pages);
            }
            catch (RegionFullException)
            {
                throw new RegionFullException(pages * FormatConstants.PageSize, _allocator.FreeBytes,
                    $"compaction needs one free run of {pages * FormatConstants.PageSize} bytes for the new base image ({image.Entries} entries, {image.DataBytes} bytes of file data); the arena has {_allocator.FreeBytes} bytes free, but not in one run: "
                    + $"clean branch logs (daxfs gc) or discard branches and try again, or grow the region by at least that much (daxfs resize --capacity {FormatConstants.AlignUp(_region.Length + pages * FormatConstants.PageSize, 1L << 20)})");
            }
            _compactionRuns.Add((offset, pages));
        });
        if (image is null)
            return new CompactionReport(-1, 0, 0, 0, 0, 0, clock.Elapsed, reason);

        // 2. Outside the region lock: copy. The reserved pages are this process's alone; a crash leaves them to
        // the next full recovery.
        try
        {
            image.WriteTo(_region, offset, options.Progress);
            FaultPoints.Hit("compact.written");
            if (_region.Kind != Media.RegionKind.Memory)
                _region.Flush(offset, pages * FormatConstants.PageSize);
        }
        catch
        {
            GiveBackRun(offset, pages);
            throw;
        }

        // 3. Under the locks again: check nothing moved that the plan relied on, then publish.
        long released = 0;
        try
        {
            Locked(() =>
            {
                if (_picture.Generation != generation || _picture.BaseVersion != previousBase)
                    throw new DaxfsException("another process compacted the region meanwhile; nothing was changed");
                if (OldestPinnedVersion() < fold)
                    throw new DaxfsException($"a tag or a fork of a version before {fold} was made meanwhile; nothing was changed (run compact again)");
                _picture.Published = BaseImage.Open(_region, offset, image.Length, image.NextIno); // what was written is what will be read
                var main = _picture.Slots[0]!;
                int len = RecordCodec.EncodeBase(default, fold, offset, image.Length, image.NextIno);
                long at = main.Log.Reserve(RecordKind.Base, BaseImageBuilder.NowNs(), len);
                RecordCodec.EncodeBase(main.Log.Body(at, len), fold, offset, image.Length, image.NextIno);
                bool durable = _region.Kind != Media.RegionKind.Memory;
                main.Log.Publish(at, durable); // the commit point: from here main's history starts at the new image
                _compactionRuns.Remove((offset, pages));
                FaultPoints.Hit("compact.published");

                // What the old picture reached and the new one does not: the retired versions' logs and the previous image.
                var before = new HashSet<(long, long)>(main.MergedBlocks);
                if (_picture.BaseRun is { } old)
                    before.Add(old);
                bool wasOriginal = _picture.OnOriginalBase;
                _picture.Reset();
                _picture.Sync(alone: false, tookOver: false);
                _picture.Published = null;
                before.ExceptWith(_picture.Slots[0]!.MergedBlocks);
                if (_picture.BaseRun is { } now)
                    before.Remove(now);
                // Version 4 on, the original image's pages join the arena once it is replaced (Sync moved the bounds).
                if (wasOriginal && _picture.ReusesOriginalBase)
                    before.Add(_picture.OriginalRun);
                var retired = before.ToList();
                released = retired.Sum(b => b.Item2) * FormatConstants.PageSize;
                _changes.Leases.Park(retired);
            });
        }
        catch
        {
            _picture.Published = null;
            if (_compactionRuns.Contains((offset, pages)))
                GiveBackRun(offset, pages);
            throw;
        }
        lease.Dispose();
        Locked(() => ReclaimParked()); // what no other lease still sees returns to the arena now
        return new CompactionReport(fold, fold - previousBase, image.Entries, image.DataBytes, image.Length, released, clock.Elapsed, null);
    }

    private void GiveBackRun(long offset, long pages)
    {
        try
        {
            Locked(() =>
            {
                if (_compactionRuns.Remove((offset, pages)))
                    _allocator.Free(offset, pages);
            });
        }
        catch (DaxfsException)
        {
            // The store is busy or poisoned: the run stays marked in use until the next full recovery.
        }
    }

    /// <summary>
    /// The oldest version something still needs: a tag, a live branch forked from a past version, or a branch
    /// kept for rebase (its changes are replayed on the version its chain was based on).
    /// </summary>
    private long OldestPinnedVersion()
    {
        long oldest = long.MaxValue;
        foreach (var v in _picture.Tags.Values)
            oldest = Math.Min(oldest, v);
        foreach (var s in _picture.Slots)
            if (s is { Detached: true } && s.Status == BranchState.StatusLive)
                oldest = Math.Min(oldest, s.BaseVersion);
        foreach (var k in _picture.Kept.Values)
            oldest = Math.Min(oldest, k.BaseVersion);
        return oldest;
    }
}
