using System.Buffers.Binary;
using System.Text;

namespace Daxfs.Branching.Format;

/// <summary>A reference to a span of one delta log: (log id, first block, end of the last record).</summary>
internal readonly record struct LogRef(long LogId, long Head, long Tail)
{
    public const int Size = 24;
    public bool IsEmpty => Head == 0;
}

/// <summary>A decoded record: the fields every kind may carry. Produced only by <see cref="RecordCodec.Decode"/>.</summary>
internal sealed class Rec
{
    public RecordKind Kind;
    public long TimeNs;
    /// <summary>Region offset of the record's header.</summary>
    public long Offset;
    /// <summary>Version records reuse <see cref="Size"/> for their record count and <see cref="FileOffset"/> for their log bytes.</summary>
    public long ParentIno, Ino, DstParent, FileOffset, Size, MtimeNs, AtimeNs, Epoch, Seq;
    public uint Mode, Uid, Gid, Mask, Flags;
    public string Name = "", DstName = "", Target = "", Message = "", Source = "";
    /// <summary>SetXattr: the value.</summary>
    public byte[] Value = [];
    public long PayloadOffset;
    public int PayloadLength;
    public LogRef[] Logs = [];
}

/// <summary>SetAttr mask bits.</summary>
[Flags]
internal enum AttrMask : uint
{
    None = 0,
    Mode = 1,
    Uid = 2,
    Gid = 4,
    Mtime = 8,
    /// <summary>Format version 3 on: the body is 40 bytes, the access time at 32.</summary>
    Atime = 16,
}

/// <summary>Remove flags (format version 3 on; 0 before).</summary>
[Flags]
internal enum RemoveFlags : uint
{
    None = 0,
    /// <summary>The removed non-directory stays, with no name and a link count of 0, until a Release record: a process still has it open.</summary>
    KeepOpen = 1,
}

/// <summary>Rename flags.</summary>
[Flags]
internal enum RenameFlags : uint
{
    None = 0,
    NoReplace = 1,
    /// <summary>Both names exist and swap their inodes (format version 3 on).</summary>
    Exchange = 2,
    /// <summary>A replaced non-directory stays as by <see cref="RemoveFlags.KeepOpen"/> (format version 3 on).</summary>
    KeepReplaced = 4,
}

/// <summary>
/// Encodes and decodes record bodies (little-endian, fields as laid out in docs/format.md). Decoding
/// treats the bytes as untrusted: every length is checked against the body before use.
/// </summary>
internal static class RecordCodec
{
    /// <summary>Body offset of a write record's payload (so the payload is 8-byte aligned in the region).</summary>
    public const int WritePayloadOffset = 16;

    /// <summary>Bytes of a version record's body before its log references.</summary>
    public const int VersionFixed = 40;

    private static readonly UTF8Encoding s_utf8 = new(false, true);

    public static int Utf8Length(string s) => s_utf8.GetByteCount(s);

    // ---- encoders: each returns the body length, writing into dst when it is large enough ----

    /// <summary>Mknod: as a create, then the device number (40 bytes + name); <paramref name="mode"/> carries the type bits.</summary>
    public static int EncodeMknod(Span<byte> dst, long parentIno, long ino, uint mode, uint uid, uint gid, string name, long rdev)
    {
        int nl = Utf8Length(name);
        int len = 40 + nl;
        if (dst.Length < len) return len;
        EncodeCreate(dst, parentIno, ino, mode, uid, gid, "", "");
        BinaryPrimitives.WriteUInt16LittleEndian(dst[28..], (ushort)nl);
        BinaryPrimitives.WriteInt64LittleEndian(dst[32..], rdev);
        s_utf8.GetBytes(name, dst[40..]);
        return len;
    }

    public static int EncodeCreate(Span<byte> dst, long parentIno, long ino, uint mode, uint uid, uint gid, string name, string target)
    {
        int nl = Utf8Length(name), tl = Utf8Length(target);
        int len = 32 + nl + tl;
        if (dst.Length < len) return len;
        BinaryPrimitives.WriteInt64LittleEndian(dst, parentIno);
        BinaryPrimitives.WriteInt64LittleEndian(dst[8..], ino);
        BinaryPrimitives.WriteUInt32LittleEndian(dst[16..], mode);
        BinaryPrimitives.WriteUInt32LittleEndian(dst[20..], uid);
        BinaryPrimitives.WriteUInt32LittleEndian(dst[24..], gid);
        BinaryPrimitives.WriteUInt16LittleEndian(dst[28..], (ushort)nl);
        BinaryPrimitives.WriteUInt16LittleEndian(dst[30..], (ushort)tl);
        s_utf8.GetBytes(name, dst[32..]);
        s_utf8.GetBytes(target, dst[(32 + nl)..]);
        return len;
    }

