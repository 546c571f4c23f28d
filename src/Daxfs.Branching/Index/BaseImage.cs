using System.Runtime.CompilerServices;
using Daxfs.Branching.Format;
using Daxfs.Branching.Media;

namespace Daxfs.Branching.Index;

/// <summary>
/// Read access to the immutable base image: inodes, sorted directories, names and file data.
/// The whole metadata is validated once when the region is opened (bounds, names, order, the tree
/// shape); file data is checked against its chunk checksums the first time this process touches a chunk.
/// </summary>
internal sealed unsafe class BaseImage
{
    private readonly Region _region;
    private readonly BaseHeader _header;
    private readonly long[] _verifiedChunks;
    private readonly Dictionary<long, LongMapNode<Extent>?> _sparse = [];

    private BaseImage(Region region, BaseHeader header)
    {
        _region = region;
        _header = header;
        _verifiedChunks = new long[(header.ChunkCount + 63) / 64];
    }

    public uint InodeCount => _header.InodeCount;

    private Dictionary<long, System.Collections.Immutable.ImmutableSortedDictionary<string, byte[]>> _xattrs = [];

    /// <summary>The extended attributes of base inode <paramref name="ino"/> (read and checked at open).</summary>
    public System.Collections.Immutable.ImmutableSortedDictionary<string, byte[]> Xattrs(long ino)
        => _xattrs.TryGetValue(ino, out var x) ? x : XattrTable.Empty;

    /// <summary>The number the first inode created on top of this image takes (inode numbers are never reused).</summary>
    public long NextIno { get; private set; }

    public long Offset { get; private set; }

    public long DataOffset => _header.DataOffset;

    public long DataLength => _header.DataLength;

    public long EndOffset => _header.ChunkCrcOffset + _header.ChunkCount * 4;

    /// <summary>
    /// Opens the base image at <paramref name="offset"/>, validating all of its metadata. New inodes on top of it
    /// are numbered from <paramref name="nextIno"/> (0: right after its last inode).
    /// </summary>
    public static BaseImage Open(Region region, long offset, long length, long nextIno = 0)
    {
        region.Check(offset, length);
        if (length < BaseHeader.Size)
            ThrowHelper.Corrupt("base header", offset, $"base image length {length} is smaller than its header");
        var header = region.At<BaseHeader>(offset);
        if (header.Magic != BaseHeader.MagicValue)
            ThrowHelper.Corrupt("base header", offset, "bad magic");
        uint crc = Crc32C.Compute(region.Span(offset, 124));
        if (crc != header.Crc)
            ThrowHelper.Corrupt("base header", offset, $"checksum mismatch (stored {header.Crc:X8}, computed {crc:X8})");
        long end = offset + length;
        CheckRange("base inode table", header.InodeTableOffset, (long)header.InodeCount * BaseInode.Size, offset, end);
        if (header.DirentCount < 0 || header.DirentCount > uint.MaxValue)
            ThrowHelper.Corrupt("base header", offset, $"dirent count {header.DirentCount} out of range");
        CheckRange("base dirent table", header.DirentOffset, header.DirentCount * BaseDirent.Size, offset, end);
        CheckRange("base name pool", header.NamePoolOffset, header.NamePoolLength, offset, end);
        CheckRange("base data area", header.DataOffset, header.DataLength, offset, end);
        long expectChunks = (header.DataLength + FormatConstants.DataChunkSize - 1) / FormatConstants.DataChunkSize;
        if (header.ChunkCount != expectChunks)
            ThrowHelper.Corrupt("base header", offset, $"chunk count {header.ChunkCount} does not match data length {header.DataLength}");
        CheckRange("base chunk checksums", header.ChunkCrcOffset, header.ChunkCount * 4, offset, end);
        if (header.XattrLength != 0)
            CheckRange("base attribute table", header.XattrOffset, header.XattrLength, offset, end);
        if (header.XattrLength > int.MaxValue)
            ThrowHelper.Corrupt("base header", offset, $"attribute table of {header.XattrLength} bytes is too large");
        if (header.InodeCount == 0)
            ThrowHelper.Corrupt("base header", offset, "no root inode");
        if ((header.InodeTableOffset & 7) != 0 || (header.DirentOffset & 7) != 0)
            ThrowHelper.Corrupt("base header", offset, "tables are not 8-byte aligned");

        uint meta = MetaCrc(region, in header);
        if (meta != header.MetaCrc)
            ThrowHelper.Corrupt("base metadata", header.InodeTableOffset, $"checksum mismatch (stored {header.MetaCrc:X8}, computed {meta:X8})");

        if (nextIno != 0 && nextIno <= header.InodeCount)
            ThrowHelper.Corrupt("base header", offset, $"next inode number {nextIno} is not above the image's {header.InodeCount} inodes");
        var image = new BaseImage(region, header) { Offset = offset, NextIno = nextIno == 0 ? header.InodeCount + 1L : nextIno };
        image.ValidateTree();
        if (header.XattrLength > 0)
            image._xattrs = XattrTable.Read(region.Span(header.XattrOffset, (int)header.XattrLength), header.XattrOffset, header.InodeCount);
        return image;
    }

