using System.Runtime.InteropServices;

namespace Daxfs.Branching.Format;

/// <summary>
/// The region's immutable geometry, at offset 0. Written once at creation, magic last.
/// <code>
///  0 Magic u64 "DAXFSRG1"   8 FormatVersion u32   12 PageSize u32
/// 16 Capacity u64          24 ControlOffset u64
/// 32 SlotTableOffset u64   40 SlotCount u32      44 SlotSize u32
/// 48 BitmapOffset u64      56 BitmapLength u64
/// 64 BaseOffset u64        72 BaseLength u64
/// 80 ArenaOffset u64       88 ArenaLength u64
/// 96 CreatedNs i64
/// 104 ProcessTableOffset u64   112 ProcessSlots u32   116 ProcessEntrySize u32
/// 120 Flags u32 (1 = shared by several kernels)   124 Reserved[128]   252 Crc u32 (CRC32C of bytes 0..252)
/// </code>
/// </summary>
[StructLayout(LayoutKind.Explicit, Size = Size)]
internal struct Superblock
{
    public const int Size = 256;
    public const ulong MagicValue = 0x3147_5253_4658_4144; // "DAXFSRG1" little-endian

    [FieldOffset(0)] public ulong Magic;
    [FieldOffset(8)] public uint FormatVersion;
    [FieldOffset(12)] public uint PageSize;
    [FieldOffset(16)] public long Capacity;
    [FieldOffset(24)] public long ControlOffset;
    [FieldOffset(32)] public long SlotTableOffset;
    [FieldOffset(40)] public uint SlotCount;
    [FieldOffset(44)] public uint SlotSize;
    [FieldOffset(48)] public long BitmapOffset;
    [FieldOffset(56)] public long BitmapLength;
    [FieldOffset(64)] public long BaseOffset;
    [FieldOffset(72)] public long BaseLength;
    [FieldOffset(80)] public long ArenaOffset;
    [FieldOffset(88)] public long ArenaLength;
    [FieldOffset(96)] public long CreatedNs;
    [FieldOffset(104)] public long ProcessTableOffset;
    [FieldOffset(112)] public uint ProcessSlots;
    [FieldOffset(116)] public uint ProcessEntrySize;
    [FieldOffset(120)] public uint Flags;

    /// <summary><see cref="Flags"/> bit: processes of several kernels map the region (multikernel, CXL shared memory).</summary>
    public const uint FlagSharedAcrossKernels = 1;
    [FieldOffset(252)] public uint Crc;
}

/// <summary>
/// The shared mutable words of the region, one page after the superblock. Changed only with
/// <see cref="System.Threading.Interlocked"/> or volatile stores.
/// <code>
///  0 Magic u64 "DAXCTRL1"  8 LockOwner i64 (process word of the region lock's holder, 0 = free)
/// 16 BootTag i64 (regular files: boot tag of the kernel that last opened the region; another one means a reboot since)
/// 24 NextLogId i64         32 Reserved i64
/// 40 LockCount i64 (acquisitions, for diagnostics)
/// 48 ChangeCounter i64 (bumped by every change; a process whose last seen value differs re-reads the region)
/// 56 ReclaimEpoch i64 (space given up is parked under the current value, which then advances)
/// 64 Reserved[64]
/// </code>
/// The process table is an area of its own (<see cref="ProcessEntry"/>, placed by the superblock).
/// </summary>
[StructLayout(LayoutKind.Explicit, Size = Size)]
internal struct ControlBlock
{
    public const int Size = 128;
    public const ulong MagicValue = 0x314C_5254_4358_4144; // "DAXCTRL1"

