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
/// 96 CreatedNs i64        104 Reserved[148]     252 Crc u32 (CRC32C of bytes 0..252)
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
    [FieldOffset(252)] public uint Crc;
}

/// <summary>
/// The shared mutable words of the region, one page after the superblock. Changed only with
/// <see cref="System.Threading.Interlocked"/> or volatile stores.
/// <code>
///  0 Magic u64 "DAXCTRL1"  8 LockOwner i64 (process word of the region lock's holder, 0 = free)
/// 16 Reserved i64
/// 24 NextLogId i64         32 Reserved i64
/// 40 LockCount i64 (acquisitions, for diagnostics)
/// 48 ChangeCounter i64 (bumped by every change; a process whose last seen value differs re-reads the region)
/// 56 ReclaimEpoch i64 (space given up is parked under the current value, which then advances)
/// 64 Reserved[64]
/// </code>
/// The process table follows at <see cref="ProcessTableOffset"/> (relative to the control block):
/// <see cref="ProcessSlots"/> entries of 16 bytes, each <c>Owner i64</c> (see <see cref="ProcessWord"/>, 0 = free)
/// and <c>LeaseEpoch i64</c> (the oldest reclamation epoch that process's read leases may still see, 0 = none).
/// </summary>
[StructLayout(LayoutKind.Explicit, Size = Size)]
internal struct ControlBlock
{
    public const int Size = 128;
    public const ulong MagicValue = 0x314C_5254_4358_4144; // "DAXCTRL1"

    public const int LockOwnerOffset = 8;
    public const int Reserved16Offset = 16;
    public const int NextLogIdOffset = 24;
    public const int Reserved32Offset = 32;
    public const int LockCountOffset = 40;
    public const int ChangeCounterOffset = 48;
    public const int ReclaimEpochOffset = 56;
    public const int ProcessTableOffset = 512;
    public const int ProcessEntrySize = 16;
    public const int ProcessSlots = 64;

    [FieldOffset(0)] public ulong Magic;
    [FieldOffset(LockOwnerOffset)] public long LockOwner;
    [FieldOffset(Reserved16Offset)] public long Reserved16;
    [FieldOffset(NextLogIdOffset)] public long NextLogId;
    [FieldOffset(Reserved32Offset)] public long Reserved32;
    [FieldOffset(LockCountOffset)] public long LockCount;
    [FieldOffset(ChangeCounterOffset)] public long ChangeCounter;
    [FieldOffset(ReclaimEpochOffset)] public long ReclaimEpoch;
}

/// <summary>
/// A process's identity in one 64-bit word, so it is read and compared atomically: the pid in the low 22
/// bits (Linux pids are below 2^22) and the process start time (clock ticks since boot) above. A reused
/// pid has another start time, so a dead owner is never mistaken for a live one.
/// </summary>
internal static class ProcessWord
{
    public static long Make(long pid, long startTicks) => (startTicks << 22) | (pid & 0x3FFFFF);

    public static int Pid(long word) => (int)(word & 0x3FFFFF);

    public static long Start(long word) => (long)((ulong)word >> 22);
}
