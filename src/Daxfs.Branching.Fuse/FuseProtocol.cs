using System.Runtime.InteropServices;

namespace Daxfs.Branching.Fuse;

/// <summary>
/// The FUSE kernel protocol, version 7.31, as the kernel defines it (little-endian, fixed layouts). Only
/// the messages this server speaks are declared.
/// </summary>
internal static class FuseProtocol
{
    public const uint Major = 7;
    public const uint Minor = 31;
    public const long RootId = 1;

    public const uint Lookup = 1, Forget = 2, GetAttr = 3, SetAttr = 4, ReadLink = 5, Symlink = 6, Mknod = 8, Mkdir = 9,
        Unlink = 10, Rmdir = 11, Rename = 12, Link = 13, Open = 14, Read = 15, Write = 16, StatFs = 17, Release = 18,
        Fsync = 20, SetXattr = 21, GetXattr = 22, ListXattr = 23, RemoveXattr = 24, Flush = 25, Init = 26, OpenDir = 27,
        ReadDir = 28, ReleaseDir = 29, FsyncDir = 30, GetLk = 31, SetLk = 32, SetLkw = 33, Access = 34, Create = 35,
        Interrupt = 36, Bmap = 37, Destroy = 38, Ioctl = 39, Poll = 40, BatchForget = 42, Fallocate = 43,
        ReadDirPlus = 44, Rename2 = 45, Lseek = 46, CopyFileRange = 47;

    // INIT flags
    public const uint AsyncRead = 1 << 0, BigWrites = 1 << 5, DoReaddirplus = 1 << 13, ReaddirplusAuto = 1 << 14,
        AutoInvalData = 1 << 12, PosixAcl = 1 << 20, DontMask = 1 << 6, ParallelDirops = 1 << 18, MaxPagesFlag = 1 << 22, CacheSymlinks = 1 << 23,
        ExportSupport = 1 << 4, AsyncDio = 1 << 15, NoOpendirSupport = 1 << 24, InitExt = 1u << 30;

    // INIT flags2 (the upper half of the 64-bit flags, offered when the kernel sets InitExt)
    public const uint DirectIoAllowMmap = 1 << (36 - 32);

    // OPEN reply flags
    public const uint DirectIo = 1 << 0, KeepCache = 1 << 1, CacheDir = 1 << 3;

    // SETATTR valid bits
    public const uint FattrMode = 1 << 0, FattrUid = 1 << 1, FattrGid = 1 << 2, FattrSize = 1 << 3, FattrAtime = 1 << 4,
        FattrMtime = 1 << 5, FattrFh = 1 << 6, FattrAtimeNow = 1 << 7, FattrMtimeNow = 1 << 8, FattrCtime = 1 << 10;

    public const uint RenameNoReplace = 1, RenameExchange = 2;

    // FALLOCATE modes
    public const uint FallocKeepSize = 0x01, FallocPunchHole = 0x02;

    public const int NotifyInvalInode = 2, NotifyInvalEntry = 3;

    /// <summary>The kernel's name for request <paramref name="opcode"/> (without the FUSE_ prefix).</summary>
    public static string Name(uint opcode) => opcode switch
    {
        Lookup => "LOOKUP", Forget => "FORGET", GetAttr => "GETATTR", SetAttr => "SETATTR", ReadLink => "READLINK",
        Symlink => "SYMLINK", Mknod => "MKNOD", Mkdir => "MKDIR", Unlink => "UNLINK", Rmdir => "RMDIR", Rename => "RENAME",
        Link => "LINK", Open => "OPEN", Read => "READ", Write => "WRITE", StatFs => "STATFS", Release => "RELEASE",
        Fsync => "FSYNC", SetXattr => "SETXATTR", GetXattr => "GETXATTR", ListXattr => "LISTXATTR",
        RemoveXattr => "REMOVEXATTR", Flush => "FLUSH", Init => "INIT", OpenDir => "OPENDIR", ReadDir => "READDIR",
        ReleaseDir => "RELEASEDIR", FsyncDir => "FSYNCDIR", GetLk => "GETLK", SetLk => "SETLK", SetLkw => "SETLKW",
        Access => "ACCESS", Create => "CREATE", Interrupt => "INTERRUPT", Bmap => "BMAP", Destroy => "DESTROY",
        Ioctl => "IOCTL", Poll => "POLL", BatchForget => "BATCH_FORGET", Fallocate => "FALLOCATE",
        ReadDirPlus => "READDIRPLUS", Rename2 => "RENAME2", Lseek => "LSEEK", CopyFileRange => "COPY_FILE_RANGE",
        _ => $"opcode {opcode}",
    };
}