    /// <summary>The checksum of the inode table, the dirent table and the name pool that <paramref name="h"/> places.</summary>
    private static uint MetaCrc(Region region, in BaseHeader h)
    {
        uint meta = Crc32C.Seed;
        meta = AppendRange(region, meta, h.InodeTableOffset, (long)h.InodeCount * BaseInode.Size);
        meta = AppendRange(region, meta, h.DirentOffset, h.DirentCount * BaseDirent.Size);
        meta = AppendRange(region, meta, h.NamePoolOffset, h.NamePoolLength);
        if (h.XattrLength > 0)
            meta = AppendRange(region, meta, h.XattrOffset, h.XattrLength);
        return Crc32C.Finish(meta);
    }

    /// <summary>
    /// Finishes an image whose parts are written and placed by <paramref name="h"/> (all fields but the magic and
    /// the checksums): writes the chunk checksum table, then the header with its checksums, last.
    /// </summary>
    internal static void Seal(Region region, long offset, BaseHeader h)
    {
        for (long c = 0; c < h.ChunkCount; c++)
        {
            long start = h.DataOffset + c * FormatConstants.DataChunkSize;
            int len = (int)Math.Min(FormatConstants.DataChunkSize, h.DataOffset + h.DataLength - start);
            Unsafe.WriteUnaligned(region.Base + h.ChunkCrcOffset + c * 4, Crc32C.Compute(region.Span(start, len)));
        }
        h.Magic = BaseHeader.MagicValue;
        h.MetaCrc = MetaCrc(region, in h);
        h.Crc = 0;
        ref var stored = ref region.At<BaseHeader>(offset);
        stored = h;
        stored.Crc = Crc32C.Compute(region.Span(offset, 124));
    }

    private static uint AppendRange(Region region, uint crc, long offset, long length)
    {
        while (length > 0)
        {
            int n = (int)Math.Min(length, 1 << 30);
            crc = Crc32C.Append(crc, region.Span(offset, n));
            offset += n;
            length -= n;
        }
        return crc;
    }

    private static void CheckRange(string structure, long start, long length, long min, long max)
    {
        if (start < min || length < 0 || start > max || length > max - start)
            ThrowHelper.Corrupt(structure, start, $"range of {length} bytes lies outside the base image [{min}, {max})");
    }

