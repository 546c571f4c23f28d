using Daxfs.Branching.Index;

namespace Daxfs.Branching;

/// <summary>How an entry differs between two views.</summary>
public enum ChangeKind
{
    /// <summary>Exists only in the newer view.</summary>
    Added,
    /// <summary>Exists only in the older view.</summary>
    Deleted,
    /// <summary>Same entry, other content (files: see <see cref="Change.Ranges"/>; symlinks: other target).</summary>
    Modified,
    /// <summary>Same entry under another path (<see cref="Change.OldPath"/> → <see cref="Change.Path"/>).</summary>
    Renamed,
    /// <summary>Same entry, other mode, owner or group.</summary>
    AttributesChanged,
}

/// <summary>A run of bytes of a file.</summary>
/// <param name="Offset">First byte.</param>
/// <param name="Length">Bytes in the run.</param>
public readonly record struct ByteRange(long Offset, long Length);

/// <summary>One difference between two views of a tree.</summary>
/// <param name="Kind">What changed.</param>
/// <param name="Path">The entry's path in the newer view (in the older one for deletions).</param>
/// <param name="NodeKind">File, directory or symlink.</param>
/// <param name="OldPath">For renames: the path in the older view.</param>
/// <param name="Ranges">For modified files: the byte ranges whose content differs (in the newer file's offsets).</param>
/// <param name="Detail">A short human description (sizes, attribute values, targets).</param>
/// <remarks>
/// A file with several names (hard links) is compared once, under one of its names (its path); every other name
/// that came is an <see cref="ChangeKind.Added"/> change whose <see cref="LinkTo"/> names that path, and every
/// other name that went is a <see cref="ChangeKind.Deleted"/> change of that name alone.
/// </remarks>
public sealed record Change(ChangeKind Kind, string Path, NodeKind NodeKind, string? OldPath, IReadOnlyList<ByteRange> Ranges, string? Detail)
{
    /// <summary>For an added name of a file that has others: the path of the file it is another name of (a hard link).</summary>
    public string? LinkTo { get; init; }
}

