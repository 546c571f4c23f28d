namespace Daxfs.Branching.Format;

/// <summary>Numbers fixed by the on-media format (docs/format.md).</summary>
internal static class FormatConstants
{
    /// <summary>The format version this library writes (new regions), and the newest it reads.</summary>
    public const uint Version = 5;

    /// <summary>
    /// The first version whose regions reuse what compaction replaced of the original base image, clean branch
    /// logs in place (merge records with empty references) and grow (the control block's capacity word).
    /// </summary>
    public const uint SpaceVersion = 4;

    /// <summary>The first version whose main log holds settings (named strings: remotes and what was exchanged with them).</summary>
    public const uint SettingsVersion = 5;

    /// <summary>Longest setting name, in bytes of UTF-8.</summary>
    public const int MaxSettingName = 255;

    /// <summary>Longest setting value, in bytes of UTF-8.</summary>
    public const int MaxSettingValue = 16 * 1024;

    /// <summary>
    /// The oldest format version this library reads and writes. Version 2 lacks only what version 3 added
    /// (open files kept after their last name goes, and exchanging renames): a version 2 region is used as it
    /// is, without them, so every build that reads version 2 can still read it.
    /// </summary>
    public const uint OldestVersion = 2;

    /// <summary>Allocation unit of the region and of the delta arena.</summary>
    public const int PageSize = 4096;

    /// <summary>Offset of the superblock.</summary>
    public const long SuperblockOffset = 0;

    /// <summary>Offset of the control block (the shared mutable words).</summary>
    public const long ControlOffset = PageSize;

    /// <summary>Base file data is checksummed in chunks of this many bytes.</summary>
    public const int DataChunkSize = 64 * 1024;

    /// <summary>Longest name of a file or directory, in bytes of UTF-8.</summary>
    public const int MaxNameLength = 255;

    /// <summary>The most names (hard links) one inode may have, as on ext4.</summary>
    public const int MaxLinks = 65000;

    /// <summary>Longest symbolic link target, in bytes of UTF-8.</summary>
    public const int MaxLinkTarget = 4095;

    /// <summary>Longest branch name, in bytes.</summary>
    public const int MaxBranchName = 64;

    /// <summary>Smallest delta-log block a branch starts with.</summary>
    public const int MinBlockSize = 4 * 1024;

    /// <summary>Largest block a log grows to for small records (bigger records get a block of their own size).</summary>
    public const int MaxBlockSize = 1024 * 1024;

    /// <summary>Largest payload a single write record carries; longer writes are split.</summary>
    public const int MaxWritePayload = 64 * 1024 * 1024;

    /// <summary>Largest file size the store accepts (2^60 bytes).</summary>
    public const long MaxFileSize = 1L << 60;

    /// <summary>Deepest nesting of merge references a log may have before it is judged corrupt.</summary>
    public const int MaxMergeNesting = 4096;

    public static long AlignUp(long value, long alignment) => (value + alignment - 1) & ~(alignment - 1);
}

/// <summary>The POSIX file type bits in a mode word.</summary>
internal static class ModeBits
{
    public const uint TypeMask = 0xF000;
    public const uint Directory = 0x4000;
    public const uint Regular = 0x8000;
    public const uint Symlink = 0xA000;
    public const uint Fifo = 0x1000;
    public const uint CharDevice = 0x2000;
    public const uint BlockDevice = 0x6000;
    public const uint Socket = 0xC000;
    public const uint PermMask = 0x0FFF;

    /// <summary>The type bits of <paramref name="kind"/>.</summary>
    public static uint Of(Index.NodeKind kind) => kind switch
    {
        Index.NodeKind.Directory => Directory,
        Index.NodeKind.Symlink => Symlink,
        Index.NodeKind.Fifo => Fifo,
        Index.NodeKind.Socket => Socket,
        Index.NodeKind.CharDevice => CharDevice,
        Index.NodeKind.BlockDevice => BlockDevice,
        _ => Regular,
    };
}
