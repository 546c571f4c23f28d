using Daxfs.Branching.Format;
using Daxfs.Branching.Index;
using Daxfs.Branching.Log;

namespace Daxfs.Branching.Branching;

/// <summary>This process's picture of one branch slot: its view, its log writer and its family.</summary>
internal sealed class BranchState
{
    public const int StatusLive = 0;
    public const int StatusInvalidated = 1;
    public const int StatusEnded = 2;

    public required int Slot;
    public required long Generation;
    public required string Name;
    public required BranchState? Parent;
    public required int Depth;
    public required LogAppender Log;
    public required long CreatedNs;

    /// <summary>Forked from a past version of main (<see cref="BaseVersion"/>): commits to main do not invalidate it.</summary>
    public bool Detached;

    /// <summary>Forked with <see cref="BranchSlot.FlagKeep"/>: a commit to main keeps its log for a rebase.</summary>
    public bool KeepForRebase;

    /// <summary>Invalidated by a commit to main with its log kept (slot state Kept): readable only by a rebase.</summary>
    public bool Kept;

    /// <summary>
    /// Set by a fencing open when the branch's log, a log merged into it, or its parent's is damaged: every
    /// read or change of the branch throws this, and nothing of it is cut or freed.
    /// </summary>
    public CorruptionException? Fence;

    /// <summary>The version of main the branch's chain started from.</summary>
    public long BaseVersion;

    /// <summary>For a read-only view of a past version (not a branch): that version; otherwise -1.</summary>
    public long SnapshotOf = -1;

    /// <summary>For a view of a past version: the store's picture generation its <see cref="View"/> was taken in.</summary>
    public long PictureGeneration;

    private View _view = null!;

    /// <summary>The branch's current tree; replaced whole by each change, never mutated.</summary>
    public View View
    {
        get => Volatile.Read(ref _view);
        set => Volatile.Write(ref _view, value);
    }

    /// <summary>Commits merged into this branch (main: its version number).</summary>
    public long Epoch;

    /// <summary>Live children, in fork order.</summary>
    public readonly List<BranchState> Children = [];

    /// <summary>Blocks of logs merged into this one (committed children), which it now owns.</summary>
    public readonly List<(long Offset, long Pages)> MergedBlocks = [];

    /// <summary>Blocks of this branch's own log.</summary>
    public readonly List<(long Offset, long Pages)> OwnBlocks = [];

    public long Records;
    public long LogBytes;

    /// <summary>The slot's cleaning count when this process last walked the log (format version 4 on).</summary>
    public long Cleanings;

    /// <summary>The <see cref="LogBytes"/> at which this process next checks whether the log is worth cleaning (0: not set yet).</summary>
    public long NextCleanCheck;

    private int _status;

    public int Status
    {
        get => Volatile.Read(ref _status);
        set => Volatile.Write(ref _status, value);
    }

    public bool IsMain => Slot == 0;

    public bool IsSnapshot => SnapshotOf >= 0;

    public IEnumerable<BranchState> SelfAndDescendants()
    {
        var stack = new Stack<BranchState>();
        stack.Push(this);
        while (stack.Count > 0)
        {
            var s = stack.Pop();
            yield return s;
            foreach (var c in s.Children) stack.Push(c);
        }
    }

    public List<(long Offset, long Pages)> AllBlocks()
    {
        var all = new List<(long, long)>(OwnBlocks.Count + MergedBlocks.Count);
        all.AddRange(OwnBlocks);
        all.AddRange(MergedBlocks);
        return all;
    }
}