    /// <summary>
    /// Checks every inode and entry, and that the directories form one tree rooted at inode 1: every other
    /// directory is named by exactly one entry, every other inode by as many as its link count says (hard
    /// links), one of them in the directory its parent link names, and all are reachable from the root. This
    /// bounds every later walk.
    /// </summary>
    private void ValidateTree()
    {
        uint count = _header.InodeCount;
        var seen = new bool[count + 1];
        var names = new int[count + 1];
        var parentNamed = new bool[count + 1];
        ref readonly var root = ref Inode(1);
        if ((root.Mode & ModeBits.TypeMask) != ModeBits.Directory)
            ThrowHelper.Corrupt("base inode 1", InodeOffset(1), "the root is not a directory");
        seen[1] = true;
        long reached = 1;
        var queue = new Queue<uint>();
        queue.Enqueue(1);
        while (queue.Count > 0)
        {
            uint dir = queue.Dequeue();
            ref readonly var d = ref Inode(dir);
            long first = d.DataOffset, n = d.ByteSize;
            if (first < 0 || n < 0 || first > _header.DirentCount || n > _header.DirentCount - first)
                ThrowHelper.Corrupt($"base inode {dir}", InodeOffset(dir), $"entries [{first}, +{n}) outside the dirent table");
            ReadOnlySpan<byte> previous = default;
            uint subdirs = 0;
            for (long i = first; i < first + n; i++)
            {
                ref readonly var e = ref Dirent(i);
                var name = NameBytes(in e, i);
                string? why = Names.CheckUtf8(name);
                if (why is not null)
                    ThrowHelper.Corrupt($"base dirent {i}", DirentOffsetOf(i), why);
                if (i > first && previous.SequenceCompareTo(name) >= 0)
                    ThrowHelper.Corrupt($"base dirent {i}", DirentOffsetOf(i), "entries not strictly sorted (duplicate or out of order)");
                previous = name;
                uint child = e.ChildIno;
                if (child < 2 || child > count)
                    ThrowHelper.Corrupt($"base dirent {i}", DirentOffsetOf(i), $"child inode {child} out of range");
                ref readonly var c = ref Inode(child);
                names[child]++;
                if (c.ParentIno == dir) parentNamed[child] = true;
                if (seen[child])
                {
                    if ((c.Mode & ModeBits.TypeMask) == ModeBits.Directory)
                        ThrowHelper.Corrupt($"base dirent {i}", DirentOffsetOf(i), $"directory {child} is named twice (a cycle)");
                    continue; // another name of a file (a hard link): counted, checked once
                }
                seen[child] = true;
                reached++;
                ValidateInode(child);
                if ((c.Mode & ModeBits.TypeMask) == ModeBits.Directory)
                {
                    if (c.ParentIno != dir)
                        ThrowHelper.Corrupt($"base inode {child}", InodeOffset(child), $"parent link {c.ParentIno} does not match directory {dir}");
                    subdirs++;
                    queue.Enqueue(child);
                }
            }
            if (d.Subdirs != subdirs)
                ThrowHelper.Corrupt($"base inode {dir}", InodeOffset(dir), $"subdirectory count {d.Subdirs} does not match {subdirs}");
        }
        long unused = 0;
        for (uint ino = 2; ino <= count; ino++)
        {
            ref readonly var n = ref Inode(ino);
            if (n.Mode == 0) { unused++; continue; } // a number compaction left unused: never named (checked above)
            if (!seen[ino] || (n.Mode & ModeBits.TypeMask) == ModeBits.Directory) continue;
            if (names[ino] != n.LinkCount)
                ThrowHelper.Corrupt($"base inode {ino}", InodeOffset(ino), $"link count {n.LinkCount} does not match the {names[ino]} entries that name it");
            if (!parentNamed[ino])
                ThrowHelper.Corrupt($"base inode {ino}", InodeOffset(ino), $"parent link {n.ParentIno} names no directory that holds it");
        }
        if (reached + unused != count)
            ThrowHelper.Corrupt("base inode table", _header.InodeTableOffset, $"{count - reached - unused} inode(s) not reachable from the root");
    }

    private void ValidateInode(uint ino)
    {
        ref readonly var n = ref Inode(ino);
        switch (n.Mode & ModeBits.TypeMask)
        {
            case ModeBits.Directory:
                break;
            case ModeBits.Regular when (n.Flags & BaseInode.FlagSparse) != 0:
                _sparse[ino] = ReadExtentTable(ino, in n);
                break;
            case ModeBits.Regular:
            case ModeBits.Symlink:
                if ((n.Flags & BaseInode.FlagSparse) != 0)
                    ThrowHelper.Corrupt($"base inode {ino}", InodeOffset(ino), "a symlink marked sparse");
                if (n.ByteSize < 0 || n.DataOffset < _header.DataOffset || n.ByteSize > _header.DataOffset + _header.DataLength - n.DataOffset
                    || n.DataOffset > _header.DataOffset + _header.DataLength)
                    ThrowHelper.Corrupt($"base inode {ino}", InodeOffset(ino), $"data [{n.DataOffset}, +{n.ByteSize}) outside the data area");
                if ((n.Mode & ModeBits.TypeMask) == ModeBits.Symlink && (n.ByteSize == 0 || n.ByteSize > FormatConstants.MaxLinkTarget))
                    ThrowHelper.Corrupt($"base inode {ino}", InodeOffset(ino), $"symlink target length {n.ByteSize} out of range");
                break;
            case ModeBits.Fifo:
            case ModeBits.Socket:
            case ModeBits.CharDevice:
            case ModeBits.BlockDevice:
                // No bytes of their own (DataOffset holds a device node's number).
                if (n.ByteSize != 0 || n.Flags != 0)
                    ThrowHelper.Corrupt($"base inode {ino}", InodeOffset(ino), $"a FIFO, socket or device node with size {n.ByteSize} or flags {n.Flags}");
                break;
            default:
                ThrowHelper.Corrupt($"base inode {ino}", InodeOffset(ino), $"unknown file type in mode {n.Mode:X}");
                break;
        }
    }

