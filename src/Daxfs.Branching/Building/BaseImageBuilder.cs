using System.Runtime.InteropServices;
using System.Security.Cryptography;
using Daxfs.Branching.Format;
using Daxfs.Branching.Index;
using Daxfs.Branching.Media;

namespace Daxfs.Branching;

/// <summary>Progress of writing a base image.</summary>
/// <param name="FilesDone">Entries written so far.</param>
/// <param name="FilesTotal">Entries to write.</param>
/// <param name="BytesDone">File bytes written so far.</param>
/// <param name="BytesTotal">File bytes to write (before deduplication).</param>
public readonly record struct BuildProgress(long FilesDone, long FilesTotal, long BytesDone, long BytesTotal);

/// <summary>What the builder does with entries a base image cannot hold faithfully.</summary>
public enum UnsupportedEntryPolicy
{
    /// <summary>
    /// Skip devices, sockets and FIFOs, and store each name of a hard-linked file as an independent file
    /// (its bytes are stored once, by deduplication); each case is listed in <see cref="BaseImageBuilder.Warnings"/>.
    /// </summary>
    Warn,
    /// <summary>Refuse the source tree with an <see cref="IOException"/> naming the first such entry.</summary>
    Refuse,
}

/// <summary>
/// Collects a file tree (from a directory on disk or built in memory) and writes it as the immutable base
/// image of a new region. Identical contents are stored once; file data larger than a page is page-aligned
/// so it can be served zero-copy.
/// </summary>
public sealed class BaseImageBuilder
{
    internal sealed class Entry
    {
        public required string Name;
        public required NodeKind Kind;
        public uint Perm;
        public uint Uid;
        public uint Gid;
        public long MtimeNs;
        /// <summary>Access time; 0: the same as <see cref="MtimeNs"/>.</summary>
        public long AtimeNs;
        /// <summary>Device nodes: the device number.</summary>
        public long Rdev;
        /// <summary>Extended attributes (POSIX ACLs among them), by name.</summary>
        public Dictionary<string, byte[]>? Xattrs;
        public SortedDictionary<string, Entry>? Children;
        public byte[]? Content;
        public string? SourcePath;
        public long Size;
        public string? Target;
        /// <summary>A source file's data runs when it has holes (the rest reads as zeros); null: all of it is data.</summary>
        public List<(long Offset, long Length)>? Runs;
        /// <summary>Another name of <see cref="LinkOf"/>'s inode (a hard link): it has no inode of its own.</summary>
        public Entry? LinkOf;
        /// <summary>Names of this inode in the tree (hard links), when it is the first of them.</summary>
        public int Links = 1;
        // Assigned when written.
        public uint Ino;
        public uint ParentIno;
    }

    private readonly Entry _root;

    /// <summary>Source files with several names, by device and inode number: their first entry in the tree.</summary>
    private readonly Dictionary<(ulong Dev, ulong Ino), Entry> _byFileId = [];
    private readonly List<string> _warnings = [];
    private long _entries = 1;
    private long _contentBytes;

    /// <summary>Creates a builder holding an empty root directory (mode 0755, owned by root).</summary>
    public BaseImageBuilder()
    {
        _root = NewDir("", 0x1ED, 0, 0, NowNs());
    }

    /// <summary>Messages about entries that were skipped or changed while collecting the tree.</summary>
    public IReadOnlyList<string> Warnings => _warnings;

    /// <summary>Entries collected, the root included.</summary>
    public long EntryCount => _entries;

    /// <summary>Bytes of file content collected (before deduplication).</summary>
    public long ContentBytes => _contentBytes;

    internal static long NowNs() => (DateTime.UtcNow - DateTime.UnixEpoch).Ticks * 100;

    private static Entry NewDir(string name, uint perm, uint uid, uint gid, long mtimeNs) => new()
    {
        Name = name,
        Kind = NodeKind.Directory,
        Perm = perm & ModeBits.PermMask,
        Uid = uid,
        Gid = gid,
        MtimeNs = mtimeNs,
        Children = new SortedDictionary<string, Entry>(Utf8NameComparer.Instance),
    };

    /// <summary>Sets the root directory's attributes.</summary>
    public BaseImageBuilder SetRoot(uint mode, uint uid = 0, uint gid = 0, DateTimeOffset? mtime = null)
    {
        _root.Perm = mode & ModeBits.PermMask;
        _root.Uid = uid;
        _root.Gid = gid;
        _root.MtimeNs = ToNs(mtime);
        return this;
    }

