using System.Buffers.Binary;
using System.Collections.Immutable;
using System.Text;
using Daxfs.Branching.Format;

namespace Daxfs.Branching.Index;

/// <summary>
/// Main's view at one version, written down so an open need not replay the history before it (format version 4 on;
/// docs/format.md section 6.3). A page run in the arena, named by the control block's <c>Checkpoint</c> word:
/// <code>
///  0 Magic u64 "DAXCKPT1"
///  8 Version i64        the version of main whose view this is
/// 16 BaseVersion i64    the version main's base image holds (the view is on that image)
/// 24 BaseOffset i64     that image's offset in the region
/// 32 ResumeBlock i64    the block of main's log that holds the end of that version's Version record
/// 40 ResumePosition i64 the region offset just past that record: replay goes on from here
/// 48 BodyLength i64
/// 56 Crc u32            CRC32C of bytes 0..55 and the body
/// 60 Reserved u32
/// 64 body: NextIno i64, NodeCount i64, then each node (see <see cref="WriteNode"/>)
/// </code>
/// Derived data: a checkpoint that fails any check is not used (main's history is replayed instead), and verify
/// reports it. Everything decoded is bounds-checked, so a hostile checkpoint is refused, never followed.
/// </summary>
internal static class ViewCheckpoint
{
    public const ulong MagicValue = 0x3154504B_43584144; // "DAXCKPT1"
    public const int HeaderSize = 64;

    /// <summary>What a checkpoint's header says.</summary>
    public readonly record struct Header(long Version, long BaseVersion, long BaseOffset, long ResumeBlock, long ResumePosition, long BodyLength);

    /// <summary>The checkpoint's bytes: header and body, for <paramref name="view"/> at <paramref name="header"/>'s version.</summary>
    public static byte[] Encode(View view, Header header)
    {
        var body = new MemoryStream();
        var w = new BinaryWriter(body, Encoding.UTF8);
        w.Write(view.NextIno);
        w.Write((long)LongMap.Count(view.Nodes));
        foreach (var n in LongMap.InOrder(view.Nodes))
            WriteNode(w, n.Value);
        w.Flush();
        var bytes = new byte[HeaderSize + body.Length];
        body.GetBuffer().AsSpan(0, (int)body.Length).CopyTo(bytes.AsSpan(HeaderSize));
        var span = bytes.AsSpan();
        BinaryPrimitives.WriteUInt64LittleEndian(span, MagicValue);
        BinaryPrimitives.WriteInt64LittleEndian(span[8..], header.Version);
        BinaryPrimitives.WriteInt64LittleEndian(span[16..], header.BaseVersion);
        BinaryPrimitives.WriteInt64LittleEndian(span[24..], header.BaseOffset);
        BinaryPrimitives.WriteInt64LittleEndian(span[32..], header.ResumeBlock);
        BinaryPrimitives.WriteInt64LittleEndian(span[40..], header.ResumePosition);
        BinaryPrimitives.WriteInt64LittleEndian(span[48..], body.Length);
        BinaryPrimitives.WriteUInt32LittleEndian(span[56..], Crc(span));
        return bytes;
    }

    private static uint Crc(ReadOnlySpan<byte> bytes)
        => Crc32C.Finish(Crc32C.Append(Crc32C.Append(Crc32C.Seed, bytes[..56]), bytes[HeaderSize..]));

    /// <summary>
    /// Node layout: Ino i64, Kind u8, Perm u32, Uid u32, Gid u32, Mtime i64, Ctime i64, Atime i64, Size i64, Links i32,
    /// Parent i64, Subdirs i32, Rdev i64; then Target (u32 length + UTF-8, or u32 max for none), entries (u32 count,
    /// each u16 name length + UTF-8 + i64 inode), extents (u32 count, each file offset i64 + length i64 + region
    /// offset i64 + the region offset of the log record holding the bytes i64, 0 for base image bytes), extended attributes (u32 count, each u16 name length + UTF-8 + u32 value length + bytes).
    /// </summary>
    private static void WriteNode(BinaryWriter w, Node n)
    {
        w.Write(n.Ino);
        w.Write((byte)n.Kind);
        w.Write(n.Perm);
        w.Write(n.Uid);
        w.Write(n.Gid);
        w.Write(n.MtimeNs);
        w.Write(n.CtimeNs);
        w.Write(n.AtimeNs);
        w.Write(n.Size);
        w.Write(n.Links);
        w.Write(n.ParentIno);
        w.Write(n.Subdirs);
        w.Write(n.Rdev);
        if (n.Target is null)
        {
            w.Write(uint.MaxValue);
        }
        else
        {
            var t = Names.Utf8.GetBytes(n.Target);
            w.Write((uint)t.Length);
            w.Write(t);
        }
        w.Write((uint)(n.Entries?.Count ?? 0));
        if (n.Entries is not null)
        {
            foreach (var (name, ino) in n.Entries)
            {
                var b = Names.Utf8.GetBytes(name);
                w.Write((ushort)b.Length);
                w.Write(b);
                w.Write(ino);
            }
        }
        w.Write((uint)LongMap.Count(n.Extents));
        foreach (var e in LongMap.InOrder(n.Extents))
        {
            w.Write(e.Key);
            w.Write(e.Value.Length);
            w.Write(e.Value.Source);
            w.Write(e.Value.Record);
        }
        w.Write((uint)(n.Xattrs?.Count ?? 0));
        if (n.Xattrs is not null)
        {
            foreach (var (name, value) in n.Xattrs)
            {
                var b = Names.Utf8.GetBytes(name);
                w.Write((ushort)b.Length);
                w.Write(b);
                w.Write((uint)value.Length);
                w.Write(value);
            }
        }
    }

