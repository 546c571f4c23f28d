using Daxfs.Branching.Format;
using Daxfs.Branching.Index;
using Daxfs.Branching.Log;

namespace Daxfs.Branching.Replay;

/// <summary>A version's view was asked for that this picture did not read (it was read from a later checkpoint).</summary>
/// <summary>The checkpoint main was being read from does not fit main's log: it is dropped and main is replayed from its image.</summary>
internal sealed class CheckpointMisplacedException(long offset, string why) : Exception($"the checkpoint at {offset}: {why}");

internal sealed class HistoryNotReadException(long version) : Exception($"the view of version {version} was not read")
{
    public long Version { get; } = version;
}

internal sealed partial class RegionPicture
{
    /// <summary>A checkpoint chosen for the next replay of main: its header, its decoded view, where it lies.</summary>
    private sealed record LoadedCheckpoint(ViewCheckpoint.Header Header, View View, long Offset);

    private LoadedCheckpoint? _checkpoint;

    /// <summary>The oldest version of main a call of this store asked a view of (see <see cref="NeedVersion"/>).</summary>
    private long _historyFrom = long.MaxValue;

    /// <summary>The oldest version whose view this picture holds: main was read from a checkpoint of it, or from its base image.</summary>
    public long FirstReadVersion { get; private set; }

    /// <summary>Records applied to main's view since the checkpoint it was read from (or its base image): what an open would replay.</summary>
    public long RecordsSinceCheckpoint { get; set; }

    /// <summary>Why the checkpoint the control block names was not usable, when it was damaged (for verify); null otherwise.</summary>
    public string? CheckpointProblem { get; private set; }

    private ref long CheckpointWord => ref _region.Word(FormatConstants.ControlOffset + ControlBlock.CheckpointOffset);

    /// <summary>Asks for the views of versions from <paramref name="version"/> on (0: main's whole history); true when that is more than this picture holds.</summary>
    public bool NeedVersion(long version)
    {
        if (version >= _historyFrom)
            return false;
        _historyFrom = version;
        return FirstReadVersion > Math.Max(version, BaseVersion);
    }

    /// <summary>The oldest version of main the re-read needs a view of: for branches forked from past versions, kept branches, and calls that asked.</summary>
    private long OldestVersionNeeded(BranchSlot[] raw, List<int> order, HashSet<int>? load, bool full)
    {
        if (full)
            return 0;
        long need = _historyFrom;
        foreach (int i in order)
            if ((raw[i].Flags & BranchSlot.FlagDetached) != 0 && raw[i].ParentSlot == 0 && (load is null || load.Contains(i)))
                need = Math.Min(need, raw[i].ForkEpoch);
        if (load is null)
            for (int i = 1; i < raw.Length; i++)
                if (raw[i].State == (uint)SlotState.Kept && raw[i].ParentSlot == 0)
                    need = Math.Min(need, raw[i].ForkEpoch);
        return need;
    }

    /// <summary>The run of the checkpoint the control block names, when it is well-formed (for verify's count of reachable space).</summary>
    public (long Offset, long Pages)? CheckpointRunInUse() => CheckpointRun();

    /// <summary>The run of the checkpoint the control block names, only when its checksum proves its header (what may be freed).</summary>
    public (long Offset, long Pages)? CheckpointRunIfWhole()
    {
        if (_super.FormatVersion < FormatConstants.SpaceVersion)
            return null;
        long at = Volatile.Read(ref CheckpointWord);
        return at != 0 && Read(at, checksum: true) is { } found ? (at, found.Pages) : null;
    }

    /// <summary>The run the control block's checkpoint word names, when it holds a well-formed checkpoint (kept in use by a rebuild of free space).</summary>
    private (long Offset, long Pages)? CheckpointRun()
    {
        if (_super.FormatVersion < FormatConstants.SpaceVersion)
            return null;
        long at = Volatile.Read(ref CheckpointWord);
        return at != 0 && Read(at, checksum: false) is { } found ? (at, found.Pages) : null;
    }

