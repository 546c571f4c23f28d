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
public sealed record Change(ChangeKind Kind, string Path, NodeKind NodeKind, string? OldPath, IReadOnlyList<ByteRange> Ranges, string? Detail);

internal static class DiffEngine
{
    private readonly record struct Entry(string Path, InodeInfo Info);

    public static List<Change> Compare(View older, View newer)
    {
        var a = Index(older);
        var b = Index(newer);
        var changes = new List<Change>();
        foreach (var (ino, nb) in b)
        {
            if (!a.TryGetValue(ino, out var na))
            {
                changes.Add(new Change(ChangeKind.Added, nb.Path, nb.Info.Kind, null, [], Describe(nb.Info)));
                continue;
            }
            if (na.Info.Kind != nb.Info.Kind)
            {
                changes.Add(new Change(ChangeKind.Deleted, na.Path, na.Info.Kind, null, [], null));
                changes.Add(new Change(ChangeKind.Added, nb.Path, nb.Info.Kind, null, [], Describe(nb.Info)));
                continue;
            }
            if (na.Path != nb.Path)
                changes.Add(new Change(ChangeKind.Renamed, nb.Path, nb.Info.Kind, na.Path, [], null));
            if (nb.Info.Kind == NodeKind.File)
            {
                var ranges = ChangedRanges(FileData.Of(older, ino), FileData.Of(newer, ino));
                if (ranges.Count > 0 || na.Info.Size != nb.Info.Size)
                    changes.Add(new Change(ChangeKind.Modified, nb.Path, NodeKind.File, null, ranges,
                        $"size {na.Info.Size} -> {nb.Info.Size}"));
            }
            else if (nb.Info.Kind == NodeKind.Symlink && older.LinkTarget(ino) != newer.LinkTarget(ino))
            {
                changes.Add(new Change(ChangeKind.Modified, nb.Path, NodeKind.Symlink, null, [],
                    $"target {older.LinkTarget(ino)} -> {newer.LinkTarget(ino)}"));
            }
            if (na.Info.Perm != nb.Info.Perm || na.Info.Uid != nb.Info.Uid || na.Info.Gid != nb.Info.Gid)
            {
                var parts = new List<string>();
                if (na.Info.Perm != nb.Info.Perm) parts.Add($"mode {Convert.ToString(na.Info.Perm, 8)} -> {Convert.ToString(nb.Info.Perm, 8)}");
                if (na.Info.Uid != nb.Info.Uid) parts.Add($"uid {na.Info.Uid} -> {nb.Info.Uid}");
                if (na.Info.Gid != nb.Info.Gid) parts.Add($"gid {na.Info.Gid} -> {nb.Info.Gid}");
                changes.Add(new Change(ChangeKind.AttributesChanged, nb.Path, nb.Info.Kind, null, [], string.Join(", ", parts)));
            }
        }
        foreach (var (ino, na) in a)
            if (!b.ContainsKey(ino))
                changes.Add(new Change(ChangeKind.Deleted, na.Path, na.Info.Kind, null, [], null));
        changes.Sort((x, y) => string.CompareOrdinal(x.Path, y.Path) is var c && c != 0 ? c : x.Kind.CompareTo(y.Kind));
        return changes;
    }

    private static string Describe(in InodeInfo i) => i.Kind switch
    {
        NodeKind.File => $"{i.Size} bytes",
        NodeKind.Directory => "directory",
        _ => "symlink",
    };

    /// <summary>Every inode reachable from the root, with its path.</summary>
    private static Dictionary<long, Entry> Index(View v)
    {
        var map = new Dictionary<long, Entry>();
        foreach (var (path, ino) in v.Walk())
            map[ino] = new Entry("/" + path, v.Info(ino));
        return map;
    }

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
