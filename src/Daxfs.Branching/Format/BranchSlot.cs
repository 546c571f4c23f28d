using System.Runtime.InteropServices;

namespace Daxfs.Branching.Format;

/// <summary>State word of a branch slot.</summary>
internal enum SlotState : uint
{
    /// <summary>Unused; may be taken by a fork.</summary>
    Free = 0,
    /// <summary>Holds a live branch.</summary>
    Live = 1,
    /// <summary>Holds a branch that was invalidated; kept so its name answers "invalidated" until the slot is reused.</summary>
    Invalidated = 2,
    /// <summary>
    /// Holds a branch that a commit to main invalidated and that was forked with <see cref="BranchSlot.FlagKeep"/>:
    /// like <see cref="Invalidated"/>, but Head and Tail still name its log, whose blocks stay in use until it is
    /// rebased or discarded.
    /// </summary>
    Kept = 3,
}

/// <summary>
/// One entry of the branch table. Slot 0 is main. A fork fills every field, then stores
/// <see cref="State"/> = Live last; <see cref="Tail"/> is the publication word of the branch's log.
/// <code>
///   0 State u32        4 Depth u32 (main = 0)      8 Generation i64 (bumped each time the slot is reused)
///  16 ParentSlot u32  20 NameLength u32          24 ParentGeneration i64
///  32 ForkEpoch i64 (parent's Epoch when forked) 40 Epoch i64 (commits merged into this branch)
///  48 LogId i64       56 Head i64 (first block, 0 = empty log)   64 Tail i64 (end of last published record)
///  72 CreatedNs i64   80 LiveChildren u32          84 IdentityCrc u32 (see <see cref="ComputeIdentityCrc"/>)
///  88 Flags u32 (1 = forked from a past version of main, 2 = keep the log if a commit invalidates it)   92 Reserved u32
///  96 Name[64] UTF-8  160 SyncedTail i64 (the tail as of the last publication flushed to the file; 0 = none)
/// 168 Reserved[88]
/// </code>
/// </summary>
[StructLayout(LayoutKind.Explicit, Size = Size)]
internal unsafe struct BranchSlot
{
    public const int Size = 256;
    public const int StateOffset = 0;
    public const int GenerationOffset = 8;
    public const int EpochOffset = 40;
    public const int HeadOffset = 56;
    public const int TailOffset = 64;
    public const int LiveChildrenOffset = 80;
    public const int NameOffset = 96;
    public const int SyncedTailOffset = 160;

    [FieldOffset(StateOffset)] public uint State;
    [FieldOffset(4)] public uint Depth;
    [FieldOffset(GenerationOffset)] public long Generation;
    [FieldOffset(16)] public uint ParentSlot;
    [FieldOffset(20)] public uint NameLength;
    [FieldOffset(24)] public long ParentGeneration;
    [FieldOffset(32)] public long ForkEpoch;
    [FieldOffset(EpochOffset)] public long Epoch;
    [FieldOffset(48)] public long LogId;
    [FieldOffset(HeadOffset)] public long Head;
    [FieldOffset(TailOffset)] public long Tail;
    [FieldOffset(72)] public long CreatedNs;
    [FieldOffset(LiveChildrenOffset)] public uint LiveChildren;
    [FieldOffset(84)] public uint IdentityCrc;
    [FieldOffset(FlagsOffset)] public uint Flags;

    /// <summary>Version 4 on: how many cleanings replaced a part of this log after its first block (section 10.1 of format.md).</summary>
    [FieldOffset(CleaningsOffset)] public long Cleanings;

    public const int CleaningsOffset = 168;

    public const int FlagsOffset = 88;

    /// <summary><see cref="Flags"/> bit: the branch was forked from version <see cref="ForkEpoch"/> of main, not from main's current state.</summary>
    public const uint FlagDetached = 1;

    /// <summary><see cref="Flags"/> bit: when a commit to main invalidates the branch, its slot becomes <see cref="SlotState.Kept"/>, log and all.</summary>
    public const uint FlagKeep = 2;
    [FieldOffset(NameOffset)] public fixed byte Name[FormatConstants.MaxBranchName];

    /// <summary>
    /// The log's tail as of its last publication that was flushed to the file (a commit, a merge, a tag, a
    /// compaction); 0 when none was. On a regular file, records up to it survived any machine crash whole:
    /// only a record beyond it can have been torn by one.
    /// </summary>
    [FieldOffset(SyncedTailOffset)] public long SyncedTail;

    /// <summary>
    /// CRC32C of the fields a fork writes once and never changes: bytes 4..40 (depth, generation, parent,
    /// name length, parent generation, fork epoch), 48..56 (log id), 72..80 (creation time), 88..96 (flags)
    /// and the name.
    /// The words that change afterwards (state, epoch, head, tail, live children) are single atomic stores
    /// and are checked against the logs instead.
    /// </summary>
    public static uint ComputeIdentityCrc(in BranchSlot slot)
    {
        fixed (BranchSlot* p = &slot)
        {
            var bytes = new ReadOnlySpan<byte>(p, Size);
            uint crc = Crc32C.Append(Crc32C.Seed, bytes[4..40]);
            crc = Crc32C.Append(crc, bytes[48..56]);
            crc = Crc32C.Append(crc, bytes[72..80]);
            crc = Crc32C.Append(crc, bytes[88..96]);
            crc = Crc32C.Append(crc, bytes[NameOffset..(NameOffset + FormatConstants.MaxBranchName)]);
            return Crc32C.Finish(crc);
        }
    }
}