internal static class DiffEngine
{
    /// <summary>
    /// The changes from <paramref name="older"/> to <paramref name="newer"/>. Only inodes whose node differs
    /// between the two views' change maps are visited (views share all unchanged structure), and each one's path
    /// is found through its parent links, so the cost follows the number of changes, not the size of the tree.
    /// </summary>
    public static List<Change> Compare(View older, View newer)
    {
        var candidates = new SortedSet<long>();
        LongMap.Diff(older.Nodes, newer.Nodes, ino => candidates.Add(ino));
        var pathsA = new PathFinder(older);
        var pathsB = new PathFinder(newer);
        var changes = new List<Change>();
        // Files that left a path and files that came to one: a file replaced at its path (a new inode, as an
        // editor's save or ReplaceFile makes) is one modification of that path, not a deletion and an addition.
        var gone = new Dictionary<string, long>(StringComparer.Ordinal);
        var came = new Dictionary<string, long>(StringComparer.Ordinal);
        foreach (long ino in candidates)
        {
            string? pa = pathsA.PathOf(ino), pb = pathsB.PathOf(ino);
            if (pa is null && pb is null)
                continue; // created and removed in between, or never named
            if (pa is null)
            {
                var ib = newer.Info(ino);
                if (ib.Kind == NodeKind.File) came[pb!] = ino;
                else changes.Add(new Change(ChangeKind.Added, pb!, ib.Kind, null, [], Describe(ib)));
                continue;
            }
            var ia = older.Info(ino);
            if (pb is null)
            {
                if (ia.Kind == NodeKind.File) gone[pa] = ino;
                else changes.Add(new Change(ChangeKind.Deleted, pa, ia.Kind, null, [], null));
                continue;
            }
            var nb = newer.Info(ino);
            if (ia.Kind != nb.Kind)
            {
                changes.Add(new Change(ChangeKind.Deleted, pa, ia.Kind, null, [], null));
                changes.Add(new Change(ChangeKind.Added, pb, nb.Kind, null, [], Describe(nb)));
                continue;
            }
            if (pa != pb && !pathsA.MovedWithParent(ino, pathsB))
                changes.Add(new Change(ChangeKind.Renamed, pb, nb.Kind, pa, [], null));
            if (nb.Kind == NodeKind.File)
            {
                var ranges = ChangedRanges(FileData.Of(older, ino), FileData.Of(newer, ino));
                if (ranges.Count > 0 || ia.Size != nb.Size)
                    changes.Add(new Change(ChangeKind.Modified, pb, NodeKind.File, null, ranges, $"size {ia.Size} -> {nb.Size}"));
            }
            else if (nb.Kind == NodeKind.Symlink && older.LinkTarget(ino) != newer.LinkTarget(ino))
            {
                changes.Add(new Change(ChangeKind.Modified, pb, NodeKind.Symlink, null, [],
                    $"target {older.LinkTarget(ino)} -> {newer.LinkTarget(ino)}"));
            }
            if (ia.Perm != nb.Perm || ia.Uid != nb.Uid || ia.Gid != nb.Gid || !SameXattrs(older.Xattrs(ino), newer.Xattrs(ino)))
                changes.Add(new Change(ChangeKind.AttributesChanged, pb, nb.Kind, null, [], AttributeChange(ia, nb, older.Xattrs(ino), newer.Xattrs(ino))));
        }
        foreach (var (path, newIno) in came)
        {
            var nb = newer.Info(newIno);
            if (!gone.Remove(path, out long oldIno))
            {
                changes.Add(new Change(ChangeKind.Added, path, nb.Kind, null, [], Describe(nb)));
                continue;
            }
            var ia = older.Info(oldIno);
            var ranges = ChangedRanges(FileData.Of(older, oldIno), FileData.Of(newer, newIno));
            if (ranges.Count > 0 || ia.Size != nb.Size)
                changes.Add(new Change(ChangeKind.Modified, path, NodeKind.File, null, ranges, $"size {ia.Size} -> {nb.Size}"));
            if (ia.Perm != nb.Perm || ia.Uid != nb.Uid || ia.Gid != nb.Gid || !SameXattrs(older.Xattrs(oldIno), newer.Xattrs(newIno)))
                changes.Add(new Change(ChangeKind.AttributesChanged, path, NodeKind.File, null, [], AttributeChange(ia, nb, older.Xattrs(oldIno), newer.Xattrs(newIno))));
        }
        foreach (var (path, _) in gone)
            changes.Add(new Change(ChangeKind.Deleted, path, NodeKind.File, null, [], null));
        // Names beyond the one a file is compared under (hard links): each one that came or went.
        foreach (long ino in candidates)
        {
            bool inA = older.Exists(ino) && older.KindOf(ino) != NodeKind.Directory && older.Info(ino).Nlink > 1;
            bool inB = newer.Exists(ino) && newer.KindOf(ino) != NodeKind.Directory && newer.Info(ino).Nlink > 1;
            if (!inA && !inB)
                continue;
            var namesA = inA ? pathsA.AllNames(ino) : [];
            var namesB = inB ? pathsB.AllNames(ino) : [];
            string? primary = pathsB.PathOf(ino);
            foreach (var name in namesB.Except(namesA).Where(n => n != primary && primary is not null))
                changes.Add(new Change(ChangeKind.Added, name, newer.KindOf(ino), null, [], $"another name of {primary}") { LinkTo = primary });
            string? primaryA = pathsA.PathOf(ino);
            foreach (var name in namesA.Except(namesB).Where(n => n != primaryA))
                changes.Add(new Change(ChangeKind.Deleted, name, older.KindOf(ino), null, [], null));
        }
        changes.Sort((x, y) => string.CompareOrdinal(x.Path, y.Path) is var c && c != 0 ? c : x.Kind.CompareTo(y.Kind));
        return changes;
    }

    private static bool SameXattrs(IReadOnlyDictionary<string, byte[]> a, IReadOnlyDictionary<string, byte[]> b)
        => a.Count == b.Count && a.All(kv => b.TryGetValue(kv.Key, out var v) && v.AsSpan().SequenceEqual(kv.Value));

    private static string AttributeChange(in InodeInfo ia, in InodeInfo nb, IReadOnlyDictionary<string, byte[]> xa, IReadOnlyDictionary<string, byte[]> xb)
    {
        var parts = new List<string>();
        var names = xa.Keys.Union(xb.Keys).Where(n => !(xa.TryGetValue(n, out var va) && xb.TryGetValue(n, out var vb) && va.AsSpan().SequenceEqual(vb))).Order(StringComparer.Ordinal).ToList();
        if (names.Count > 0) parts.Add($"extended attributes {string.Join(", ", names)}");
        if (ia.Perm != nb.Perm) parts.Add($"mode {Convert.ToString(ia.Perm, 8)} -> {Convert.ToString(nb.Perm, 8)}");
        if (ia.Uid != nb.Uid) parts.Add($"uid {ia.Uid} -> {nb.Uid}");
        if (ia.Gid != nb.Gid) parts.Add($"gid {ia.Gid} -> {nb.Gid}");
        return string.Join(", ", parts);
    }