[StructLayout(LayoutKind.Explicit, Size = 40)]
internal struct FuseInHeader
{
    [FieldOffset(0)] public uint Len;
    [FieldOffset(4)] public uint Opcode;
    [FieldOffset(8)] public ulong Unique;
    [FieldOffset(16)] public ulong NodeId;
    [FieldOffset(24)] public uint Uid;
    [FieldOffset(28)] public uint Gid;
    [FieldOffset(32)] public uint Pid;
    [FieldOffset(36)] public ushort TotalExtLen;
}

[StructLayout(LayoutKind.Explicit, Size = 16)]
internal struct FuseOutHeader
{
    [FieldOffset(0)] public uint Len;
    [FieldOffset(4)] public int Error;
    [FieldOffset(8)] public ulong Unique;
}

[StructLayout(LayoutKind.Explicit, Size = 88)]
internal struct FuseAttr
{
    [FieldOffset(0)] public ulong Ino;
    [FieldOffset(8)] public ulong Size;
    [FieldOffset(16)] public ulong Blocks;
    [FieldOffset(24)] public ulong Atime;
    [FieldOffset(32)] public ulong Mtime;
    [FieldOffset(40)] public ulong Ctime;
    [FieldOffset(48)] public uint AtimeNsec;
    [FieldOffset(52)] public uint MtimeNsec;
    [FieldOffset(56)] public uint CtimeNsec;
    [FieldOffset(60)] public uint Mode;
    [FieldOffset(64)] public uint Nlink;
    [FieldOffset(68)] public uint Uid;
    [FieldOffset(72)] public uint Gid;
    [FieldOffset(76)] public uint Rdev;
    [FieldOffset(80)] public uint BlkSize;
    [FieldOffset(84)] public uint Flags;
}

[StructLayout(LayoutKind.Explicit, Size = 128)]
internal struct FuseEntryOut
{
    [FieldOffset(0)] public ulong NodeId;
    [FieldOffset(8)] public ulong Generation;
    [FieldOffset(16)] public ulong EntryValid;
    [FieldOffset(24)] public ulong AttrValid;
    [FieldOffset(32)] public uint EntryValidNsec;
    [FieldOffset(36)] public uint AttrValidNsec;
    [FieldOffset(40)] public FuseAttr Attr;
}

[StructLayout(LayoutKind.Explicit, Size = 104)]
internal struct FuseAttrOut
{
    [FieldOffset(0)] public ulong AttrValid;
    [FieldOffset(8)] public uint AttrValidNsec;
    [FieldOffset(16)] public FuseAttr Attr;
}

[StructLayout(LayoutKind.Explicit, Size = 88)]
internal struct FuseSetAttrIn
{
    [FieldOffset(0)] public uint Valid;
    [FieldOffset(8)] public ulong Fh;
    [FieldOffset(16)] public ulong Size;
    [FieldOffset(24)] public ulong LockOwner;
    [FieldOffset(32)] public ulong Atime;
    [FieldOffset(40)] public ulong Mtime;
    [FieldOffset(48)] public ulong Ctime;
    [FieldOffset(56)] public uint AtimeNsec;
    [FieldOffset(60)] public uint MtimeNsec;
    [FieldOffset(64)] public uint CtimeNsec;
    [FieldOffset(68)] public uint Mode;
    [FieldOffset(76)] public uint Uid;
    [FieldOffset(80)] public uint Gid;
}

[StructLayout(LayoutKind.Explicit, Size = 16)]
internal struct FuseOpenOut
{
    [FieldOffset(0)] public ulong Fh;
    [FieldOffset(8)] public uint OpenFlags;
}

[StructLayout(LayoutKind.Explicit, Size = 40)]
internal struct FuseReadIn
{
    [FieldOffset(0)] public ulong Fh;
    [FieldOffset(8)] public ulong Offset;
    [FieldOffset(16)] public uint Size;
    [FieldOffset(20)] public uint ReadFlags;
}

[StructLayout(LayoutKind.Explicit, Size = 40)]
internal struct FuseWriteIn
{
    [FieldOffset(0)] public ulong Fh;
    [FieldOffset(8)] public ulong Offset;
    [FieldOffset(16)] public uint Size;
    [FieldOffset(20)] public uint WriteFlags;
}

[StructLayout(LayoutKind.Explicit, Size = 64)]
internal struct FuseInitIn
{
    [FieldOffset(0)] public uint Major;
    [FieldOffset(4)] public uint Minor;
    [FieldOffset(8)] public uint MaxReadahead;
    [FieldOffset(12)] public uint Flags;
    [FieldOffset(16)] public uint Flags2;
}