    public static int EncodeRemove(Span<byte> dst, long parentIno, string name, RemoveFlags flags = RemoveFlags.None)
    {
        int nl = Utf8Length(name);
        int len = 16 + nl;
        if (dst.Length < len) return len;
        BinaryPrimitives.WriteInt64LittleEndian(dst, parentIno);
        BinaryPrimitives.WriteUInt32LittleEndian(dst[8..], (uint)nl);
        BinaryPrimitives.WriteUInt32LittleEndian(dst[12..], (uint)flags);
        s_utf8.GetBytes(name, dst[16..]);
        return len;
    }

    public static void EncodeRelease(Span<byte> dst, long ino) => BinaryPrimitives.WriteInt64LittleEndian(dst, ino);

    /// <summary>SetXattr: 0 Ino, 8 Flags u32 (1 create only, 2 replace only), 12 NameLength u16, 14 reserved, 16 ValueLength u32, 20 reserved, 24 name, value.</summary>
    public static int EncodeSetXattr(Span<byte> dst, long ino, uint flags, string name, ReadOnlySpan<byte> value)
    {
        int nl = Utf8Length(name);
        int len = 24 + nl + value.Length;
        if (dst.Length < len) return len;
        BinaryPrimitives.WriteInt64LittleEndian(dst, ino);
        BinaryPrimitives.WriteUInt32LittleEndian(dst[8..], flags);
        BinaryPrimitives.WriteUInt16LittleEndian(dst[12..], (ushort)nl);
        BinaryPrimitives.WriteUInt16LittleEndian(dst[14..], 0);
        BinaryPrimitives.WriteUInt32LittleEndian(dst[16..], (uint)value.Length);
        BinaryPrimitives.WriteUInt32LittleEndian(dst[20..], 0);
        s_utf8.GetBytes(name, dst[24..]);
        value.CopyTo(dst[(24 + nl)..]);
        return len;
    }

    /// <summary>RemoveXattr: 0 Ino, 8 NameLength u32, 12 reserved, 16 name.</summary>
    public static int EncodeRemoveXattr(Span<byte> dst, long ino, string name)
    {
        int nl = Utf8Length(name);
        int len = 16 + nl;
        if (dst.Length < len) return len;
        BinaryPrimitives.WriteInt64LittleEndian(dst, ino);
        BinaryPrimitives.WriteUInt32LittleEndian(dst[8..], (uint)nl);
        BinaryPrimitives.WriteUInt32LittleEndian(dst[12..], 0);
        s_utf8.GetBytes(name, dst[16..]);
        return len;
    }

    /// <summary>Link: 0 ParentIno (the directory that gains the name), 8 Ino (the inode named), 16 NameLength u32, 20 reserved, 24 name.</summary>
    public static int EncodeLink(Span<byte> dst, long parentIno, long ino, string name)
    {
        int nl = Utf8Length(name);
        int len = 24 + nl;
        if (dst.Length < len) return len;
        BinaryPrimitives.WriteInt64LittleEndian(dst, parentIno);
        BinaryPrimitives.WriteInt64LittleEndian(dst[8..], ino);
        BinaryPrimitives.WriteUInt32LittleEndian(dst[16..], (uint)nl);
        BinaryPrimitives.WriteUInt32LittleEndian(dst[20..], 0);
        s_utf8.GetBytes(name, dst[24..]);
        return len;
    }

    public static int EncodeRename(Span<byte> dst, long srcParent, string srcName, long dstParent, string dstName, RenameFlags flags)
    {
        int sl = Utf8Length(srcName), dl = Utf8Length(dstName);
        int len = 24 + sl + dl;
        if (dst.Length < len) return len;
        BinaryPrimitives.WriteInt64LittleEndian(dst, srcParent);
        BinaryPrimitives.WriteInt64LittleEndian(dst[8..], dstParent);
        BinaryPrimitives.WriteUInt32LittleEndian(dst[16..], (uint)flags);
        BinaryPrimitives.WriteUInt16LittleEndian(dst[20..], (ushort)sl);
        BinaryPrimitives.WriteUInt16LittleEndian(dst[22..], (ushort)dl);
        s_utf8.GetBytes(srcName, dst[24..]);
        s_utf8.GetBytes(dstName, dst[(24 + sl)..]);
        return len;
    }

