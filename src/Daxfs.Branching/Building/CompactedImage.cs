using System.Runtime.InteropServices;
using System.Text;
using Daxfs.Branching.Format;
using Daxfs.Branching.Index;
using Daxfs.Branching.Media;

namespace Daxfs.Branching.Building;

/// <summary>
/// Writes a view's whole tree as a base image (format.md, section 7) for compaction. Inode numbers are
/// kept as they are, because later versions' records and live branches' logs name inodes by number:
/// numbers no inode holds are written as unused entries. File bytes are copied from wherever the view
/// finds them (older base images, log payloads); a file with holes gets an extent table instead of
/// zero-filled bytes.
/// </summary>
internal sealed class CompactedImage
{
    private sealed class Dir
    {
        public required long Ino;
        public required List<(byte[] Name, long Ino)> Entries;
        public long FirstDirent;
    }

    private sealed class Item
    {
        public required long Ino;
        public required InodeInfo Info;
        public long Parent;
        public FileData Data;
        public List<(long FileOffset, long Length)>? Runs; // files: the bytes that are not holes
        public bool Sparse;
        public byte[]? Target;
        public Dir? Dir;
        public long Placed; // where its bytes (or extent table) go
    }

    private readonly View _view;
    private readonly Item?[] _items;
    private readonly List<Dir> _dirs = [];
    private readonly long _direntCount;
    private readonly long _namePool;
    private readonly long _dataLength;
    private readonly uint _inodeCount;

    /// <summary>Files, directories and symlinks in the tree.</summary>
    public long Entries { get; }

    /// <summary>File and symlink bytes to copy.</summary>
    public long DataBytes { get; }

    /// <summary>Bytes of the whole image.</summary>
    public long Length { get; }

    /// <summary>The next inode number of the view, which the image carries on.</summary>
    public long NextIno => _view.NextIno;

    /// <summary>Plans the image of <paramref name="view"/>: collects the tree and sizes every part.</summary>
    public CompactedImage(View view)
    {
        _view = view;
        var found = new List<Item>();
        var queue = new Queue<Item>();
        var root = new Item { Ino = View.RootIno, Info = view.Info(View.RootIno), Parent = View.RootIno };
        queue.Enqueue(root);
        var reached = new HashSet<long> { View.RootIno };
        long maxIno = 1, dirents = 0, names = 0;
        while (queue.Count > 0)
        {
            var item = queue.Dequeue();
            found.Add(item);
            maxIno = Math.Max(maxIno, item.Ino);
            switch (item.Info.Kind)
            {
                case NodeKind.Directory:
                    var entries = view.Entries(item.Ino).Select(e => (Names.Utf8.GetBytes(e.Name), e.Ino)).ToList();
                    entries.Sort((a, b) => a.Item1.AsSpan().SequenceCompareTo(b.Item1)); // base images sort by UTF-8 bytes
                    item.Dir = new Dir { Ino = item.Ino, Entries = entries };
                    _dirs.Add(item.Dir);
                    dirents += entries.Count;
                    foreach (var (name, child) in entries)
                    {
                        names += name.Length;
                        if (reached.Add(child)) // a hard link's other names: one inode, reached once
                            queue.Enqueue(new Item { Ino = child, Info = view.Info(child), Parent = item.Ino });
                    }
                    break;
                case NodeKind.Symlink:
                    item.Target = Names.Utf8.GetBytes(view.LinkTarget(item.Ino));
                    break;
                case NodeKind.Fifo or NodeKind.Socket or NodeKind.CharDevice or NodeKind.BlockDevice:
                    break; // no bytes: the mode and the device number say it all
                default:
                    item.Data = FileData.Of(view, item.Ino);
                    item.Runs = DataRuns(in item.Data);
                    item.Sparse = item.Runs.Count > 1 || item.Runs.Count == 1 && item.Runs[0].Length != item.Data.Size
                        || item.Runs.Count == 0 && item.Data.Size > 0;
                    break;
            }
        }
        if (maxIno > uint.MaxValue)
            throw new DaxfsException($"inode number {maxIno} is beyond what a base image can hold (2^32 - 1); this tree cannot be compacted");
        _inodeCount = (uint)maxIno;
        _items = new Item?[maxIno + 1];
        foreach (var item in found)
            _items[item.Ino] = item;
        _dirs.Sort((a, b) => a.Ino.CompareTo(b.Ino));
        foreach (var item in found)
            if (view.Xattrs(item.Ino) is { Count: > 0 } attrs)
                _xattrs.Add(((uint)item.Ino, attrs));
        _xattrLength = XattrTable.Size(_xattrs);
        if (_xattrLength > int.MaxValue)
            throw new DaxfsException($"the extended attributes take {_xattrLength} bytes, more than a base image holds; this tree cannot be compacted");
        _direntCount = dirents;
        _namePool = names;
        Entries = found.Count;

        // The data area: page-aligned files of a page or more, the rest 8-aligned (relative to the area's start,
        // which is itself page-aligned).
        long at = 0, bytes = 0;
        foreach (var item in found.OrderBy(i => i.Ino))
        {
            if (item.Target is { } t)
            {
                at = FormatConstants.AlignUp(at, 8);
                item.Placed = at;
                at += t.Length;
                bytes += t.Length;
            }
            else if (item.Runs is { } runs)
            {
                long data = runs.Sum(r => r.Length);
                bytes += data;
                if (item.Sparse)
                {
                    at = FormatConstants.AlignUp(at, 8);
                    item.Placed = at;
                    at += 8 + runs.Count * (long)BaseInode.ExtentEntrySize + data;
                }
                else if (data > 0)
                {
                    at = FormatConstants.AlignUp(at, data >= FormatConstants.PageSize ? FormatConstants.PageSize : 8);
                    item.Placed = at;
                    at += data;
                }
            }
        }
        _dataLength = at;
        DataBytes = bytes;
        Length = DataStart(0) + FormatConstants.AlignUp(_dataLength, 8) + ChunkCount * 4;
    }