    /// <summary>Adds a directory (and any missing parents, mode 0755).</summary>
    public BaseImageBuilder AddDirectory(string path, uint mode = 0x1ED, uint uid = 0, uint gid = 0, DateTimeOffset? mtime = null)
    {
        var (parent, name) = Parent(path, createParents: true);
        if (parent.Children!.TryGetValue(name, out var existing))
        {
            if (existing.Kind != NodeKind.Directory)
                throw new ArgumentException($"{path}: already added as a {existing.Kind}", nameof(path));
            existing.Perm = mode & ModeBits.PermMask;
            existing.Uid = uid;
            existing.Gid = gid;
            existing.MtimeNs = ToNs(mtime);
            return this;
        }
        parent.Children.Add(name, NewDir(name, mode, uid, gid, ToNs(mtime)));
        _entries++;
        return this;
    }

    /// <summary>Adds a regular file with the given content (and any missing parent directories).</summary>
    public BaseImageBuilder AddFile(string path, ReadOnlySpan<byte> content, uint mode = 0x1A4, uint uid = 0, uint gid = 0, DateTimeOffset? mtime = null)
    {
        var e = AddLeaf(path, NodeKind.File, mode, uid, gid, ToNs(mtime));
        e.Content = content.ToArray();
        e.Size = content.Length;
        _contentBytes += content.Length;
        return this;
    }

    /// <summary>Adds a FIFO, socket or device node (with its number, as the C library's dev_t encodes it).</summary>
    public BaseImageBuilder AddSpecialFile(string path, NodeKind kind, uint mode = 0x1A4, long device = 0, uint uid = 0, uint gid = 0, DateTimeOffset? mtime = null)
    {
        if (!View.IsSpecial(kind))
            throw new ArgumentException($"{kind} is not a FIFO, socket or device node", nameof(kind));
        var e = AddLeaf(path, kind, mode, uid, gid, ToNs(mtime));
        e.Rdev = View.IsDevice(kind) ? device : 0;
        return this;
    }

    /// <summary>Adds a symbolic link whose target is <paramref name="target"/>.</summary>
    public BaseImageBuilder AddSymlink(string path, string target, uint uid = 0, uint gid = 0, DateTimeOffset? mtime = null)
    {
        ArgumentException.ThrowIfNullOrEmpty(target);
        if (target.Contains('\0', StringComparison.Ordinal) || Names.Utf8.GetByteCount(target) > FormatConstants.MaxLinkTarget)
            throw new ArgumentException($"{path}: symlink target must be 1..4095 bytes without NUL", nameof(target));
        var e = AddLeaf(path, NodeKind.Symlink, 0x1FF, uid, gid, ToNs(mtime));
        e.Target = target;
        e.Size = Names.Utf8.GetByteCount(target);
        return this;
    }

    private Entry AddLeaf(string path, NodeKind kind, uint mode, uint uid, uint gid, long mtimeNs)
    {
        var (parent, name) = Parent(path, createParents: true);
        if (parent.Children!.ContainsKey(name))
            throw new ArgumentException($"{path}: already added", nameof(path));
        var e = new Entry { Name = name, Kind = kind, Perm = mode & ModeBits.PermMask, Uid = uid, Gid = gid, MtimeNs = mtimeNs };
        parent.Children.Add(name, e);
        _entries++;
        return e;
    }

    private (Entry Parent, string Name) Parent(string path, bool createParents)
    {
        string[] parts;
        try { parts = Names.Split(path); }
        catch (DaxfsIOException ex) { throw new ArgumentException(ex.Message, nameof(path)); }
        if (parts.Length == 0)
            throw new ArgumentException("the root cannot be added; use SetRoot", nameof(path));
        foreach (var p in parts)
        {
            try { Names.Validate(p, path); }
            catch (DaxfsIOException ex) { throw new ArgumentException(ex.Message, nameof(path)); }
        }
        var dir = _root;
        for (int i = 0; i < parts.Length - 1; i++)
        {
            if (!dir.Children!.TryGetValue(parts[i], out var next))
            {
                if (!createParents)
                    throw new ArgumentException($"{path}: parent missing", nameof(path));
                next = NewDir(parts[i], 0x1ED, 0, 0, NowNs());
                dir.Children.Add(parts[i], next);
                _entries++;
            }
            if (next.Kind != NodeKind.Directory)
                throw new ArgumentException($"{path}: '{parts[i]}' is not a directory", nameof(path));
            dir = next;
        }
        return (dir, parts[^1]);
    }