    public static int EncodeWriteHeader(Span<byte> dst, long ino, long offset)
    {
        BinaryPrimitives.WriteInt64LittleEndian(dst, ino);
        BinaryPrimitives.WriteInt64LittleEndian(dst[8..], offset);
        return WritePayloadOffset;
    }

    public static int EncodeTruncate(Span<byte> dst, long ino, long size)
    {
        if (dst.Length < 16) return 16;
        BinaryPrimitives.WriteInt64LittleEndian(dst, ino);
        BinaryPrimitives.WriteInt64LittleEndian(dst[8..], size);
        return 16;
    }

    public static int EncodeSetAttr(Span<byte> dst, long ino, AttrMask mask, uint mode, uint uid, uint gid, long mtimeNs, long atimeNs = 0)
    {
        int len = (mask & AttrMask.Atime) != 0 ? 40 : 32;
        if (dst.Length < len) return len;
        if (len == 40) BinaryPrimitives.WriteInt64LittleEndian(dst[32..], atimeNs);
        BinaryPrimitives.WriteInt64LittleEndian(dst, ino);
        BinaryPrimitives.WriteUInt32LittleEndian(dst[8..], (uint)mask);
        BinaryPrimitives.WriteUInt32LittleEndian(dst[12..], mode);
        BinaryPrimitives.WriteUInt32LittleEndian(dst[16..], uid);
        BinaryPrimitives.WriteUInt32LittleEndian(dst[20..], gid);
        BinaryPrimitives.WriteInt64LittleEndian(dst[24..], mtimeNs);
        return len;
    }

    /// <summary>Merge (commit to parent): the child's log joins the parent's history.</summary>
    public static int EncodeMerge(Span<byte> dst, LogRef child, long epoch, string message)
    {
        int ml = Utf8Length(message);
        int len = 40 + ml;
        if (dst.Length < len) return len;
        WriteRef(dst, child);
        BinaryPrimitives.WriteInt64LittleEndian(dst[24..], epoch);
        BinaryPrimitives.WriteUInt32LittleEndian(dst[32..], (uint)ml);
        BinaryPrimitives.WriteUInt32LittleEndian(dst[36..], 0);
        s_utf8.GetBytes(message, dst[40..]);
        return len;
    }

    /// <summary>Version (commit to main): the chain's logs, oldest first, join main's history.</summary>
    public static int EncodeVersion(Span<byte> dst, long seq, ReadOnlySpan<LogRef> chain, string source, string message, long records, long bytes)
    {
        int sl = Utf8Length(source), ml = Utf8Length(message);
        int len = VersionFixed + chain.Length * LogRef.Size + sl + ml;
        if (dst.Length < len) return len;
        BinaryPrimitives.WriteInt64LittleEndian(dst, seq);
        BinaryPrimitives.WriteUInt32LittleEndian(dst[8..], (uint)chain.Length);
        BinaryPrimitives.WriteUInt32LittleEndian(dst[12..], (uint)sl);
        BinaryPrimitives.WriteUInt32LittleEndian(dst[16..], (uint)ml);
        BinaryPrimitives.WriteUInt32LittleEndian(dst[20..], 0);
        BinaryPrimitives.WriteInt64LittleEndian(dst[24..], records);
        BinaryPrimitives.WriteInt64LittleEndian(dst[32..], bytes);
        int p = VersionFixed;
        foreach (var r in chain) { WriteRef(dst[p..], r); p += LogRef.Size; }
        s_utf8.GetBytes(source, dst[p..]);
        s_utf8.GetBytes(message, dst[(p + sl)..]);
        return len;
    }

    /// <summary>Tag (in main's log): names a version, or with <paramref name="deleted"/> removes the name.</summary>
    public static int EncodeTag(Span<byte> dst, long seq, string name, bool deleted)
    {
        int nl = Utf8Length(name);
        int len = 16 + nl;
        if (dst.Length < len) return len;
        BinaryPrimitives.WriteInt64LittleEndian(dst, seq);
        BinaryPrimitives.WriteUInt32LittleEndian(dst[8..], deleted ? 1u : 0u);
        BinaryPrimitives.WriteUInt32LittleEndian(dst[12..], (uint)nl);
        s_utf8.GetBytes(name, dst[16..]);
        return len;
    }

