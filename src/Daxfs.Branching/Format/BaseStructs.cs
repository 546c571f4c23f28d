using System.Runtime.InteropServices;

namespace Daxfs.Branching.Format;

/// <summary>
/// Head of the base image. All offsets are absolute region offsets.
/// <code>
///  0 Magic u64 "DAXBASE1"    8 InodeCount u32   12 Reserved u32
/// 16 InodeTableOffset i64   24 DirentOffset i64   32 DirentCount i64
/// 40 NamePoolOffset i64     48 NamePoolLength i64
/// 56 DataOffset i64         64 DataLength i64
/// 72 ChunkCrcOffset i64     80 ChunkCount i64 (64 KiB chunks of the data area, one CRC32C each)
/// 88 MetaCrc u32 (CRC32C of inode table, dirents, name pool and attribute table)   92 Reserved u32
/// 96 XattrOffset i64   104 XattrLength i64 (version 3: the extended attribute table; 0 bytes: none)   112 Reserved[12]
/// 124 Crc u32 (CRC32C of bytes 0..124)
/// </code>
/// </summary>
[StructLayout(LayoutKind.Explicit, Size = Size)]
internal struct BaseHeader
{
    public const int Size = 128;
    public const ulong MagicValue = 0x3145_5341_4258_4144; // "DAXBASE1"

    [FieldOffset(0)] public ulong Magic;
    [FieldOffset(8)] public uint InodeCount;
    [FieldOffset(16)] public long InodeTableOffset;
    [FieldOffset(24)] public long DirentOffset;
    [FieldOffset(32)] public long DirentCount;
    [FieldOffset(40)] public long NamePoolOffset;
    [FieldOffset(48)] public long NamePoolLength;
    [FieldOffset(56)] public long DataOffset;
    [FieldOffset(64)] public long DataLength;
    [FieldOffset(72)] public long ChunkCrcOffset;
    [FieldOffset(80)] public long ChunkCount;
    [FieldOffset(88)] public uint MetaCrc;
    [FieldOffset(96)] public long XattrOffset;
    [FieldOffset(104)] public long XattrLength;
    [FieldOffset(124)] public uint Crc;
}

/// <summary>
/// One inode of the base image; inode number = index + 1 (the root is 1).
/// <code>
///  0 Mode u32 (type and permission bits)   4 Uid u32   8 Gid u32   12 ParentIno u32 (the containing directory; the root: itself)
/// 16 MtimeNs i64   24 Size i64 (files: bytes; symlinks: target bytes; dirs: entry count)
/// 32 DataOffset i64 (files, symlinks: absolute offset of the bytes; dirs: index of the first dirent)
/// 40 Subdirs u32 (dirs) / Links u32 (other kinds, version 3: names of the inode; 0: one)   44 Flags u32 (bit 0: Sparse)   48 CtimeNs i64 (0: same as MtimeNs)
/// 56 AtimeNs i64 (0: same as MtimeNs; format version 2 wrote 0 here)
/// </code>
/// An entry whose Mode is 0 is an unused inode number (only in a base image written by compaction).
/// A Sparse file's DataOffset points at its extent table in the data area: Count u64, then Count entries
/// of (FileOffset i64, Length i64, Source i64); bytes no extent covers are holes.
/// </summary>
[StructLayout(LayoutKind.Explicit, Size = Size)]
internal struct BaseInode
{
    public const int Size = 64;

    [FieldOffset(0)] public uint Mode;
    [FieldOffset(4)] public uint Uid;
    [FieldOffset(8)] public uint Gid;
    [FieldOffset(12)] public uint ParentIno;
    [FieldOffset(16)] public long MtimeNs;
    [FieldOffset(24)] public long ByteSize;
    [FieldOffset(32)] public long DataOffset;
    [FieldOffset(40)] public uint Subdirs;
    [FieldOffset(44)] public uint Flags;
    [FieldOffset(48)] public long CtimeNs;
    [FieldOffset(56)] public long AtimeNs;

    /// <summary>Flags bit 0: the file's bytes are described by an extent table (it has holes).</summary>
    public const uint FlagSparse = 1;

    /// <summary>Bytes of one extent table entry.</summary>
    public const int ExtentEntrySize = 24;

    /// <summary>The inode's change time: <see cref="CtimeNs"/>, or the modification time when that is 0.</summary>
    public readonly long ChangeTimeNs => CtimeNs != 0 ? CtimeNs : MtimeNs;

    /// <summary>A non-directory's number of names (hard links): the field a directory uses for <see cref="Subdirs"/>, 0 meaning one.</summary>
    public readonly int LinkCount => Subdirs == 0 ? 1 : (int)Subdirs;

    /// <summary>The inode's access time: <see cref="AtimeNs"/>, or the modification time when that is 0.</summary>
    public readonly long AccessTimeNs => AtimeNs != 0 ? AtimeNs : MtimeNs;
}

/// <summary>
/// One directory entry of the base image. A directory's entries are contiguous and sorted by
/// the UTF-8 bytes of the name, so lookups binary-search.
/// <code>
///  0 NameOffset u32 (into the name pool)   4 NameLength u16   6 Reserved u16   8 ChildIno u32   12 Reserved u32
/// </code>
/// </summary>
[StructLayout(LayoutKind.Explicit, Size = Size)]
internal struct BaseDirent
{
    public const int Size = 16;

    [FieldOffset(0)] public uint NameOffset;
    [FieldOffset(4)] public ushort NameLength;
    [FieldOffset(8)] public uint ChildIno;
}