    /// <summary>Reads and checks a sparse file's extent table (its chunks are verified first): the file's byte-range map.</summary>
    private LongMapNode<Extent>? ReadExtentTable(uint ino, in BaseInode n)
    {
        long dataEnd = _header.DataOffset + _header.DataLength;
        string what = $"base inode {ino}";
        if (n.ByteSize < 0 || n.ByteSize > FormatConstants.MaxFileSize)
            ThrowHelper.Corrupt(what, InodeOffset(ino), $"size {n.ByteSize} out of range");
        if (n.DataOffset < _header.DataOffset || n.DataOffset > dataEnd - 8 || (n.DataOffset & 7) != 0)
            ThrowHelper.Corrupt(what, InodeOffset(ino), $"extent table at {n.DataOffset} outside the data area or unaligned");
        EnsureVerified(n.DataOffset, 8);
        long count = Unsafe.ReadUnaligned<long>(_region.Base + n.DataOffset);
        if (count < 0 || count > (dataEnd - n.DataOffset - 8) / BaseInode.ExtentEntrySize)
            ThrowHelper.Corrupt(what, n.DataOffset, $"extent count {count} does not fit the data area");
        EnsureVerified(n.DataOffset, 8 + count * BaseInode.ExtentEntrySize);
        LongMapNode<Extent>? map = null;
        long previousEnd = 0;
        for (long i = 0; i < count; i++)
        {
            byte* e = _region.Base + n.DataOffset + 8 + i * BaseInode.ExtentEntrySize;
            long fileOffset = Unsafe.ReadUnaligned<long>(e), length = Unsafe.ReadUnaligned<long>(e + 8), source = Unsafe.ReadUnaligned<long>(e + 16);
            if (fileOffset < previousEnd || length <= 0 || length > n.ByteSize - fileOffset)
                ThrowHelper.Corrupt(what, n.DataOffset, $"extent {i} [{fileOffset}, +{length}) overlaps the one before or runs past the size {n.ByteSize}");
            if (source < _header.DataOffset || source > dataEnd || length > dataEnd - source)
                ThrowHelper.Corrupt(what, n.DataOffset, $"extent {i} bytes at {source} lie outside the data area");
            map = LongMap.Merge(map, LongMap.Single(fileOffset, new Extent(length, source)));
            previousEnd = fileOffset + length;
        }
        return map;
    }

    /// <summary>A sparse base file's byte-range map (built once, when the image was opened).</summary>
    public LongMapNode<Extent>? SparseExtents(long ino) => _sparse[ino];

    private long InodeOffset(uint ino) => _header.InodeTableOffset + (long)(ino - 1) * BaseInode.Size;

    private long DirentOffsetOf(long index) => _header.DirentOffset + index * BaseDirent.Size;

    /// <summary>The base inode <paramref name="ino"/> (1-based; the caller checks the range).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public ref readonly BaseInode Inode(long ino)
    {
        if ((ulong)(ino - 1) >= _header.InodeCount)
            ThrowHelper.Corrupt("base inode", ino, "inode number out of range");
        return ref Unsafe.AsRef<BaseInode>(_region.Base + _header.InodeTableOffset + (ino - 1) * BaseInode.Size);
    }

    /// <summary>True when <paramref name="ino"/> is an inode of the image (not an unused number).</summary>
    public bool Contains(long ino) => (ulong)(ino - 1) < _header.InodeCount && Inode(ino).Mode != 0;

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private ref readonly BaseDirent Dirent(long index)
        => ref Unsafe.AsRef<BaseDirent>(_region.Base + _header.DirentOffset + index * BaseDirent.Size);

    private ReadOnlySpan<byte> NameBytes(in BaseDirent e, long index)
    {
        if (e.NameLength > _header.NamePoolLength || e.NameOffset > _header.NamePoolLength - e.NameLength)
            ThrowHelper.Corrupt($"base dirent {index}", DirentOffsetOf(index), "name outside the name pool");
        return new ReadOnlySpan<byte>(_region.Base + _header.NamePoolOffset + e.NameOffset, e.NameLength);
    }