    /// <summary>Setting (in main's log): names a string, or with <paramref name="value"/> null removes the name.</summary>
    public static int EncodeSetting(Span<byte> dst, string name, string? value)
    {
        int nl = Utf8Length(name), vl = value is null ? 0 : Utf8Length(value);
        int len = 16 + nl + vl;
        if (dst.Length < len) return len;
        BinaryPrimitives.WriteUInt32LittleEndian(dst, value is null ? 1u : 0u);
        BinaryPrimitives.WriteUInt32LittleEndian(dst[4..], (uint)vl);
        BinaryPrimitives.WriteUInt32LittleEndian(dst[8..], 0);
        BinaryPrimitives.WriteUInt32LittleEndian(dst[12..], (uint)nl);
        s_utf8.GetBytes(name, dst[16..]);
        if (value is not null) s_utf8.GetBytes(value, dst[(16 + nl)..]);
        return len;
    }

    /// <summary>Base (in main's log): from here on, main's history starts at version <paramref name="seq"/>, whose tree is the base image at <paramref name="offset"/>.</summary>
    public static int EncodeBase(Span<byte> dst, long seq, long offset, long length, long nextIno)
    {
        const int len = 32;
        if (dst.Length < len) return len;
        BinaryPrimitives.WriteInt64LittleEndian(dst, seq);
        BinaryPrimitives.WriteInt64LittleEndian(dst[8..], offset);
        BinaryPrimitives.WriteInt64LittleEndian(dst[16..], length);
        BinaryPrimitives.WriteInt64LittleEndian(dst[24..], nextIno);
        return len;
    }

    private static void WriteRef(Span<byte> dst, LogRef r)
    {
        BinaryPrimitives.WriteInt64LittleEndian(dst, r.LogId);
        BinaryPrimitives.WriteInt64LittleEndian(dst[8..], r.Head);
        BinaryPrimitives.WriteInt64LittleEndian(dst[16..], r.Tail);
    }

    // ---- decoder ----