    private long ChunkCount => (_dataLength + FormatConstants.DataChunkSize - 1) / FormatConstants.DataChunkSize;

    private long InodeTable(long offset) => offset + BaseHeader.Size;

    private long DirentTable(long offset) => InodeTable(offset) + (long)_inodeCount * BaseInode.Size;

    private long NamePool(long offset) => DirentTable(offset) + _direntCount * BaseDirent.Size;

    private long XattrTableAt(long offset) => FormatConstants.AlignUp(NamePool(offset) + _namePool, 8);

    private long DataStart(long offset) => FormatConstants.AlignUp(XattrTableAt(offset) + _xattrLength, FormatConstants.PageSize);

    /// <summary>The extended attributes of the inodes that have any, and the bytes of their table.</summary>
    private readonly List<(uint Ino, IReadOnlyDictionary<string, byte[]> Attrs)> _xattrs = [];
    private readonly long _xattrLength;

    /// <summary>The maximal runs of a file's bytes that are not holes, in file order.</summary>
    private static List<(long FileOffset, long Length)> DataRuns(in FileData d)
    {
        var runs = new List<(long, long)>();
        long pos = 0;
        while (pos < d.Size)
        {
            bool data = d.Locate(pos, out _, out long available);
            if (data)
            {
                if (runs.Count > 0 && runs[^1].Item1 + runs[^1].Item2 == pos)
                    runs[^1] = (runs[^1].Item1, runs[^1].Item2 + available);
                else
                    runs.Add((pos, available));
            }
            pos += available;
        }
        return runs;
    }