    public const int LockOwnerOffset = 8;
    public const int BootTagOffset = 16;
    public const int NextLogIdOffset = 24;
    public const int Reserved32Offset = 32;
    public const int LockCountOffset = 40;
    public const int ChangeCounterOffset = 48;
    public const int ReclaimEpochOffset = 56;
    /// <summary>Format version 4 on: the region's capacity after it grew (0: the superblock's).</summary>
    public const int CapacityOffset = 64;
    /// <summary>
    /// Format version 4 on: nonzero when space may be marked in use that no log reaches (a store died, or left with
    /// blocks it could not give back); the next open that finds the region alone then rebuilds free space from every log.
    /// </summary>
    public const int SpaceAuditOffset = 72;
    /// <summary>Format version 4 on: the region offset of the checkpoint of main's view (docs/format.md section 6.3); 0 = none.</summary>
    public const int CheckpointOffset = 80;

    [FieldOffset(0)] public ulong Magic;
    [FieldOffset(LockOwnerOffset)] public long LockOwner;
    [FieldOffset(BootTagOffset)] public long BootTag;
    [FieldOffset(NextLogIdOffset)] public long NextLogId;
    [FieldOffset(Reserved32Offset)] public long Reserved32;
    [FieldOffset(LockCountOffset)] public long LockCount;
    [FieldOffset(ChangeCounterOffset)] public long ChangeCounter;
    [FieldOffset(ReclaimEpochOffset)] public long ReclaimEpoch;
    [FieldOffset(CapacityOffset)] public long Capacity;
    [FieldOffset(SpaceAuditOffset)] public long SpaceAudit;
    [FieldOffset(CheckpointOffset)] public long Checkpoint;
}

/// <summary>
/// One entry of the process table: a store that has the region open. The table starts at
/// <see cref="Superblock.ProcessTableOffset"/> and has <see cref="Superblock.ProcessSlots"/> entries.
/// <code>
///  0 Owner i64 (the store's word, see <see cref="ProcessWord"/>; 0 = free)
///  8 LeaseEpoch i64 (the oldest reclamation epoch the store's open read leases began in, 0 = none)
/// 16 BootId[16] (the boot id of the store's kernel; the owner word carries its tag)
/// 32 Pid u32 (the store's process, as its own PID namespace numbers it; for messages only)
/// 36 Reserved[28]
/// </code>
/// Liveness does not live in these bytes: the holder keeps an open-file-description lock on the entry's
/// first byte, which its kernel drops when the holder's descriptor of the region closes.
/// </summary>
[StructLayout(LayoutKind.Explicit, Size = Size)]
internal unsafe struct ProcessEntry
{
    public const int Size = 64;
    public const int OwnerOffset = 0;
    public const int LeaseEpochOffset = 8;
    public const int BootIdOffset = 16;
    public const int PidOffset = 32;

    /// <summary>Default number of entries of a new region's table.</summary>
    public const int DefaultSlots = 1024;

    /// <summary>Most entries a table may have.</summary>
    public const int MaxSlots = 1 << 16;

    [FieldOffset(OwnerOffset)] public long Owner;
    [FieldOffset(LeaseEpochOffset)] public long LeaseEpoch;
    [FieldOffset(BootIdOffset)] public fixed byte BootId[16];
    [FieldOffset(PidOffset)] public int Pid;
}

/// <summary>
/// A store's identity in one 64-bit word, so it is read, stored and compared atomically: the tag of its
/// kernel's boot id (CRC32C of the 16 bytes, never 0) in the high 32 bits and a number the store drew at
/// random when it opened the region (never 0, and not held by another entry when drawn) in the low 32 bits.
/// Two stores never share a word, even two of one process, or processes with the same pid in different
/// PID namespaces. Liveness comes from locks the kernel holds (see <c>RegionLock</c> and <c>ProcessTable</c>);
/// the tag tells whether this kernel can check them.
/// </summary>
internal static class ProcessWord
{
    public static long Make(uint bootTag, uint nonce) => (long)(((ulong)bootTag << 32) | nonce);

    public static uint Nonce(long word) => (uint)word;

    public static uint BootTag(long word) => (uint)((ulong)word >> 32);
}