    /// <summary>Decodes a record body. <paramref name="bodyOffset"/> is the region offset of the body.</summary>
    public static void Decode(Rec r, RecordKind kind, long timeNs, long recordOffset, ReadOnlySpan<byte> body, long bodyOffset)
    {
        r.Kind = kind;
        r.TimeNs = timeNs;
        r.Offset = recordOffset;
        switch (kind)
        {
            case RecordKind.CreateFile:
            case RecordKind.Mkdir:
            case RecordKind.Symlink:
            {
                CreateHead(r, body, 32, recordOffset);
                int nl = BinaryPrimitives.ReadUInt16LittleEndian(body[28..]);
                int tl = BinaryPrimitives.ReadUInt16LittleEndian(body[30..]);
                Need(body, 32 + nl + tl, recordOffset);
                r.Name = Str(body.Slice(32, nl), recordOffset);
                r.Target = Str(body.Slice(32 + nl, tl), recordOffset);
                break;
            }
            case RecordKind.Remove:
            {
                Need(body, 16, recordOffset);
                r.ParentIno = I64(body, 0);
                r.Flags = U32(body, 12);
                if ((r.Flags & ~(uint)RemoveFlags.KeepOpen) != 0)
                    Bad(recordOffset, $"unknown remove flags {r.Flags:X}");
                r.Name = NameAt16(body, U32(body, 8), Format.FormatConstants.MaxNameLength, recordOffset, "name length out of range");
                break;
            }
            case RecordKind.Mknod:
            {
                CreateHead(r, body, 40, recordOffset);
                int nl = BinaryPrimitives.ReadUInt16LittleEndian(body[28..]);
                r.Size = I64(body, 32); // the device number
                Need(body, 40 + nl, recordOffset);
                r.Name = Str(body.Slice(40, nl), recordOffset);
                r.Target = "";
                if (!Index.View.IsSpecial(Index.View.KindOfMode(r.Mode)))
                    Bad(recordOffset, $"mknod of mode {r.Mode:X}: not a FIFO, socket or device");
                break;
            }
            case RecordKind.SetXattr:
            {
                Need(body, 24, recordOffset);
                r.Ino = I64(body, 0);
                r.Flags = U32(body, 8);
                int nl = BinaryPrimitives.ReadUInt16LittleEndian(body[12..]);
                uint vl = U32(body, 16);
                if (r.Flags > 2 || nl < 1 || nl > XattrTable.MaxName || vl > XattrTable.MaxValue)
                    Bad(recordOffset, "attribute flags, name or value length out of range");
                Need(body, 24 + nl + (int)vl, recordOffset);
                r.Name = Str(body.Slice(24, nl), recordOffset);
                r.Value = body.Slice(24 + nl, (int)vl).ToArray();
                break;
            }
            case RecordKind.RemoveXattr:
            {
                Need(body, 16, recordOffset);
                r.Ino = I64(body, 0);
                r.Name = NameAt16(body, U32(body, 8), XattrTable.MaxName, recordOffset, "attribute name length out of range");
                break;
            }
            case RecordKind.Link:
            {
                Need(body, 24, recordOffset);
                r.ParentIno = I64(body, 0);
                r.Ino = I64(body, 8);
                int nl = (int)U32(body, 16);
                if (nl < 1 || nl > Format.FormatConstants.MaxNameLength) Bad(recordOffset, "link name length out of range");
                Need(body, 24 + nl, recordOffset);
                r.Name = Str(body.Slice(24, nl), recordOffset);
                break;
            }
            case RecordKind.Release:
            {
                Need(body, 8, recordOffset);
                r.Ino = I64(body, 0);
                break;
            }
            case RecordKind.Rename:
            {
                Need(body, 24, recordOffset);
                r.ParentIno = I64(body, 0);
                r.DstParent = I64(body, 8);
                r.Flags = U32(body, 16);
                if ((r.Flags & ~(uint)(RenameFlags.NoReplace | RenameFlags.Exchange | RenameFlags.KeepReplaced)) != 0
                    || (r.Flags & (uint)(RenameFlags.NoReplace | RenameFlags.Exchange)) == (uint)(RenameFlags.NoReplace | RenameFlags.Exchange))
                    Bad(recordOffset, $"bad rename flags {r.Flags:X}");
                int sl = BinaryPrimitives.ReadUInt16LittleEndian(body[20..]);
                int dl = BinaryPrimitives.ReadUInt16LittleEndian(body[22..]);
                Need(body, 24 + sl + dl, recordOffset);
                r.Name = Str(body.Slice(24, sl), recordOffset);
                r.DstName = Str(body.Slice(24 + sl, dl), recordOffset);
                break;
            }
            case RecordKind.Write:
                Need(body, WritePayloadOffset, recordOffset);
                r.Ino = I64(body, 0);
                r.FileOffset = I64(body, 8);
                r.PayloadOffset = bodyOffset + WritePayloadOffset;
                r.PayloadLength = body.Length - WritePayloadOffset;
                break;
            case RecordKind.Truncate:
                Need(body, 16, recordOffset);
                r.Ino = I64(body, 0);
                r.Size = I64(body, 8);
                break;
            case RecordKind.SetAttr:
                Need(body, 32, recordOffset);
                r.Ino = I64(body, 0);
                r.Mask = U32(body, 8);
                r.Mode = U32(body, 12);
                r.Uid = U32(body, 16);
                r.Gid = U32(body, 20);
                r.MtimeNs = I64(body, 24);
                if ((r.Mask & ~(uint)(AttrMask.Mode | AttrMask.Uid | AttrMask.Gid | AttrMask.Mtime | AttrMask.Atime)) != 0)
                    Bad(recordOffset, $"unknown attribute mask bits {r.Mask:X}");
                if ((r.Mask & (uint)AttrMask.Atime) != 0)
                {
                    Need(body, 40, recordOffset);
                    r.AtimeNs = I64(body, 32);
                }
                break;
            case RecordKind.Merge:
            {
                Need(body, 40, recordOffset);
                r.Logs = [ReadRef(body)];
                r.Epoch = I64(body, 24);
                uint ml = U32(body, 32);
                if (ml > body.Length) Bad(recordOffset, "message length out of range");
                Need(body, 40 + (int)ml, recordOffset);
                r.Message = Str(body.Slice(40, (int)ml), recordOffset);
                break;
            }
            case RecordKind.Version:
            {
                Need(body, VersionFixed, recordOffset);
                r.Seq = I64(body, 0);
                uint n = U32(body, 8), sl = U32(body, 12), ml = U32(body, 16);
                r.Size = I64(body, 24);
                r.FileOffset = I64(body, 32);
                if (n > body.Length / LogRef.Size || sl > body.Length || ml > body.Length)
                    Bad(recordOffset, "version counts out of range");
                long need = (long)VersionFixed + n * LogRef.Size + sl + ml;
                if (need > body.Length) Bad(recordOffset, $"body of {body.Length} bytes is shorter than the {need} its counts need");
                var logs = new LogRef[n];
                int p = VersionFixed;
                for (int i = 0; i < n; i++) { logs[i] = ReadRef(body[p..]); p += LogRef.Size; }
                r.Logs = logs;
                r.Source = Str(body.Slice(p, (int)sl), recordOffset);
                r.Message = Str(body.Slice(p + (int)sl, (int)ml), recordOffset);
                break;
            }
            case RecordKind.Tag:
            {
                Need(body, 16, recordOffset);
                r.Seq = I64(body, 0);
                r.Flags = U32(body, 8);
                r.Name = NameAt16(body, U32(body, 12), Format.FormatConstants.MaxBranchName, recordOffset, "tag name length out of range");
                break;
            }
            case RecordKind.Setting:
            {
                Need(body, 16, recordOffset);
                r.Flags = U32(body, 0);
                uint vl = U32(body, 4);
                r.Name = NameAt16(body, U32(body, 12), Format.FormatConstants.MaxSettingName, recordOffset, "setting name length out of range");
                if (vl > Format.FormatConstants.MaxSettingValue) Bad(recordOffset, "setting value length out of range");
                int at = 16 + (int)U32(body, 12);
                Need(body, at + (int)vl, recordOffset);
                r.Message = Str(body.Slice(at, (int)vl), recordOffset);
                break;
            }
            case RecordKind.Base:
                Need(body, 32, recordOffset);
                r.Seq = I64(body, 0);
                r.FileOffset = I64(body, 8);
                r.Size = I64(body, 16);
                r.Ino = I64(body, 24);
                break;
            default:
                Bad(recordOffset, $"unknown record kind {(ushort)kind}");
                break;
        }
    }

