using Daxfs.Branching.Branching;
using Daxfs.Branching.Coordination;
using Daxfs.Branching.Format;
using Daxfs.Branching.Index;
using Daxfs.Branching.Replay;

namespace Daxfs.Branching;

public sealed partial class Store
{
    /// <summary>
    /// Records main's history must hold past the last checkpoint before a commit writes a new one (and at least half
    /// as many as the view has changed inodes, so checkpoints never take more space than the history they stand for).
    /// </summary>
    internal long CheckpointEvery { get; set; } = 2048;

    /// <summary>The oldest version whose view this store holds now (main was read from a checkpoint of it, or from its base image).</summary>
    internal long FirstReadVersion
    {
        get { lock (_gate) return _picture.FirstReadVersion; }
    }

    /// <summary>Main's view at <paramref name="version"/>; reads the history before the checkpoint main was read from when that view is asked for.</summary>
    internal View VersionViewRead(long version)
    {
        try
        {
            return _picture.VersionView(version);
        }
        catch (HistoryNotReadException)
        {
            ReadHistory(version);
            return _picture.VersionView(version);
        }
    }

    /// <summary>Makes the picture hold the views of main's versions from <paramref name="version"/> on (0: all), replaying the history a checkpoint stood in for.</summary>
    internal void ReadHistory(long version)
    {
        bool more;
        lock (_gate)
        {
            ThrowIfUnusable();
            more = _picture.NeedVersion(version);
        }
        if (more)
            _changes.ForceReread();
    }

    /// <summary>
    /// After a commit to main (caller holds the change): writes a checkpoint of main's view when enough history
    /// piled up since the last one. A checkpoint is derived data: when space is short it is left out.
    /// </summary>
    private void MaybeWriteCheckpoint(BranchState main, long records)
    {
        if (_super.FormatVersion < FormatConstants.SpaceVersion)
            return;
        _picture.RecordsSinceCheckpoint += Math.Max(1, records);
        if (_picture.RecordsSinceCheckpoint < CheckpointEvery || _picture.RecordsSinceCheckpoint < LongMap.Count(main.View.Nodes) / 2)
            return;
        WriteCheckpoint(main);
    }

    /// <summary>Writes a checkpoint of main's current view and names it in the control block; the one it replaces is freed.</summary>
    internal void WriteCheckpoint(BranchState main)
    {
        var image = _picture.CurrentBase!;
        var header = new ViewCheckpoint.Header(main.Epoch, _picture.BaseVersion, image.Offset, main.Log.LastBlock, main.Log.Tail, 0);
        byte[] bytes = ViewCheckpoint.Encode(main.View, header);
        long pages = FormatConstants.AlignUp(bytes.Length, FormatConstants.PageSize) / FormatConstants.PageSize;
        long at;
        try
        {
            at = _allocator.Allocate(pages);
        }
        catch (RegionFullException)
        {
            return; // opens replay the history instead
        }
        bytes.CopyTo(_region.WritableSpan(at, bytes.Length));
        if (_region.Kind != Media.RegionKind.Memory)
            _region.Flush(at, bytes.Length);
        FaultPoints.Hit("checkpoint.written");
        ref long word = ref _region.Word(FormatConstants.ControlOffset + ControlBlock.CheckpointOffset);
        long old = Volatile.Read(ref word);
        // The old run is freed only when its header and checksum prove its length: a damaged header could claim pages
        // that hold live logs. Otherwise its pages are left to a rebuild of free space, which the audit word asks for.
        var oldRun = old != 0 ? _picture.CheckpointRunIfWhole() : null;
        if (old != 0 && oldRun is null)
            _changes.MarkSpaceAudit();
        Volatile.Write(ref word, at); // the switch: one store
        if (_region.Kind != Media.RegionKind.Memory)
            _region.Flush(FormatConstants.ControlOffset, FormatConstants.PageSize);
        FaultPoints.Hit("checkpoint.published");
        // Only stores holding the region lock read a checkpoint, and they copy it: the old one is free at once.
        if (oldRun is { } run && run.Offset != at)
        {
            if (_allocator.AllInUse(run.Offset, run.Pages) && !(at < run.Offset + run.Pages * FormatConstants.PageSize && run.Offset < at + pages * FormatConstants.PageSize))
                _allocator.Free(run.Offset, run.Pages);
            else
                _changes.MarkSpaceAudit();
        }
        _picture.RecordsSinceCheckpoint = 0;
        _picture.ForgetViewsBefore(main.Epoch);
    }
}