    private static long ToNs(DateTimeOffset? t) => t is null ? NowNs() : (t.Value.UtcDateTime - DateTime.UnixEpoch).Ticks * 100;

    /// <summary>
    /// Collects the tree under <paramref name="directory"/>: directories, regular files and symlinks with
    /// their mode, owner, group and modification time. Symlinks are stored, never followed.
    /// </summary>
    public static BaseImageBuilder FromDirectory(string directory, UnsupportedEntryPolicy policy = UnsupportedEntryPolicy.Warn)
    {
        string full = Path.GetFullPath(directory);
        if (!Directory.Exists(full))
            throw new DirectoryNotFoundException($"{directory}: source directory not found");
        var b = new BaseImageBuilder();
        var st = UnixStatReader.Read(full);
        b.SetRoot(st.Mode, st.Uid, st.Gid, DateTimeOffset.FromUnixTimeMilliseconds(st.MtimeNs / 1_000_000));
        b._root.MtimeNs = st.MtimeNs;
        b._root.AtimeNs = st.AtimeNs;
        if (UnixStatReader.Xattrs(full) is { Count: > 0 } rootXattrs)
            b._root.Xattrs = rootXattrs;
        b.Collect(b._root, full, policy);
        return b;
    }

    private void Collect(Entry dir, string path, UnsupportedEntryPolicy policy)
    {
        foreach (var child in Directory.EnumerateFileSystemEntries(path))
        {
            string name = Path.GetFileName(child);
            if (name.Contains('\uFFFD', StringComparison.Ordinal))
            {
                Unsupported(policy, $"{child}: name is not valid UTF-8; skipped");
                continue;
            }
            var st = UnixStatReader.Read(child);
            uint type = st.Mode & ModeBits.TypeMask;
            if (type != ModeBits.Directory && st.Nlink > 1)
            {
                // A hard link: a file already met under another name in this tree becomes one more name of it.
                if (_byFileId.TryGetValue((st.Dev, st.Ino), out var first))
                {
                    first.Links++;
                    dir.Children!.Add(name, new Entry { Name = name, Kind = first.Kind, LinkOf = first });
                    continue;
                }
            }
            var e = new Entry { Name = name, Kind = NodeKind.File, Perm = st.Mode & ModeBits.PermMask, Uid = st.Uid, Gid = st.Gid, MtimeNs = st.MtimeNs, AtimeNs = st.AtimeNs };
            // Extended attributes and POSIX ACLs are kept as they are (with an ACL, stat's group bits are its mask,
            // and the ACL, stored beside them, says what the owning group may do).
            if (UnixStatReader.Xattrs(child) is { Count: > 0 } xattrs)
                e.Xattrs = xattrs;
            switch (type)
            {
                case ModeBits.Directory:
                    e.Kind = NodeKind.Directory;
                    e.Children = new SortedDictionary<string, Entry>(Utf8NameComparer.Instance);
                    dir.Children!.Add(name, e);
                    _entries++;
                    Collect(e, child, policy);
                    break;
                case ModeBits.Regular:
                    if (st.Nlink > 1)
                        _byFileId[(st.Dev, st.Ino)] = e; // its other names in the tree link to it
                    e.SourcePath = child;
                    e.Size = st.Size;
                    using (var probe = File.OpenHandle(child, FileMode.Open, FileAccess.Read))
                        e.Runs = Libc.DataRuns(probe, st.Size); // a sparse file's holes stay holes in the image
                    _contentBytes += e.Runs?.Sum(r => r.Length) ?? st.Size;
                    dir.Children!.Add(name, e);
                    _entries++;
                    break;
                case ModeBits.Symlink:
                    if (st.Nlink > 1)
                        _byFileId[(st.Dev, st.Ino)] = e;
                    e.Kind = NodeKind.Symlink;
                    e.Perm = 0x1FF;
                    var info = new FileInfo(child);
                    e.Target = info.LinkTarget ?? throw new IOException($"{child}: cannot read symlink");
                    e.Size = Names.Utf8.GetByteCount(e.Target);
                    dir.Children!.Add(name, e);
                    _entries++;
                    break;
                case ModeBits.Fifo or ModeBits.Socket or ModeBits.CharDevice or ModeBits.BlockDevice:
                    if (st.Nlink > 1)
                        _byFileId[(st.Dev, st.Ino)] = e;
                    e.Kind = View.KindOfMode(st.Mode);
                    e.Rdev = View.IsDevice(e.Kind) ? st.Rdev : 0;
                    dir.Children!.Add(name, e);
                    _entries++;
                    break;
                default:
                    Unsupported(policy, $"{child}: file of unknown type (mode {st.Mode:X}) skipped");
                    break;
            }
        }
    }

