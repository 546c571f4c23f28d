using System.Collections.Immutable;

namespace Daxfs.Branching.Index;

/// <summary>What an inode is.</summary>
public enum NodeKind : byte
{
    /// <summary>A regular file.</summary>
    File = 1,
    /// <summary>A directory.</summary>
    Directory = 2,
    /// <summary>A symbolic link.</summary>
    Symlink = 3,
    /// <summary>A named pipe (FIFO). Format version 3 on.</summary>
    Fifo = 4,
    /// <summary>A UNIX-domain socket's name. Format version 3 on.</summary>
    Socket = 5,
    /// <summary>A character device node (with its device number). Format version 3 on.</summary>
    CharDevice = 6,
    /// <summary>A block device node (with its device number). Format version 3 on.</summary>
    BlockDevice = 7,
}

/// <summary>
/// An inode as a branch sees it after changes: immutable, shared by every view that has not changed it
/// since. Base inodes that no branch has touched are never materialized as nodes.
/// </summary>
internal sealed record Node
{
    public required long Ino { get; init; }
    public required NodeKind Kind { get; init; }
    /// <summary>Permission bits (the low 12 bits of the mode).</summary>
    public required uint Perm { get; init; }
    public required uint Uid { get; init; }
    public required uint Gid { get; init; }
    public required long MtimeNs { get; init; }
    public required long CtimeNs { get; init; }
    /// <summary>Access time: set at creation and by SetAttr; reads leave it (see docs/semantics.md).</summary>
    public long AtimeNs { get; init; }
    /// <summary>Files: bytes. Symlinks: target bytes. Directories: entry count.</summary>
    public long Size { get; init; }
    /// <summary>Files: the byte-range map.</summary>
    public LongMapNode<Extent>? Extents { get; init; }
    /// <summary>Directories: name → inode.</summary>
    public ImmutableSortedDictionary<string, long>? Entries { get; init; }
    /// <summary>Directories: how many entries are directories (for the link count).</summary>
    public int Subdirs { get; init; }
    /// <summary>Non-directories: how many names the inode has (hard links); 0 for a file kept open after its last name went.</summary>
    public int Links { get; init; } = 1;
    /// <summary>
    /// The containing directory (the root names itself). For a non-directory with several names (hard links):
    /// the directory of the name it was created or last linked or moved under, which may since have lost that
    /// name (then a walk finds its names). <see cref="NoParent"/> for a file kept open after its last name went.
    /// </summary>
    public long ParentIno { get; init; }

    /// <summary>The parent of an orphan: a file with no name, kept while a process has it open.</summary>
    public const long NoParent = 0;

    /// <summary>A file kept open after its last name went: no directory holds it, its link count is 0.</summary>
    public bool IsOrphan => ParentIno == NoParent && !IsTombstone;

    /// <summary>The link count as stat shows it.</summary>
    public int LinkCount => Kind == NodeKind.Directory ? 2 + Subdirs : IsOrphan ? 0 : Links;
    /// <summary>Extended attributes (format version 3), by name; null: none.</summary>
    public ImmutableSortedDictionary<string, byte[]>? Xattrs { get; init; }
    /// <summary>Device nodes: the device number (as the C library's dev_t encodes it).</summary>
    public long Rdev { get; init; }
    /// <summary>Symlinks: the target.</summary>
    public string? Target { get; init; }

    /// <summary>
    /// Marks a base inode that the branch removed, so a lookup by inode number (an open handle) does not
    /// find the base image's copy. Never reachable from a directory.
    /// </summary>
    public static Node Tombstone(long ino) => new() { Ino = ino, Kind = 0, Perm = 0, Uid = 0, Gid = 0, MtimeNs = 0, CtimeNs = 0 };

    public bool IsTombstone => Kind == 0;

    public static readonly ImmutableSortedDictionary<string, long> EmptyEntries =
        ImmutableSortedDictionary.Create<string, long>(StringComparer.Ordinal);
}