    /// <summary>A checkpoint at <paramref name="at"/>: its header and bytes, when it lies in the arena, is well-formed and (with <paramref name="checksum"/>) its checksum matches.</summary>
    private (ViewCheckpoint.Header Header, long Pages, ReadOnlyMemory<byte> Bytes)? Read(long at, bool checksum)
    {
        long start = AreaStart(retired: true), end = _allocator.ArenaEnd;
        if (at % FormatConstants.PageSize != 0 || at < start || at > end - FormatConstants.PageSize)
        {
            CheckpointProblem = at % FormatConstants.PageSize != 0 ? $"the checkpoint word names offset {at}, which is not page-aligned" : $"the checkpoint word names offset {at}, outside the arena";
            return null;
        }
        if (ViewCheckpoint.ReadHeader(_region.Span(at, ViewCheckpoint.HeaderSize), end - at) is not { } h)
        {
            CheckpointProblem = $"no valid checkpoint header at {at}";
            return null;
        }
        long length = ViewCheckpoint.HeaderSize + h.BodyLength;
        long pages = FormatConstants.AlignUp(length, FormatConstants.PageSize) / FormatConstants.PageSize;
        if (length > int.MaxValue)
        {
            CheckpointProblem = $"checkpoint at {at} of {length} bytes is too large";
            return null;
        }
        var bytes = _region.Span(at, (int)length);
        if (checksum && System.Buffers.Binary.BinaryPrimitives.ReadUInt32LittleEndian(bytes[60..]) != 0)
        {
            CheckpointProblem = $"the checkpoint at {at} has its reserved word set";
            return null;
        }
        if (checksum && !ViewCheckpoint.ChecksumMatches(bytes))
        {
            CheckpointProblem = $"the checkpoint at {at} (version {h.Version}) fails its checksum";
            return null;
        }
        return (h, pages, bytes.ToArray());
    }

    /// <summary>
    /// The checkpoint to read main from: the one the control block names, when it is whole, is of main's current base
    /// image and is not past <paramref name="need"/> (the walk of main's log then checks that its version ends where it
    /// says). Null: replay main's history from its base image.
    /// </summary>
    private LoadedCheckpoint? ChooseCheckpoint(in BranchSlot mainSlot, long need)
    {
        if (need < 0)
            return null;
        CheckpointProblem = null;
        if (_super.FormatVersion < FormatConstants.SpaceVersion || mainSlot.Tail == 0)
            return null;
        long at = Volatile.Read(ref CheckpointWord);
        if (at == 0 || Read(at, checksum: true) is not { } found)
            return null;
        var h = found.Header;
        if (h.Version > need || h.Version <= BaseVersion || h.BaseVersion != BaseVersion || h.BaseOffset != CurrentBase!.Offset)
            return null; // of another base image (a compaction since), or older versions are needed: not a fault
        // Where its version ends in main's log is checked as the log is walked (CheckpointMisplacedException).
        try
        {
            var records = new HashSet<long>();
            var view = ViewCheckpoint.Decode(found.Bytes.Span[ViewCheckpoint.HeaderSize..], CurrentBase!, _super.BaseOffset, _allocator.ArenaEnd, records);
            // Its records are checked when first read; those named by an earlier checkpoint stay on the list (old views may still read them).
            var image = CurrentBase!;
            image.LogRecords = new RecordChecks(_region, image.LogRecords is { } earlier ? earlier.Records.Concat(records) : records, _super.BaseOffset, _allocator.ArenaEnd);
            return new LoadedCheckpoint(h, view, at);
        }
        catch (FormatException e)
        {
            CheckpointProblem = $"the checkpoint at {at} (version {h.Version}) does not decode: {e.Message}";
            return null;
        }
    }