    private void Unsupported(UnsupportedEntryPolicy policy, string message)
    {
        if (policy == UnsupportedEntryPolicy.Refuse)
            throw new IOException(message);
        _warnings.Add(message);
    }

    // ------------------------------------------------------------------ writing

    /// <summary>An upper bound of the bytes the base image takes (before deduplication).</summary>
    internal long EstimateSize()
    {
        long names = 0, data = 0;
        foreach (var e in Walk())
        {
            names += Names.Utf8.GetByteCount(e.Name);
            if (e.Kind == NodeKind.File && e.Runs is { } runs) data += 8 + runs.Count * (long)(BaseInode.ExtentEntrySize + 8) + runs.Sum(r => r.Length) + 8;
            else if (e.Kind == NodeKind.File) data += e.Size + (e.Size >= FormatConstants.PageSize ? FormatConstants.PageSize : 8);
            if (e.Kind == NodeKind.Symlink) data += e.Size + 8;
        }
        long xattrs = 0;
        foreach (var e in Walk())
            if (e.Xattrs is { } x) xattrs += XattrTable.Size([(0u, x)]);
        long meta = BaseHeader.Size + _entries * (BaseInode.Size + BaseDirent.Size) + names + xattrs + 24;
        long chunks = (data + FormatConstants.PageSize) / FormatConstants.DataChunkSize + 1;
        return FormatConstants.AlignUp(meta, FormatConstants.PageSize) + data + FormatConstants.PageSize + chunks * 4 + FormatConstants.PageSize;
    }

    private IEnumerable<Entry> Walk()
    {
        var q = new Queue<Entry>();
        q.Enqueue(_root);
        while (q.Count > 0)
        {
            var e = q.Dequeue();
            yield return e;
            if (e.Children is not null)
                foreach (var c in e.Children.Values) q.Enqueue(c);
        }
    }

