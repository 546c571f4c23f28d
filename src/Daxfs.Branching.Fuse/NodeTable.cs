using System.Collections.Concurrent;

namespace Daxfs.Branching.Fuse;

/// <summary>What a node of the mount is: a file of a branch's tree, or one of the control entries.</summary>
internal enum NodeRole
{
    /// <summary>An inode of the branch's tree.</summary>
    Tree,

    /// <summary>The hidden directory <c>.daxfs</c> at the branch's root (found by name, never listed).</summary>
    ControlDir,

    /// <summary><c>.daxfs/ctl</c>: write a command, read the branch's state and the last failure.</summary>
    ControlFile,

    /// <summary><c>.daxfs/branches</c>: the branch's live children; mkdir forks, rmdir discards.</summary>
    ChildrenDir,
}

/// <summary>
/// One way the mount reaches a branch: the branch at the mount's root, <c>MNT/@NAME</c>, or
/// <c>…/.daxfs/branches/NAME</c>. Each has its own node numbers (and so its own kernel caches); a branch reached
/// two ways is two of these, kept coherent by the watcher.
/// </summary>
internal sealed class MountedBranch
{
    public required int Index { get; init; }

    public required Branch Branch { get; init; }

    /// <summary>Writes answer EROFS (main, a read-only mount, a damaged region).</summary>
    public required bool ReadOnly { get; init; }

    /// <summary>The directory node the branch's root appears in, and its name there ("" for the mount's root).</summary>
    public required ulong ParentNode { get; init; }

    public required string EntryName { get; init; }

    /// <summary>The slot and generation of the branch: which branch this is, across name reuse.</summary>
    public required (int Slot, long Generation) Key { get; init; }

    /// <summary>The view the watcher last saw (or this mount's own last change left).</summary>
    public object? LastView;

    /// <summary>The branch ended or was invalidated: every node of it answers ESTALE.</summary>
    public volatile bool Gone;

    /// <summary>The live children's names the watcher last saw (for <c>.daxfs/branches</c>).</summary>
    public string[] LastChildren = [];

    /// <summary>Nodes the kernel was told about (and may cache).</summary>
    public readonly ConcurrentDictionary<ulong, byte> Known = new();

    public string Name => Branch.Name;

    public ulong Node(long ino) => NodeIds.Make(Index, ino);

    public ulong RootNode => Node(Branch.RootInode);
}

/// <summary>How node ids carry a branch: the upper bits its index in the table, the lower bits an inode number.</summary>
internal static class NodeIds
{
    public const int IndexShift = 40;
    public const long InoMask = (1L << IndexShift) - 1;

    /// <summary>Inode numbers of the control entries: the top of each branch's range, never a tree inode.</summary>
    public const long ControlDirIno = InoMask, ControlFileIno = InoMask - 1, ChildrenDirIno = InoMask - 2;

    /// <summary>Tree inodes stay below this.</summary>
    public const long TreeLimit = InoMask - 16;

    public static ulong Make(int index, long ino)
    {
        if ((ulong)ino >= TreeLimit)
            throw new DaxfsIOException(FileSystemError.InvalidArgument, $"inode {ino}", "inode number too large for the mount");
        return ((ulong)index << IndexShift) | (ulong)ino;
    }

    public static ulong Control(int index, long controlIno) => ((ulong)index << IndexShift) | (ulong)controlIno;

    public static int IndexOf(ulong node) => (int)(node >> IndexShift);

    public static long InoOf(ulong node) => (long)(node & InoMask);
}

/// <summary>
/// The branches this mount reaches, by index. Indexes are never reused, so a node id of a branch that ended
/// keeps answering ESTALE and never lands on another branch.
/// </summary>
internal sealed class NodeTable
{
    private readonly object _gate = new();
    // By index; null: gone and forgotten (its node ids answer ESTALE). Replaced whole when it grows, under the gate,
    // and read without it: every request resolves its node here.
    private MountedBranch?[] _byIndex = new MountedBranch?[16];
    private int _count;
    private readonly Dictionary<((int, long) Key, ulong Via), MountedBranch> _byKey = [];