    /// <summary>The fields a create and a mknod share: parent, inode, mode, owner (the body has at least <paramref name="fixedPart"/> bytes).</summary>
    private static void CreateHead(Rec r, ReadOnlySpan<byte> body, int fixedPart, long recordOffset)
    {
        Need(body, fixedPart, recordOffset);
        r.ParentIno = I64(body, 0);
        r.Ino = I64(body, 8);
        r.Mode = U32(body, 16);
        r.Uid = U32(body, 20);
        r.Gid = U32(body, 24);
    }

    private static LogRef ReadRef(ReadOnlySpan<byte> b) => new(I64(b, 0), I64(b, 8), I64(b, 16));

    private static long I64(ReadOnlySpan<byte> b, int at) => BinaryPrimitives.ReadInt64LittleEndian(b[at..]);

    private static uint U32(ReadOnlySpan<byte> b, int at) => BinaryPrimitives.ReadUInt32LittleEndian(b[at..]);

    /// <summary>The name of <paramref name="length"/> bytes stored from byte 16 of a record's body, checked against <paramref name="max"/>.</summary>
    private static string NameAt16(ReadOnlySpan<byte> body, uint length, int max, long recordOffset, string tooLong)
    {
        if (length > max) Bad(recordOffset, tooLong);
        Need(body, 16 + (int)length, recordOffset);
        return Str(body.Slice(16, (int)length), recordOffset);
    }

    private static void Need(ReadOnlySpan<byte> body, int length, long offset)
    {
        if (body.Length < length)
            Bad(offset, $"body of {body.Length} bytes is shorter than the {length} its kind needs");
    }

    private static string Str(ReadOnlySpan<byte> bytes, long offset)
    {
        try { return s_utf8.GetString(bytes); }
        catch (DecoderFallbackException) { return ThrowHelper.Corrupt<string>("record", offset, "a string is not valid UTF-8"); }
    }

    private static void Bad(long offset, string detail) => ThrowHelper.Corrupt("record", offset, detail);
}