[StructLayout(LayoutKind.Explicit, Size = 64)]
internal struct FuseInitOut
{
    [FieldOffset(0)] public uint Major;
    [FieldOffset(4)] public uint Minor;
    [FieldOffset(8)] public uint MaxReadahead;
    [FieldOffset(12)] public uint Flags;
    [FieldOffset(16)] public ushort MaxBackground;
    [FieldOffset(18)] public ushort CongestionThreshold;
    [FieldOffset(20)] public uint MaxWrite;
    [FieldOffset(24)] public uint TimeGran;
    [FieldOffset(28)] public ushort MaxPages;
    [FieldOffset(32)] public uint Flags2;
}

[StructLayout(LayoutKind.Explicit, Size = 80)]
internal struct FuseStatfsOut
{
    [FieldOffset(0)] public ulong Blocks;
    [FieldOffset(8)] public ulong Bfree;
    [FieldOffset(16)] public ulong Bavail;
    [FieldOffset(24)] public ulong Files;
    [FieldOffset(32)] public ulong Ffree;
    [FieldOffset(40)] public uint Bsize;
    [FieldOffset(44)] public uint NameLen;
    [FieldOffset(48)] public uint Frsize;
}

[StructLayout(LayoutKind.Explicit, Size = 24)]
internal struct FuseNotifyInvalInode
{
    [FieldOffset(0)] public ulong Ino;
    [FieldOffset(8)] public long Offset;
    [FieldOffset(16)] public long Length;
}

[StructLayout(LayoutKind.Explicit, Size = 16)]
internal struct FuseMknodIn
{
    [FieldOffset(0)] public uint Mode;
    [FieldOffset(4)] public uint Rdev;
    [FieldOffset(8)] public uint Umask;
}

[StructLayout(LayoutKind.Explicit, Size = 8)]
internal struct FuseMkdirIn
{
    [FieldOffset(0)] public uint Mode;
    [FieldOffset(4)] public uint Umask;
}

[StructLayout(LayoutKind.Explicit, Size = 8)]
internal struct FuseRenameIn
{
    [FieldOffset(0)] public ulong NewDir;
}

[StructLayout(LayoutKind.Explicit, Size = 16)]
internal struct FuseRename2In
{
    [FieldOffset(0)] public ulong NewDir;
    [FieldOffset(8)] public uint Flags;
}

[StructLayout(LayoutKind.Explicit, Size = 8)]
internal struct FuseOpenIn
{
    [FieldOffset(0)] public uint Flags;
    [FieldOffset(4)] public uint OpenFlags;
}

[StructLayout(LayoutKind.Explicit, Size = 16)]
internal struct FuseCreateIn
{
    [FieldOffset(0)] public uint Flags;
    [FieldOffset(4)] public uint Mode;
    [FieldOffset(8)] public uint Umask;
    [FieldOffset(12)] public uint OpenFlags;
}

[StructLayout(LayoutKind.Explicit, Size = 24)]
internal struct FuseReleaseIn
{
    [FieldOffset(0)] public ulong Fh;
    [FieldOffset(8)] public uint Flags;
    [FieldOffset(12)] public uint ReleaseFlags;
    [FieldOffset(16)] public ulong LockOwner;
}

[StructLayout(LayoutKind.Explicit, Size = 8)]
internal struct FuseWriteOut
{
    [FieldOffset(0)] public uint Size;
}

[StructLayout(LayoutKind.Explicit, Size = 24)]
internal struct FuseDirent
{
    [FieldOffset(0)] public ulong Ino;
    [FieldOffset(8)] public ulong Off;
    [FieldOffset(16)] public uint NameLen;
    [FieldOffset(20)] public uint Type;
}

[StructLayout(LayoutKind.Explicit, Size = 16)]
internal struct FuseNotifyInvalEntry
{
    [FieldOffset(0)] public ulong Parent;
    [FieldOffset(8)] public uint NameLen;
    [FieldOffset(12)] public uint Flags;
}

[StructLayout(LayoutKind.Explicit, Size = 32)]
internal struct FuseFallocateIn
{
    [FieldOffset(0)] public ulong Fh;
    [FieldOffset(8)] public ulong Offset;
    [FieldOffset(16)] public ulong Length;
    [FieldOffset(24)] public uint Mode;
}

[StructLayout(LayoutKind.Explicit, Size = 8)]
internal struct FuseLinkIn
{
    [FieldOffset(0)] public ulong OldNodeId;
}

[StructLayout(LayoutKind.Explicit, Size = 8)]
internal struct FuseGetxattrIn
{
    [FieldOffset(0)] public uint Size;
}

[StructLayout(LayoutKind.Explicit, Size = 8)]
internal struct FuseGetxattrOut
{
    [FieldOffset(0)] public uint Size;
}

[StructLayout(LayoutKind.Explicit, Size = 8)]
internal struct FuseSetxattrIn
{
    [FieldOffset(0)] public uint Size;
    [FieldOffset(4)] public uint Flags;
}