    /// <summary>Finds <paramref name="utf8Name"/> in base directory <paramref name="dirIno"/>; 0 when absent.</summary>
    public long Lookup(long dirIno, ReadOnlySpan<byte> utf8Name)
    {
        ref readonly var d = ref Inode(dirIno);
        long lo = d.DataOffset, hi = d.DataOffset + d.ByteSize - 1;
        while (lo <= hi)
        {
            long mid = lo + ((hi - lo) >> 1);
            ref readonly var e = ref Dirent(mid);
            int c = NameBytes(in e, mid).SequenceCompareTo(utf8Name);
            if (c == 0) return e.ChildIno;
            if (c < 0) lo = mid + 1; else hi = mid - 1;
        }
        return 0;
    }

    /// <summary>Finds a name given as a string.</summary>
    public long Lookup(long dirIno, string name)
    {
        Span<byte> buf = stackalloc byte[4 * 256];
        if (name.Length > 255) return 0;
        int n;
        try { n = Names.Utf8.GetBytes(name, buf); }
        catch (System.Text.EncoderFallbackException) { return 0; } // no stored name is invalid Unicode
        return Lookup(dirIno, buf[..n]);
    }

    /// <summary>The entries of base directory <paramref name="dirIno"/>, in UTF-8 byte order.</summary>
    public IEnumerable<(string Name, long Ino)> Entries(long dirIno)
    {
        long first = Inode(dirIno).DataOffset, n = Inode(dirIno).ByteSize;
        for (long i = first; i < first + n; i++)
        {
            var e = Dirent(i);
            yield return (Names.Utf8.GetString(NameBytes(in e, i)), e.ChildIno);
        }
    }

    /// <summary>The target of base symlink <paramref name="ino"/>.</summary>
    public string LinkTarget(long ino)
    {
        ref readonly var n = ref Inode(ino);
        EnsureVerified(n.DataOffset, n.ByteSize);
        return Names.Utf8.GetString(_region.Span(n.DataOffset, (int)n.ByteSize));
    }

    /// <summary>
    /// Checks the chunks under [offset, offset+length) of the data area against their checksums, once per
    /// chunk per process. The common case (already verified) is a bit test per chunk.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public void EnsureVerified(long offset, long length)
    {
        if (length <= 0) return;
        if ((ulong)(offset - _header.DataOffset) >= (ulong)_header.DataLength)
        {
            // Log bytes were checked when their record was replayed, unless a checkpoint stood in for the replay.
            LogRecords?.EnsureVerified(offset, length);
            return;
        }
        long first = (offset - _header.DataOffset) / FormatConstants.DataChunkSize;
        long last = (offset + length - 1 - _header.DataOffset) / FormatConstants.DataChunkSize;
        for (long c = first; c <= last; c++)
        {
            if ((Volatile.Read(ref _verifiedChunks[c >> 6]) & (1L << (int)(c & 63))) == 0)
                VerifyChunk(c);
        }
    }

    /// <summary>Records of main's history a checkpoint pointed views on this image at, checked at first read (see <see cref="RecordChecks"/>).</summary>
    public RecordChecks? LogRecords { get; set; }

    private void VerifyChunk(long chunk)
    {
        long start = _header.DataOffset + chunk * FormatConstants.DataChunkSize;
        int len = (int)Math.Min(FormatConstants.DataChunkSize, _header.DataOffset + _header.DataLength - start);
        uint stored = Unsafe.ReadUnaligned<uint>(_region.Base + _header.ChunkCrcOffset + chunk * 4);
        uint computed = Crc32C.Compute(_region.Span(start, len));
        if (stored != computed)
            ThrowHelper.Corrupt($"base data chunk {chunk}", start, $"checksum mismatch (stored {stored:X8}, computed {computed:X8})");
        Interlocked.Or(ref _verifiedChunks[chunk >> 6], 1L << (int)(chunk & 63));
    }

    /// <summary>Verifies every data chunk now (used by full verification); each damaged chunk is added to <paramref name="damage"/>.</summary>
    public void VerifyAllData(List<CorruptionException> damage)
    {
        for (long c = 0; c < _header.ChunkCount; c++)
        {
            try
            {
                VerifyChunk(c);
            }
            catch (CorruptionException e)
            {
                damage.Add(e);
            }
        }
    }
}