    /// <summary>Writes the image at <paramref name="offset"/> (page-aligned) in the region; returns its length.</summary>
    internal unsafe long WriteTo(Region region, long offset, long limit, IProgress<BuildProgress>? progress)
    {
        // Breadth-first numbering: a directory's entries are contiguous in the dirent table.
        // Every name is an entry; a hard link's later names share the first one's inode.
        var all = Walk().ToList();
        var order = all.Where(e => e.LinkOf is null).ToList();
        for (int i = 0; i < order.Count; i++) order[i].Ino = (uint)(i + 1);
        _root.ParentIno = 1;
        foreach (var e in order)
            if (e.Children is not null)
                foreach (var c in e.Children.Values)
                    if (c.LinkOf is null) c.ParentIno = e.Ino; // a linked inode's parent: its first name's directory

        long inodeTable = offset + BaseHeader.Size;
        long dirents = inodeTable + (long)order.Count * BaseInode.Size;
        long direntCount = all.Count - 1;
        long namePool = dirents + direntCount * BaseDirent.Size;
        long namesLength = 0;
        foreach (var e in all)
            if (!ReferenceEquals(e, _root)) namesLength += Names.Utf8.GetByteCount(e.Name);
        var withXattrs = order.Where(e => e.Xattrs is { Count: > 0 }).Select(e => (e.Ino, (IReadOnlyDictionary<string, byte[]>)e.Xattrs!)).ToList();
        long xattrTable = FormatConstants.AlignUp(namePool + namesLength, 8);
        long xattrLength = XattrTable.Size(withXattrs);
        long data = FormatConstants.AlignUp(xattrTable + xattrLength, FormatConstants.PageSize);
        if (data > limit)
            throw new IOException($"base image metadata needs {data - offset} bytes, more than the {limit - offset} available");

        // Extended attributes.
        if (xattrLength > int.MaxValue)
            throw new IOException($"the extended attributes of this tree take {xattrLength} bytes, more than a base image holds");
        if (xattrLength > 0)
            XattrTable.Write(withXattrs, region.WritableSpan(xattrTable, (int)xattrLength));

        // Dirents and names.
        long direntIndex = 0, nameCursor = 0;
        var firstDirent = new long[order.Count + 1];
        foreach (var e in order)
        {
            if (e.Children is null) continue;
            firstDirent[e.Ino] = direntIndex;
            foreach (var c in e.Children.Values)
            {
                ref var d = ref region.At<BaseDirent>(dirents + direntIndex * BaseDirent.Size);
                d = default;
                int n = Names.Utf8.GetBytes(c.Name, region.WritableSpan(namePool + nameCursor, Names.Utf8.GetByteCount(c.Name)));
                d.NameOffset = (uint)nameCursor;
                d.NameLength = (ushort)n;
                d.ChildIno = (c.LinkOf ?? c).Ino;
                nameCursor += n;
                direntIndex++;
            }
        }

        // File data, deduplicated by SHA-256.
        var seen = new Dictionary<string, (long Offset, long Size)>(StringComparer.Ordinal);
        long cursor = data;
        long filesDone = 0, bytesDone = 0;
        long bytesTotal = _contentBytes;
        var dataOffsets = new long[order.Count + 1];
        var lastReport = DateTime.MinValue;
        var sparse = new HashSet<uint>();
        foreach (var e in order)
        {
            filesDone++;
            if (e.Kind == NodeKind.Directory || View.IsSpecial(e.Kind)) continue; // no bytes of their own
            if (e.Runs is { } runs)
            {
                // Holes stay holes: an extent table (count, then offset, length and source of each run), then the runs' bytes.
                long tableAt = FormatConstants.AlignUp(cursor, 8);
                long tableLength = 8 + runs.Count * (long)BaseInode.ExtentEntrySize;
                long dataBytes = runs.Sum(r => r.Length);
                if (tableAt + tableLength + dataBytes > limit)
                    throw new IOException($"the base image does not fit: {e.Name} needs {tableLength + dataBytes} bytes at offset {tableAt}, the region's limit is {limit}");
                var table = region.WritableSpan(tableAt, (int)tableLength);
                MemoryMarshal.Write(table, (long)runs.Count);
                long to = tableAt + tableLength;
                using var source = File.OpenHandle(e.SourcePath!, FileMode.Open, FileAccess.Read);
                for (int i = 0; i < runs.Count; i++)
                {
                    var entry = table.Slice(8 + i * BaseInode.ExtentEntrySize);
                    MemoryMarshal.Write(entry, runs[i].Offset);
                    MemoryMarshal.Write(entry[8..], runs[i].Length);
                    MemoryMarshal.Write(entry[16..], to);
                    for (long done = 0; done < runs[i].Length;)
                    {
                        int n = (int)Math.Min(runs[i].Length - done, 8 << 20);
                        int got = RandomAccess.Read(source, region.WritableSpan(to + done, n), runs[i].Offset + done);
                        if (got <= 0)
                            throw new IOException($"{e.SourcePath}: file shrank while the image was being built");
                        done += got;
                        bytesDone += got;
                    }
                    to += runs[i].Length;
                }
                if (RandomAccess.GetLength(source) != e.Size)
                    throw new IOException($"{e.SourcePath}: file changed size while the image was being built (expected {e.Size} bytes)");
                dataOffsets[e.Ino] = tableAt;
                sparse.Add(e.Ino);
                cursor = to;
                continue;
            }
            long size = e.Size;
            long at = FormatConstants.AlignUp(cursor, size >= FormatConstants.PageSize ? FormatConstants.PageSize : 8);
            if (at + size > limit)
                throw new IOException($"the base image does not fit: {e.Name} needs {size} bytes at offset {at}, the region's limit is {limit}");
            using var hash = IncrementalHash.CreateHash(HashAlgorithmName.SHA256);
            if (e.Kind == NodeKind.Symlink)
            {
                var dst = region.WritableSpan(at, (int)size);
                Names.Utf8.GetBytes(e.Target!, dst);
                hash.AppendData(dst);
            }
            else if (e.Content is not null)
            {
                e.Content.CopyTo(region.WritableSpan(at, e.Content.Length));
                hash.AppendData(e.Content);
            }
            else if (size > 0)
            {
                using var fs = new FileStream(e.SourcePath!, FileMode.Open, FileAccess.Read, FileShare.Read, 1, FileOptions.SequentialScan);
                long done = 0;
                while (done < size)
                {
                    int n = (int)Math.Min(size - done, 8 << 20);
                    var dst = region.WritableSpan(at + done, n);
                    int got = fs.ReadAtLeast(dst, n, throwOnEndOfStream: false);
                    if (got != n)
                        throw new IOException($"{e.SourcePath}: file shrank while the image was being built (expected {size} bytes)");
                    hash.AppendData(dst);
                    done += n;
                    bytesDone += n;
                }
                if (fs.ReadByte() != -1)
                    throw new IOException($"{e.SourcePath}: file grew while the image was being built (expected {size} bytes)");
            }
            string key = (e.Kind == NodeKind.Symlink ? "l:" : "f:") + Convert.ToHexString(hash.GetHashAndReset());
            if (seen.TryGetValue(key, out var prior) && prior.Size == size)
            {
                dataOffsets[e.Ino] = prior.Offset; // identical bytes: point at the first copy, reuse the space
            }
            else
            {
                seen[key] = (at, size);
                dataOffsets[e.Ino] = at;
                cursor = at + size;
            }
            if (e.Content is not null) bytesDone += size;
            if (progress is not null && (DateTime.UtcNow - lastReport).TotalMilliseconds > 100)
            {
                lastReport = DateTime.UtcNow;
                progress.Report(new BuildProgress(filesDone, order.Count, bytesDone, bytesTotal));
            }
        }
        long dataLength = cursor - data;
        long chunkCount = (dataLength + FormatConstants.DataChunkSize - 1) / FormatConstants.DataChunkSize;
        long chunkCrc = FormatConstants.AlignUp(cursor, 8);
        if (chunkCrc + chunkCount * 4 > limit)
            throw new IOException("the base image does not fit in the region");

        // Inodes.
        foreach (var e in order)
        {
            ref var n = ref region.At<BaseInode>(inodeTable + (long)(e.Ino - 1) * BaseInode.Size);
            n = default;
            n.Uid = e.Uid;
            n.Gid = e.Gid;
            n.MtimeNs = e.MtimeNs;
            n.AtimeNs = e.AtimeNs == e.MtimeNs ? 0 : e.AtimeNs;
            if (e.Kind != NodeKind.Directory && e.Links > 1)
                n.Subdirs = (uint)e.Links; // a non-directory's name count (hard links)
            n.ParentIno = e.ParentIno; // every inode names its directory (the root names itself)
            switch (e.Kind)
            {
                case NodeKind.Directory:
                    n.Mode = ModeBits.Directory | e.Perm;
                    n.ByteSize = e.Children!.Count;
                    n.DataOffset = firstDirent[e.Ino];
                    n.Subdirs = (uint)e.Children.Values.Count(c => c.Kind == NodeKind.Directory);
                    break;
                case NodeKind.Symlink:
                    n.Mode = ModeBits.Symlink | 0x1FF;
                    n.ByteSize = e.Size;
                    n.DataOffset = dataOffsets[e.Ino];
                    break;
                case NodeKind.Fifo or NodeKind.Socket or NodeKind.CharDevice or NodeKind.BlockDevice:
                    n.Mode = ModeBits.Of(e.Kind) | e.Perm;
                    n.DataOffset = e.Rdev; // 0 for a FIFO or socket
                    break;
                default:
                    n.Mode = ModeBits.Regular | e.Perm;
                    n.ByteSize = e.Size;
                    n.DataOffset = e.Size == 0 ? data : dataOffsets[e.Ino];
                    if (sparse.Contains(e.Ino)) n.Flags = BaseInode.FlagSparse;
                    break;
            }
        }

        BaseImage.Seal(region, offset, new BaseHeader
        {
            InodeCount = (uint)order.Count,
            InodeTableOffset = inodeTable,
            DirentOffset = dirents,
            DirentCount = direntCount,
            NamePoolOffset = namePool,
            NamePoolLength = namesLength,
            XattrOffset = xattrLength == 0 ? 0 : xattrTable,
            XattrLength = xattrLength,
            DataOffset = data,
            DataLength = dataLength,
            ChunkCrcOffset = chunkCrc,
            ChunkCount = chunkCount,
        });
        progress?.Report(new BuildProgress(order.Count, order.Count, bytesTotal, bytesTotal));
        return chunkCrc + chunkCount * 4 - offset;
    }
}
