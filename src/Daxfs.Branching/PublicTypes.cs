using Daxfs.Branching.Index;
using Daxfs.Branching.Media;

namespace Daxfs.Branching;

/// <summary>How a new region is laid out.</summary>
public sealed record StoreOptions
{
    /// <summary>
    /// Total bytes of the region file. 0 picks the base image's size plus 1 GiB of delta arena. The whole
    /// capacity is reserved when the region is created (memory on tmpfs, blocks on a disk; see
    /// <see cref="Sparse"/>). A <c>/dev/dax</c> device region always spans the whole device: leave this at 0
    /// (or give the device's size).
    /// </summary>
    public long Capacity { get; init; }

    /// <summary>Slots of the branch table: the most branches (main included) that can exist at once. Default 4096.</summary>
    public int BranchSlots { get; init; } = 4096;

    /// <summary>
    /// Entries of the process table: the most stores (in any processes) that can have the region open at once.
    /// Default 1024 (32 KiB of the region); at most 65536.
    /// </summary>
    public int ProcessSlots { get; init; } = 1024;

    /// <summary>
    /// The region is memory that processes of several kernels map (a multikernel machine, CXL shared memory).
    /// Then a store of another kernel is never taken over or cleared, since this kernel cannot tell whether it
    /// lives (docs/concurrency.md). Without it, a store with another kernel's boot id can only be one of an
    /// earlier boot (a file or device region that outlived a reboot), and is treated as gone.
    /// </summary>
    public bool SharedAcrossKernels { get; init; }

    /// <summary>
    /// Do not reserve the region's backing store when creating it: the file takes memory or disk only for the
    /// pages written. Then a write the file system cannot back (a full tmpfs, such as a container's 64 MiB
    /// <c>/dev/shm</c>) kills the writing process with SIGBUS instead of failing cleanly. Off by default.
    /// </summary>
    public bool Sparse { get; init; }

    /// <summary>
    /// The most the region may later grow to with <see cref="Store.Resize"/> (its allocation bitmap is sized for
    /// it: 1 bit per 4 KiB). 0 picks twice the capacity, and at least 16 GiB. Costs address space only, and
    /// <c>MaxCapacity / 32768</c> bytes of the region.
    /// </summary>
    public long MaxCapacity { get; init; }

    /// <summary>Replace an existing region file at the path.</summary>
    public bool Overwrite { get; init; }

    /// <summary>Receives progress while the base image is written.</summary>
    public IProgress<BuildProgress>? Progress { get; init; }
}

/// <summary>Attributes of a file, directory or symlink in a branch.</summary>
/// <param name="Path">The path asked for.</param>
/// <param name="Inode">Inode number (stable for the life of the inode within a branch lineage).</param>
/// <param name="Kind">File, directory or symlink.</param>
/// <param name="Mode">Permission bits (for example 0644), without the type bits.</param>
/// <param name="Uid">Owner.</param>
/// <param name="Gid">Group.</param>
/// <param name="Size">Files: bytes. Symlinks: bytes of the target. Directories: number of entries.</param>
/// <param name="ModifiedTime">Last change of content.</param>
/// <param name="ChangedTime">Last change of content or attributes.</param>
/// <param name="LinkCount">Directories: 2 + subdirectories; otherwise 1.</param>
public readonly record struct FileStat(string Path, long Inode, NodeKind Kind, uint Mode, uint Uid, uint Gid, long Size,
    DateTimeOffset ModifiedTime, DateTimeOffset ChangedTime, int LinkCount)
{
    internal static FileStat From(string path, in InodeInfo i) => new(path, i.Ino, i.Kind, i.Perm, i.Uid, i.Gid, i.Size,
        FromNs(i.MtimeNs), FromNs(i.CtimeNs), i.Nlink) { AccessedTimeNs = i.AtimeNs, Device = i.Rdev };

    /// <summary>Device nodes: the device number, as the C library's dev_t encodes it; otherwise 0.</summary>
    public long Device { get; init; }

    /// <summary>Access time in nanoseconds since the Unix epoch: set at creation and by a change of times, not by reads (see docs/semantics.md).</summary>
    public long AccessedTimeNs { get; init; }

    internal static DateTimeOffset FromNs(long ns) => new(DateTime.UnixEpoch.AddTicks(ns / 100), TimeSpan.Zero);

    internal static long ToNs(DateTimeOffset t) => (t.UtcDateTime - DateTime.UnixEpoch).Ticks * 100;

    /// <summary>Modification time in nanoseconds since the Unix epoch, as stored.</summary>
    public long ModifiedTimeNs => ToNs(ModifiedTime);
}

/// <summary>One entry of a directory listing.</summary>
/// <param name="Name">The entry's name.</param>
/// <param name="Inode">Its inode number.</param>
/// <param name="Kind">What it is.</param>
public readonly record struct DirectoryEntry(string Name, long Inode, NodeKind Kind);

/// <summary>What state a branch is in.</summary>
public enum BranchStatus
{
    /// <summary>Accepts reads and writes.</summary>
    Live,
    /// <summary>Has live children, so it accepts reads only.</summary>
    Frozen,
    /// <summary>Main: changes only by commits.</summary>
    Main,
    /// <summary>Invalidated by a commit or abort elsewhere; every operation fails.</summary>
    Invalidated,
    /// <summary>A past version of main: read-only, can be forked.</summary>
    Version,
}