    /// <summary>The index limit the node id's upper bits allow.</summary>
    private const int MaxIndex = (1 << (64 - NodeIds.IndexShift)) - 1;

    public NodeTable(Branch root, bool readOnly)
    {
        Root = Attach(root, 0, "", readOnly);
        Root.Known[Root.RootNode] = 0; // the kernel has the mount's root without a lookup
    }

    /// <summary>The branch at the mount's root (index 0, its root node is the mount's root, node 1).</summary>
    public MountedBranch Root { get; }

    /// <summary>The entry for <paramref name="branch"/> reached under directory <paramref name="via"/> as <paramref name="name"/>; made on first use.</summary>
    public MountedBranch Attach(Branch branch, ulong via, string name, bool readOnly)
    {
        var key = ((branch.State.Slot, branch.State.Generation), via);
        lock (_gate)
        {
            if (_byKey.TryGetValue(key, out var found) && !found.Gone)
                return found;
            if (_count > MaxIndex)
                throw new BranchTableFullException(MaxIndex);
            var mb = new MountedBranch
            {
                Index = _count,
                Branch = branch,
                ReadOnly = readOnly,
                ParentNode = via,
                EntryName = name,
                Key = key.Item1,
            };
            try { mb.LastView = branch.CurrentViewToken(); }
            catch (DaxfsException) { }
            if (_count == _byIndex.Length)
            {
                var grown = new MountedBranch?[_byIndex.Length * 2];
                _byIndex.CopyTo(grown, 0);
                Volatile.Write(ref _byIndex, grown);
            }
            Volatile.Write(ref _byIndex[_count], mb);
            Volatile.Write(ref _count, _count + 1);
            _byKey[key] = mb;
            return mb;
        }
    }

    /// <summary>The branch and inode a node id names; ESTALE for a branch that ended or an id this mount never gave out.</summary>
    public (MountedBranch Branch, long Ino, NodeRole Role) Resolve(ulong node)
    {
        int index = NodeIds.IndexOf(node);
        var all = Volatile.Read(ref _byIndex);
        if (index >= Volatile.Read(ref _count) || index >= all.Length)
            throw new BranchInvalidatedException("?", $"node {node} is unknown to this mount");
        var mb = Volatile.Read(ref all[index]);
        if (mb is null || mb.Gone)
            throw new BranchInvalidatedException(mb?.Name ?? "?", $"the branch of node {node} ended or was invalidated");
        long ino = NodeIds.InoOf(node);
        var role = ino switch
        {
            NodeIds.ControlDirIno => NodeRole.ControlDir,
            NodeIds.ControlFileIno => NodeRole.ControlFile,
            NodeIds.ChildrenDirIno => NodeRole.ChildrenDir,
            _ => NodeRole.Tree,
        };
        return (mb, ino, role);
    }

    /// <summary>Every entry not yet gone.</summary>
    public List<MountedBranch> Live()
    {
        lock (_gate)
            return _byIndex.Take(_count).Where(b => b is { Gone: false }).ToList()!;
    }

    /// <summary>
    /// Drops a gone entry once the kernel was told: only its index stays taken (its node ids keep answering
    /// ESTALE), so a mount that outlives many branches holds one slot of a list for each, not their nodes.
    /// </summary>
    public void Forget(MountedBranch mb)
    {
        lock (_gate)
        {
            if (ReferenceEquals(_byIndex[mb.Index], mb))
                Volatile.Write(ref _byIndex[mb.Index], null);
            foreach (var key in _byKey.Where(kv => ReferenceEquals(kv.Value, mb)).Select(kv => kv.Key).ToList())
                _byKey.Remove(key);
        }
        mb.Known.Clear();
    }
}
