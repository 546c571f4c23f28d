using System.Runtime.InteropServices;

namespace Daxfs.Branching.Format;

/// <summary>
/// Head of a delta-log block: a run of arena pages owned by one log. Records follow it.
/// <code>
///  0 Magic u32 "BLK1"   4 Pages u32   8 LogId i64   16 Next i64 (next block, 0 = none yet)
/// 24 Crc u32 (CRC32C of bytes 0..16)  28 Used u32 (bytes of the block in use, set when the log moves on)
/// </code>
/// <see cref="Used"/> and then <see cref="Next"/> are set when the log moves to a new block, after the
/// header was checksummed, so the checksum leaves them out.
/// </summary>
[StructLayout(LayoutKind.Explicit, Size = Size)]
internal struct BlockHeader
{
    public const int Size = 32;
    public const uint MagicValue = 0x314B_4C42; // "BLK1"
    public const int NextOffset = 16;
    public const int UsedOffset = 28;

    [FieldOffset(0)] public uint Magic;
    [FieldOffset(4)] public uint Pages;
    [FieldOffset(8)] public long LogId;
    [FieldOffset(NextOffset)] public long Next;
    [FieldOffset(24)] public uint Crc;
    [FieldOffset(UsedOffset)] public uint Used;

    /// <summary>Writes a fresh block's header at <paramref name="block"/>: not yet linked (<c>Next</c> and <c>Used</c> 0), checksummed.</summary>
    public static void Init(Media.Region region, long block, long pages, long logId)
    {
        ref var h = ref region.At<BlockHeader>(block);
        h = default;
        h.Magic = MagicValue;
        h.Pages = (uint)pages;
        h.LogId = logId;
        h.Crc = Crc32C.Compute(region.Span(block, NextOffset));
    }
}

/// <summary>
/// Head of a delta-log record. The body follows; the record is padded to a multiple of 8 bytes.
/// <code>
///  0 Length u32 (whole record, padded)   4 Kind u16   6 Flags u16
///  8 LogId i64 (the owning log; a record left over from a block's earlier life fails this check)
/// 16 TimeNs i64   24 Crc u32 (CRC32C of bytes 0..24 and 28..Length)   28 BodyLength u32
/// </code>
/// </summary>
[StructLayout(LayoutKind.Explicit, Size = Size)]
internal struct RecordHeader
{
    public const int Size = 32;
    public const int CrcOffset = 24;

    [FieldOffset(0)] public uint Length;
    [FieldOffset(4)] public ushort Kind;
    [FieldOffset(6)] public ushort Flags;
    [FieldOffset(8)] public long LogId;
    [FieldOffset(16)] public long TimeNs;
    [FieldOffset(CrcOffset)] public uint Crc;
    [FieldOffset(28)] public uint BodyLength;

    /// <summary>
    /// Writes the header of a record of <paramref name="length"/> bytes (a multiple of 8) at <paramref name="at"/>,
    /// checksum 0, and zeroes its padding so the checksum covers defined bytes. The body is the caller's.
    /// </summary>
    public static void Begin(Media.Region region, long at, long length, RecordKind kind, long logId, long timeNs, int bodyLength)
    {
        region.Check(at, length);
        ref var r = ref region.At<RecordHeader>(at);
        r.Length = (uint)length;
        r.Kind = (ushort)kind;
        r.Flags = 0;
        r.LogId = logId;
        r.TimeNs = timeNs;
        r.Crc = 0;
        r.BodyLength = (uint)bodyLength;
        region.WritableSpan(at + Size + bodyLength, (int)(length - Size - bodyLength)).Clear();
    }
}

/// <summary>Kinds of delta-log record.</summary>
internal enum RecordKind : ushort
{
    CreateFile = 1,
    Mkdir = 2,
    Symlink = 3,
    Remove = 4,
    Rename = 5,
    Write = 6,
    Truncate = 7,
    SetAttr = 8,
    Merge = 9,
    Version = 10,
    Tag = 11,
    Base = 12,
    /// <summary>Ends a file kept open after its last name went (format version 3 on).</summary>
    Release = 13,
    /// <summary>Creates a FIFO, socket or device node (format version 3 on).</summary>
    Mknod = 14,
    /// <summary>Gives an existing non-directory one more name (a hard link; format version 3 on).</summary>
    Link = 15,
    /// <summary>Sets an extended attribute (format version 3 on).</summary>
    SetXattr = 16,
    /// <summary>Removes an extended attribute (format version 3 on).</summary>
    RemoveXattr = 17,
    /// <summary>Sets or removes one of the region's settings, a named string (in main's log; format version 5 on).</summary>
    Setting = 18,
}