    /// <summary>
    /// Writes the image at <paramref name="offset"/> (page-aligned; <see cref="Length"/> bytes must be free there).
    /// Reports progress per entry; returns the bytes written.
    /// </summary>
    public long WriteTo(Region region, long offset, IProgress<BuildProgress>? progress)
    {
        long dataStart = DataStart(offset);
        long namePool = NamePool(offset);
        long nameAt = 0, dirent = 0, done = 0, copied = 0;
        var inodes = region.WritableSpan(InodeTable(offset), checked((int)((long)_inodeCount * BaseInode.Size)));
        inodes.Clear(); // unused numbers stay all zero
        foreach (var dir in _dirs)
        {
            dir.FirstDirent = dirent;
            foreach (var (name, child) in dir.Entries)
            {
                ref var e = ref region.At<BaseDirent>(DirentTable(offset) + dirent * BaseDirent.Size);
                e = default;
                e.NameOffset = checked((uint)nameAt);
                e.NameLength = (ushort)name.Length;
                e.ChildIno = (uint)child;
                name.CopyTo(region.WritableSpan(namePool + nameAt, name.Length));
                nameAt += name.Length;
                dirent++;
            }
        }
        long lastReport = 0;
        for (long ino = 1; ino <= _inodeCount; ino++)
        {
            if (_items[ino] is not { } item)
                continue;
            ref var n = ref MemoryMarshal.AsRef<BaseInode>(inodes.Slice((int)((ino - 1) * BaseInode.Size), BaseInode.Size));
            var info = item.Info;
            n.Mode = ModeBits.Of(info.Kind) | (info.Perm & ModeBits.PermMask);
            n.Uid = info.Uid;
            n.Gid = info.Gid;
            n.ParentIno = (uint)item.Parent;
            n.MtimeNs = info.MtimeNs;
            n.CtimeNs = info.CtimeNs == info.MtimeNs ? 0 : info.CtimeNs;
            n.AtimeNs = info.AtimeNs == info.MtimeNs ? 0 : info.AtimeNs;
            if (info.Kind != NodeKind.Directory && info.Nlink > 1)
                n.Subdirs = (uint)info.Nlink; // a non-directory's name count (hard links)
            if (item.Dir is { } dir)
            {
                n.ByteSize = dir.Entries.Count;
                n.DataOffset = dir.FirstDirent;
                n.Subdirs = (uint)dir.Entries.Count(e => _items[e.Ino]!.Info.Kind == NodeKind.Directory);
            }
            else if (View.IsSpecial(info.Kind))
            {
                n.DataOffset = info.Rdev; // no bytes; a device node's number (0 for a FIFO or socket)
            }
            else if (item.Target is { } target)
            {
                n.ByteSize = target.Length;
                n.DataOffset = dataStart + item.Placed;
                target.CopyTo(region.WritableSpan(n.DataOffset, target.Length));
                copied += target.Length;
            }
            else
            {
                n.ByteSize = item.Data.Size;
                n.DataOffset = dataStart + item.Placed;
                long to = n.DataOffset;
                if (item.Sparse)
                {
                    n.Flags = BaseInode.FlagSparse;
                    var table = region.WritableSpan(to, 8 + item.Runs!.Count * BaseInode.ExtentEntrySize);
                    MemoryMarshal.Write(table, (long)item.Runs.Count);
                    to += table.Length;
                    for (int i = 0; i < item.Runs.Count; i++)
                    {
                        var entry = table.Slice(8 + i * BaseInode.ExtentEntrySize);
                        MemoryMarshal.Write(entry, item.Runs[i].FileOffset);
                        MemoryMarshal.Write(entry[8..], item.Runs[i].Length);
                        MemoryMarshal.Write(entry[16..], to);
                        to += item.Runs[i].Length;
                    }
                    to = n.DataOffset + table.Length;
                }
                foreach (var (fileOffset, length) in item.Runs!)
                {
                    Copy(region, in item.Data, fileOffset, length, to);
                    to += length;
                    copied += length;
                }
            }
            done++;
            if (progress is not null && (copied - lastReport >= 16 << 20 || done == Entries))
            {
                progress.Report(new BuildProgress(done, Entries, copied, DataBytes));
                lastReport = copied;
            }
        }

        if (_xattrLength > 0)
            XattrTable.Write(_xattrs, region.WritableSpan(XattrTableAt(offset), (int)_xattrLength));
        BaseImage.Seal(region, offset, new BaseHeader
        {
            XattrOffset = _xattrLength == 0 ? 0 : XattrTableAt(offset),
            XattrLength = _xattrLength,
            InodeCount = _inodeCount,
            InodeTableOffset = InodeTable(offset),
            DirentOffset = DirentTable(offset),
            DirentCount = _direntCount,
            NamePoolOffset = namePool,
            NamePoolLength = _namePool,
            DataOffset = dataStart,
            DataLength = _dataLength,
            ChunkCrcOffset = FormatConstants.AlignUp(dataStart + _dataLength, 8),
            ChunkCount = ChunkCount,
        });
        return Length;
    }

    /// <summary>Copies file bytes [fileOffset, +length) (no holes inside) to region offset <paramref name="to"/>.</summary>
    private static void Copy(Region region, in FileData d, long fileOffset, long length, long to)
    {
        long pos = fileOffset, end = fileOffset + length;
        while (pos < end)
        {
            if (!d.Locate(pos, out long source, out long available))
                throw new InvalidOperationException($"a hole at {pos} inside a data run");
            long n = Math.Min(Math.Min(available, end - pos), 1 << 30);
            region.Check(source, n);
            d.Base.EnsureVerified(source, n); // never copy damaged base bytes under a fresh checksum
            region.Span(source, (int)n).CopyTo(region.WritableSpan(to, (int)n));
            pos += n;
            to += n;
        }
    }
}