    /// <summary>Reads and checks a checkpoint's header (magic, lengths); null when it is not one.</summary>
    public static Header? ReadHeader(ReadOnlySpan<byte> head, long room)
    {
        if (head.Length < HeaderSize || BinaryPrimitives.ReadUInt64LittleEndian(head) != MagicValue)
            return null;
        var h = new Header(BinaryPrimitives.ReadInt64LittleEndian(head[8..]), BinaryPrimitives.ReadInt64LittleEndian(head[16..]),
            BinaryPrimitives.ReadInt64LittleEndian(head[24..]), BinaryPrimitives.ReadInt64LittleEndian(head[32..]),
            BinaryPrimitives.ReadInt64LittleEndian(head[40..]), BinaryPrimitives.ReadInt64LittleEndian(head[48..]));
        if (h.Version < 1 || h.BaseVersion < 0 || h.BaseVersion > h.Version || h.BodyLength < 16 || h.BodyLength > room - HeaderSize)
            return null;
        return h;
    }

    /// <summary>True when the checkpoint's checksum matches (<paramref name="bytes"/>: header and body).</summary>
    public static bool ChecksumMatches(ReadOnlySpan<byte> bytes) => BinaryPrimitives.ReadUInt32LittleEndian(bytes[56..]) == Crc(bytes);

    /// <summary>
    /// Decodes the view a checksummed checkpoint holds, on <paramref name="image"/>. Every field is checked: kinds,
    /// names, inode numbers, and every extent lies inside <paramref name="bytesStart"/>..<paramref name="bytesEnd"/>
    /// (where file bytes can be). Throws <see cref="FormatException"/> naming what is wrong.
    /// </summary>
    public static View Decode(ReadOnlySpan<byte> body, BaseImage image, long bytesStart, long bytesEnd, HashSet<long> records)
    {
        var r = new Reader(body);
        long nextIno = r.I64();
        long count = r.I64();
        if (nextIno < image.NextIno || count < 0 || count > body.Length / 64)
            throw new FormatException($"next inode {nextIno} or node count {count} out of range");
        LongMapNode<Node>? nodes = null;
        long previous = 0;
        for (long i = 0; i < count; i++)
        {
            var n = ReadNode(ref r, nextIno, bytesStart, bytesEnd, records);
            if (n.Ino <= previous)
                throw new FormatException($"node {n.Ino} out of order");
            previous = n.Ino;
            nodes = LongMap.Set(nodes, n.Ino, n);
        }
        if (!r.AtEnd)
            throw new FormatException("bytes after the last node");
        return new View(image, nodes, nextIno);
    }