/// <summary>A summary of one branch.</summary>
/// <param name="Name">Its name.</param>
/// <param name="Parent">Its parent's name (null for main).</param>
/// <param name="Status">Live, frozen, main or invalidated.</param>
/// <param name="Depth">Forks between it and main (main is 0).</param>
/// <param name="LogBytes">Bytes of records in its delta log (merged children included).</param>
/// <param name="Records">Records in its delta log (merged children included).</param>
/// <param name="Created">When it was forked.</param>
public readonly record struct BranchInfo(string Name, string? Parent, BranchStatus Status, int Depth, long LogBytes, long Records, DateTimeOffset Created)
{
    /// <summary>An invalidated branch whose changes were kept (it was forked with <see cref="ForkOptions.KeepForRebase"/>): it can be rebased.</summary>
    public bool Kept { get; init; }
}

/// <summary>How a branch is forked.</summary>
public sealed record ForkOptions
{
    /// <summary>
    /// When a commit to main invalidates the branch, keep its changes (its log) instead of giving their space
    /// back, so it can be rebased onto the new main (<see cref="Store.Rebase(string, string)"/>). The branch is
    /// invalidated all the same: reads and writes fail. Its space stays in use, and the version it was based on
    /// stays readable through compaction, until it is rebased and discarded
    /// (<see cref="Store.DiscardInvalidated"/>). Branches forked from a kept branch are kept too. Not kept, because
    /// their base was never a version of main: siblings invalidated by a commit into a parent other than main, and
    /// branches forked from a member of the chain that was committed.
    /// </summary>
    public bool KeepForRebase { get; init; }
}

/// <summary>One version of main: the result of one commit.</summary>
/// <param name="Sequence">1 for the first commit, then one more for each.</param>
/// <param name="Time">When it was committed.</param>
/// <param name="Message">The commit message.</param>
/// <param name="SourceBranch">The branch that was committed.</param>
/// <param name="Records">Records the commit added to main's history.</param>
/// <param name="Bytes">Bytes of those records.</param>
public readonly record struct VersionInfo(long Sequence, DateTimeOffset Time, string Message, string SourceBranch, long Records, long Bytes)
{
    /// <summary>True when compaction folded this version into the base image: it is listed, but can no longer be read.</summary>
    public bool Folded { get; init; }
}

/// <summary>Space and counts of a region.</summary>
/// <param name="Path">The region file.</param>
/// <param name="Kind">Memory, regular file or DAX device.</param>
/// <param name="Capacity">Bytes of the region.</param>
/// <param name="BaseImageBytes">Bytes of the base image.</param>
/// <param name="ArenaBytes">Bytes of the delta arena.</param>
/// <param name="ArenaFreeBytes">Bytes of the arena free now.</param>
/// <param name="ParkedBytes">Bytes given up by ended branches, waiting for read leases to end.</param>
/// <param name="BaseInodes">Inodes of the base image.</param>
/// <param name="LiveBranches">Live branches, main included.</param>
/// <param name="BranchSlots">Slots of the branch table.</param>
/// <param name="Versions">Versions of main.</param>
public readonly record struct RegionUsage(string Path, RegionKind Kind, long Capacity, long BaseImageBytes, long ArenaBytes, long ArenaFreeBytes,
    long ParkedBytes, long BaseInodes, int LiveBranches, int BranchSlots, long Versions)
{
    /// <summary>The most the region can grow to with <see cref="Store.Resize"/> (0: it cannot grow).</summary>
    public long MaxCapacity { get; init; }

    /// <summary>
    /// Bytes of <see cref="ArenaFreeBytes"/> kept back for what frees space (removals, truncations, cleaning), so a
    /// full region can always be cleaned up from inside; other writes see the arena full when only these are left.
    /// </summary>
    public long ReserveBytes { get; init; }
}

/// <summary>What opening a region found and repaired.</summary>
/// <param name="TruncatedLogs">Branch logs whose torn tail was cut back to the longest valid prefix.</param>
/// <param name="InvalidatedBranches">Branches found stale (their commit or abort had not finished marking them).</param>
/// <param name="ReleasedSlots">Slots of ended branches released.</param>
/// <param name="LockTakenOver">The region lock was held by a dead process and taken over.</param>
public readonly record struct RecoveryReport(IReadOnlyList<string> TruncatedLogs, IReadOnlyList<string> InvalidatedBranches, int ReleasedSlots, bool LockTakenOver)
{
    /// <summary>
    /// Only from <see cref="Store.OpenRepairing"/> (and a repairing snapshot): each damaged log that was cut
    /// back to its last valid record, and what that dropped.
    /// </summary>
    public IReadOnlyList<string> Repairs { get; init; } = [];

    /// <summary>The damage each of <see cref="Repairs"/> cut at: what failed, where, and what depended on it.</summary>
    public IReadOnlyList<DamageFound> RepairedDamage { get; init; } = [];

    /// <summary>
    /// Set when free space should have been rebuilt (a store had died, or left space it could not give back) but a
    /// damaged log stopped the walk of every log: why. The open went on reading what it needs; the space stays marked
    /// in use until a later open rebuilds it (after <c>daxfs repair</c>).
    /// </summary>
    public string? SpaceNotRebuilt { get; init; }
}