    /// <summary>Paths of inodes in one view, found by climbing parent links; names are looked up once per directory.</summary>
    private sealed class PathFinder(View view)
    {
        private readonly Dictionary<long, Dictionary<long, string>> _names = [];
        private readonly Dictionary<long, string?> _paths = new() { [View.RootIno] = "" };

        /// <summary>The path of <paramref name="ino"/>, or null when no directory of this view names it.</summary>
        public string? PathOf(long ino)
        {
            if (_paths.TryGetValue(ino, out var known))
                return known;
            string? result = null;
            if (view.Exists(ino))
            {
                long parent = view.ParentOf(ino);
                if (parent != ino && view.Exists(parent) && view.KindOf(parent) == NodeKind.Directory && NameIn(parent, ino) is { } name
                    && PathOf(parent) is { } parentPath)
                    result = parentPath + "/" + name;
                else if (view.KindOf(ino) != NodeKind.Directory && view.Info(ino).Nlink > 0 && AllNames(ino) is [var first, ..])
                    result = first; // a hard-linked file whose parent link names a directory that lost that name
            }
            _paths[ino] = result;
            return result;
        }

        private Dictionary<long, List<string>>? _allNames;

        /// <summary>Every path naming <paramref name="ino"/> in this view, sorted (one walk of the tree, the first time a file with several names asks).</summary>
        public List<string> AllNames(long ino)
        {
            if (_allNames is null)
            {
                _allNames = [];
                foreach (var (path, child) in view.Walk())
                {
                    if (view.KindOf(child) == NodeKind.Directory || view.Info(child).Nlink < 2) continue;
                    if (!_allNames.TryGetValue(child, out var list)) _allNames[child] = list = [];
                    list.Add("/" + path.TrimStart('/'));
                }
                foreach (var list in _allNames.Values) list.Sort(StringComparer.Ordinal);
            }
            return _allNames.TryGetValue(ino, out var names) ? names : [];
        }

        /// <summary>True when the inode kept its name and parent and only an ancestor moved (the ancestor's rename says it all).</summary>
        public bool MovedWithParent(long ino, PathFinder other)
            => view.ParentOf(ino) == other.View.ParentOf(ino) && NameIn(view.ParentOf(ino), ino) == other.NameIn(other.View.ParentOf(ino), ino);

        private View View => view;

        private string? NameIn(long dir, long ino)
        {
            if (!_names.TryGetValue(dir, out var names))
            {
                names = [];
                foreach (var (name, child) in view.Entries(dir)) names[child] = name;
                _names[dir] = names;
            }
            return names.TryGetValue(ino, out var n) ? n : null;
        }
    }

    private static string Describe(in InodeInfo i) => i.Kind switch
    {
        NodeKind.File => $"{i.Size} bytes",
        NodeKind.Directory => "directory",
        NodeKind.Symlink => "symlink",
        NodeKind.CharDevice or NodeKind.BlockDevice => $"{i.Kind.ToString().ToLowerInvariant()} {i.Rdev >> 8 & 0xFFF}:{(i.Rdev & 0xFF) | (i.Rdev >> 12 & 0xFFF00)}",
        _ => i.Kind.ToString().ToLowerInvariant(),
    };

    /// <summary>
    /// The byte ranges where two versions of a file differ, found by walking their extent maps side by side:
    /// pieces served by the same region bytes (or both holes) are equal without reading them.
    /// </summary>
    public static List<ByteRange> ChangedRanges(in FileData a, in FileData b)
    {
        var ranges = new List<ByteRange>();
        if (a.Extents is null && b.Extents is null && a.BaseSource == b.BaseSource && a.Size == b.Size)
            return ranges;
        long end = Math.Max(a.Size, b.Size);
        long pos = 0;
        while (pos < end)
        {
            bool inA = pos < a.Size, inB = pos < b.Size;
            long srcA = 0, srcB = 0, availA = long.MaxValue, availB = long.MaxValue;
            bool dataA = inA && a.Locate(pos, out srcA, out availA);
            bool dataB = inB && b.Locate(pos, out srcB, out availB);
            if (!inA) availA = long.MaxValue;
            if (!inB) availB = long.MaxValue;
            long step = Math.Min(Math.Min(availA, availB), end - pos);
            bool same = inA == inB && dataA == dataB && (!dataA || srcA == srcB);
            if (!same)
            {
                if (ranges.Count > 0 && ranges[^1].Offset + ranges[^1].Length == pos)
                    ranges[^1] = ranges[^1] with { Length = ranges[^1].Length + step };
                else
                    ranges.Add(new ByteRange(pos, step));
            }
            pos += step;
        }
        return ranges;
    }
}