    /// <summary>
    /// Starts main's picture from nothing: its base image, and the checkpoint to read it from when one may be used
    /// for views from <paramref name="need"/> on. With -1: only when the picture was reset (and then with no checkpoint);
    /// a picture that holds main is left as it is.
    /// </summary>
    private void StartMain(in BranchSlot mainSlot, long need)
    {
        if (need == -1 && Slots[0] is not null && !_rebuild)
            return;
        var main = Slots[0] ?? NewState(0, in mainSlot, "main", null);
        CurrentBase = LatestBase(in mainSlot);
        // Once compaction replaced the original image, a version 4 region's arena takes in its pages.
        _allocator.SetBounds(AreaStart(retired: !OnOriginalBase), _allocator.ArenaEnd);
        main.View = View.Initial(CurrentBase);
        VersionViews.Add(main.View);
        Slots[0] = main;
        ByName["main"] = main;
        _rebuild = false;
        _checkpoint = ChooseCheckpoint(in mainSlot, need);
        FirstReadVersion = _checkpoint?.Header.Version ?? BaseVersion;
    }

    /// <summary>
    /// After a checkpoint of <paramref name="version"/> was written: lets go of the views of the versions before it,
    /// unless a call asked for them or a branch this picture read is based on one. A process then holds the views
    /// of the versions since the last checkpoint, not of every version; an older one is read from the history again
    /// when asked for.
    /// </summary>
    public void ForgetViewsBefore(long version)
    {
        if (_historyFrom < version || version <= FirstReadVersion || version > CurrentVersion)
            return;
        foreach (var st in Slots.Concat(Kept.Values))
            if (st is not null && (st.Detached || st.Kept) && st.BaseVersion < version)
                return;
        for (long v = Math.Max(FirstReadVersion, BaseVersion + 1); v < version; v++)
            VersionViews[(int)(v - BaseVersion)] = null;
        FirstReadVersion = version;
    }

    /// <summary>
    /// For verify: null when the checkpoint the control block names (if any) is whole and holds exactly main's view at
    /// its version as the history gives it (this picture read every version); otherwise what is wrong with it.
    /// </summary>
    public string? CheckCheckpoint()
    {
        if (_super.FormatVersion < FormatConstants.SpaceVersion)
            return null;
        long at = Volatile.Read(ref CheckpointWord);
        if (at == 0)
            return null;
        if (Read(at, checksum: true) is not { } found)
            return CheckpointProblem;
        var h = found.Header;
        if (h.BaseVersion != BaseVersion || h.BaseOffset != CurrentBase!.Offset)
            return null; // of an earlier base image: unused, replaced by the next one written
        if (h.Version <= BaseVersion || h.Version > CurrentVersion)
            return $"the checkpoint at {at} names version {h.Version}, which main's history (versions {BaseVersion} to {CurrentVersion}) does not hold";
        // Its version must end where it says in main's own log.
        var main = Slots[0]!;
        var r = new Rec();
        var c = Cursor(main.Log.Ref);
        while (c.MoveNext())
        {
            if ((RecordKind)c.Header.Kind != RecordKind.Version)
                continue;
            RecordCodec.Decode(r, RecordKind.Version, c.Header.TimeNs, c.Offset, c.Body, c.BodyOffset);
            if (r.Seq != h.Version)
                continue;
            if (c.Offset + c.Header.Length != h.ResumePosition || c.ValidBlock != h.ResumeBlock)
                return $"the checkpoint at {at} says version {h.Version} ends at {h.ResumePosition} (block {h.ResumeBlock}) in main's log; it ends at {c.Offset + c.Header.Length} (block {c.ValidBlock})";
            break;
        }
        var view = VersionViews[(int)(h.Version - BaseVersion)];
        if (view is null)
            return null;
        byte[] expected = ViewCheckpoint.Encode(view, h with { BodyLength = 0 });
        return expected.AsSpan(ViewCheckpoint.HeaderSize).SequenceEqual(found.Bytes.Span[ViewCheckpoint.HeaderSize..])
            ? null
            : $"the checkpoint at {at} does not hold main's view at version {h.Version} as its history gives it";
    }
}