    private static Node ReadNode(ref Reader r, long nextIno, long bytesStart, long bytesEnd, HashSet<long> records)
    {
        long ino = r.I64();
        byte kind = r.U8();
        if (ino < 1 || ino >= nextIno || kind > (byte)NodeKind.BlockDevice)
            throw new FormatException($"node {ino}: inode number or kind {kind} out of range");
        uint perm = r.U32(), uid = r.U32(), gid = r.U32();
        long mtime = r.I64(), ctime = r.I64(), atime = r.I64(), size = r.I64();
        int links = r.I32();
        long parent = r.I64();
        int subdirs = r.I32();
        long rdev = r.I64();
        if (perm > ModeBits.PermMask || size < 0 || links < 0 || subdirs < 0 || parent < 0 || parent >= nextIno)
            throw new FormatException($"node {ino}: attributes out of range");
        uint targetLength = r.U32();
        string? target = targetLength == uint.MaxValue ? null : r.Text((int)Math.Min(targetLength, int.MaxValue), ino);
        uint entries = r.U32();
        ImmutableSortedDictionary<string, long>? dict = null;
        if (kind == (byte)NodeKind.Directory)
        {
            var b = ImmutableSortedDictionary.CreateBuilder<string, long>(StringComparer.Ordinal);
            for (uint k = 0; k < entries; k++)
            {
                string name = r.Name(r.U16(), ino);
                long child = r.I64();
                if (child < 1 || child >= nextIno || !b.TryAdd(name, child))
                    throw new FormatException($"node {ino}: bad entry '{name}'");
            }
            dict = b.ToImmutable();
        }
        else if (entries != 0)
        {
            throw new FormatException($"node {ino}: entries in a node that is not a directory");
        }
        uint extents = r.U32();
        LongMapNode<Extent>? map = null;
        long end = 0;
        for (uint k = 0; k < extents; k++)
        {
            long at = r.I64(), length = r.I64(), source = r.I64(), record = r.I64();
            if (at < end || length <= 0 || at > long.MaxValue - length || source < bytesStart || source > bytesEnd - length)
                throw new FormatException($"node {ino}: extent at {at} (+{length} from {source}) out of range");
            // The record holding log bytes lies before them, 8-aligned, in the same area (its checksum is checked when they are first read).
            if (record != 0 && (record < bytesStart || record >= source || (record & 7) != 0))
                throw new FormatException($"node {ino}: extent at {at} names record {record}, which cannot hold bytes at {source}");
            if (record != 0)
                records.Add(record);
            end = at + length;
            map = LongMap.Set(map, at, new Extent(length, source, record));
        }
        if (extents > 0 && kind != (byte)NodeKind.File)
            throw new FormatException($"node {ino}: extents in a node that is not a file");
        uint xattrs = r.U32();
        ImmutableSortedDictionary<string, byte[]>? xs = null;
        if (xattrs > 0)
        {
            var b = ImmutableSortedDictionary.CreateBuilder<string, byte[]>(StringComparer.Ordinal);
            for (uint k = 0; k < xattrs; k++)
            {
                string name = r.Text(r.U16(), ino);
                byte[] value = r.Bytes((int)Math.Min(r.U32(), int.MaxValue)).ToArray();
                if (name.Length == 0 || !b.TryAdd(name, value))
                    throw new FormatException($"node {ino}: bad extended attribute '{name}'");
            }
            xs = b.ToImmutable();
        }
        return new Node
        {
            Ino = ino, Kind = (NodeKind)kind, Perm = perm, Uid = uid, Gid = gid, MtimeNs = mtime, CtimeNs = ctime, AtimeNs = atime,
            Size = size, Links = links, ParentIno = parent, Subdirs = subdirs, Rdev = rdev, Target = target, Entries = dict, Extents = map, Xattrs = xs,
        };
    }

    /// <summary>Reads little-endian fields, failing with <see cref="FormatException"/> past the end.</summary>
    private ref struct Reader(ReadOnlySpan<byte> bytes)
    {
        private readonly ReadOnlySpan<byte> _bytes = bytes;
        private int _at;

        public readonly bool AtEnd => _at == _bytes.Length;

        public ReadOnlySpan<byte> Bytes(int n)
        {
            if (n < 0 || n > _bytes.Length - _at)
                throw new FormatException($"a field of {n} bytes runs past the end at {_at}");
            var s = _bytes.Slice(_at, n);
            _at += n;
            return s;
        }

        public byte U8() => Bytes(1)[0];
        public ushort U16() => BinaryPrimitives.ReadUInt16LittleEndian(Bytes(2));
        public uint U32() => BinaryPrimitives.ReadUInt32LittleEndian(Bytes(4));
        public int I32() => BinaryPrimitives.ReadInt32LittleEndian(Bytes(4));
        public long I64() => BinaryPrimitives.ReadInt64LittleEndian(Bytes(8));

        /// <summary>A directory entry's name, checked by the rules for names.</summary>
        public string Name(int n, long ino)
            => Names.CheckUtf8(Bytes(n)) is { } why ? throw new FormatException($"node {ino}: {why}") : Encoding.UTF8.GetString(_bytes.Slice(_at - n, n));

        /// <summary>Any valid UTF-8 text (a link's target, an attribute's name).</summary>
        public string Text(int n, long ino)
            => System.Text.Unicode.Utf8.IsValid(Bytes(n)) ? Encoding.UTF8.GetString(_bytes.Slice(_at - n, n)) : throw new FormatException($"node {ino}: text that is not UTF-8");
    }
}
