using Daxfs.Branching.Branching;
using Daxfs.Branching.Coordination;
using Daxfs.Branching.Index;
using Daxfs.Branching.Replay;

namespace Daxfs.Branching;

/// <summary>One place where a branch and main changed the same thing since the branch's base.</summary>
/// <param name="Path">The path both sides changed.</param>
/// <param name="Reason">How they collide.</param>
/// <param name="Ours">Byte ranges the branch changed there (files).</param>
/// <param name="Theirs">Byte ranges main changed there (files).</param>
public sealed record RebaseConflict(string Path, string Reason, IReadOnlyList<ByteRange> Ours, IReadOnlyList<ByteRange> Theirs);

/// <summary>A rebase found changes of the branch that collide with changes main made since the branch's base.</summary>
public sealed class RebaseConflictException : DaxfsException
{
    /// <summary>Creates the exception.</summary>
    public RebaseConflictException(string branch, IReadOnlyList<RebaseConflict> conflicts)
        : base($"cannot rebase '{branch}': {conflicts.Count} conflict(s) with main: " +
               string.Join("; ", conflicts.Take(5).Select(c => $"{c.Path} ({c.Reason})")) + (conflicts.Count > 5 ? "; …" : ""))
        => Conflicts = conflicts;

    /// <summary>Every colliding path, with the ranges each side changed.</summary>
    public IReadOnlyList<RebaseConflict> Conflicts { get; }
}

public sealed partial class Store
{
    /// <summary>
    /// Re-applies what <paramref name="branch"/>'s chain changed since the version of main it was based on
    /// onto main as it is now, as a new branch <paramref name="newName"/>; the original is left as it was
    /// (discard it when done). The branch is one forked from a past version, or one a commit invalidated after
    /// it was forked with <see cref="ForkOptions.KeepForRebase"/>. Fails with <see cref="RebaseConflictException"/>,
    /// listing every colliding path and byte range, when main changed the same paths since; nothing is created then.
    /// </summary>
    /// <remarks>
    /// Changes are re-applied by path: renames (through temporary names), removals, new directories, files
    /// and links, the changed byte ranges and sizes of modified files, then attributes. Payload bytes are copied into the new
    /// branch's log. A branch invalidated without being kept cannot be rebased: its changes were discarded then
    /// (<see cref="BranchInvalidatedException"/>).
    /// </remarks>
    public Branch Rebase(Branch branch, string newName)
    {
        Own(branch);
        ReadAll(); // kept branches are built only once everything is read
        return RebaseState(() => branch.State.Status != BranchState.StatusLive && KeptState(branch.State) is { } k ? k : branch.State, newName);
    }

    /// <summary>
    /// Rebases the live or kept branch named <paramref name="name"/>: see <see cref="Rebase(Branch, string)"/>.
    /// </summary>
    /// <exception cref="BranchNotFoundException">No live or invalidated branch has that name.</exception>
    /// <exception cref="BranchInvalidatedException">It was invalidated without its changes being kept.</exception>
    public Branch Rebase(string name, string newName)
    {
        ArgumentNullException.ThrowIfNull(name);
        ReadAll();
        return RebaseState(() => _picture.ByName.TryGetValue(name, out var live) ? live : KeptNamed(name)
            ?? throw (_picture.InvalidatedNames.ContainsKey(name)
                ? new BranchInvalidatedException(name, $"branch '{name}' was invalidated and its changes were not kept, so there is nothing to rebase (fork with KeepForRebase, daxfs branch create --keep, to rebase a branch that loses a race)")
                : new BranchNotFoundException(name)), newName);
    }

    private Branch RebaseState(Func<BranchState> find, string newName)
    {
        if (BranchNameProblem(newName) is { } why)
            throw new ArgumentException($"invalid branch name '{newName}': {why}", nameof(newName));
        using var lease = BeginRead(); // the old chain's spans stay readable while the new branch is written
        View baseView, ours, theirs;
        string name;
        lock (_gate)
        {
            ThrowIfUnusable();
            var b = find();
            name = b.Name;
            if (!b.Kept)
            {
                CheckLive(b);
                if (b.IsMain || b.IsSnapshot)
                    throw new InvalidOperationException($"{b.Name} cannot be rebased");
                if (b.Children.Count > 0)
                    throw new BranchNotLeafException(b.Name, "rebase");
            }
            var root = b;
            while (!root.Parent!.IsMain) root = root.Parent;
            baseView = VersionViewRead(root.BaseVersion); // for a live branch of main's current state: main's view
            ours = b.View;
            theirs = _picture.Slots[0]!.View;
        }
        var mine = DiffEngine.Compare(baseView, ours);
        var main = DiffEngine.Compare(baseView, theirs);
        var conflicts = Conflicts(mine, main);
        if (conflicts.Count > 0)
            throw new RebaseConflictException(name, conflicts);
        var target = Main.Fork(newName);
        try
        {
            Replay(target, mine, ours);
        }
        catch
        {
            target.Discard(); // nothing half-applied is left behind
            throw;
        }
        return target;
    }

    private static List<RebaseConflict> Conflicts(List<Change> mine, List<Change> main)
    {
        var theirs = main.GroupBy(c => c.Path).ToDictionary(g => g.Key, g => g.ToList());
        foreach (var c in main.Where(c => c.OldPath is not null))
            theirs.TryAdd(c.OldPath!, [c]);
        var conflicts = new List<RebaseConflict>();
        foreach (var group in mine.GroupBy(c => c.Path))
        {
            var ours = group.ToList();
            var paths = ours.Select(c => c.OldPath).Where(p => p is not null).Append(group.Key).Distinct();
            foreach (var path in paths)
            {
                if (!theirs.TryGetValue(path!, out var other))
                {
                    // Main removed or renamed a directory above this path?
                    var parentGone = main.FirstOrDefault(m => m.Kind is ChangeKind.Deleted or ChangeKind.Renamed
                        && m.NodeKind == NodeKind.Directory && path!.StartsWith((m.OldPath ?? m.Path) + "/", StringComparison.Ordinal));
                    if (parentGone is not null)
                        conflicts.Add(new RebaseConflict(path!, $"main {(parentGone.Kind == ChangeKind.Deleted ? "deleted" : "renamed")} the directory {parentGone.OldPath ?? parentGone.Path}", [], []));
                    continue;
                }
                var ourMod = ours.FirstOrDefault(c => c.Kind == ChangeKind.Modified);
                var theirMod = other.FirstOrDefault(c => c.Kind == ChangeKind.Modified);
                bool onlyRanges = ours.All(c => c.Kind == ChangeKind.Modified) && other.All(c => c.Kind == ChangeKind.Modified)
                    && ourMod is not null && theirMod is not null && ourMod.NodeKind == NodeKind.File;
                if (onlyRanges && !Overlap(ourMod!.Ranges, theirMod!.Ranges) && SameSize(ourMod.Detail) && SameSize(theirMod.Detail))
                    continue; // different bytes of the same file, neither resized it: both apply
                conflicts.Add(new RebaseConflict(path!,
                    $"the branch {Describe(ours)} and main {Describe(other)}", ourMod?.Ranges ?? [], theirMod?.Ranges ?? []));
                break;
            }
        }
        return conflicts;
    }

    private static string Describe(List<Change> changes) => string.Join(" and ", changes.Select(c => c.Kind switch
    {
        ChangeKind.Added => "added it",
        ChangeKind.Deleted => "deleted it",
        ChangeKind.Renamed => "renamed it",
        ChangeKind.AttributesChanged => "changed its attributes",
        _ => "modified it",
    }).Distinct());

    /// <summary>Makes <paramref name="path"/>'s extended attributes in <paramref name="target"/> those the branch's inode has.</summary>
    private static void CopyXattrs(Branch target, string path, View ours, long ino)
    {
        var want = ours.Xattrs(ino);
        var have = target.GetExtendedAttributes(path);
        foreach (var name in have.Keys.Where(n => !want.ContainsKey(n)).ToList())
            target.RemoveExtendedAttribute(path, name);
        foreach (var (name, value) in want)
            if (!have.TryGetValue(name, out var old) || !old.AsSpan().SequenceEqual(value))
                target.SetExtendedAttribute(path, name, value);
    }

    private static bool SameSize(string? detail)
    {
        if (detail is null || !detail.StartsWith("size ", StringComparison.Ordinal)) return true;
        var parts = detail[5..].Split(" -> ");
        return parts.Length == 2 && parts[0] == parts[1];
    }

    private static bool Overlap(IReadOnlyList<ByteRange> a, IReadOnlyList<ByteRange> b)
        => a.Any(x => b.Any(y => x.Offset < y.Offset + y.Length && y.Offset < x.Offset + x.Length));

    /// <summary>Applies the branch's changes, by path, to <paramref name="target"/> (a fresh fork of main).</summary>
    private static void Replay(Branch target, List<Change> changes, View ours)
    {
        // Renames implied by a renamed ancestor directory are carried along with it.
        var dirRenames = changes.Where(c => c.Kind == ChangeKind.Renamed && c.NodeKind == NodeKind.Directory).ToList();
        bool Implied(Change c) => dirRenames.Any(d => !ReferenceEquals(d, c)
            && c.Path.StartsWith(d.Path + "/", StringComparison.Ordinal) && c.OldPath!.StartsWith(d.OldPath + "/", StringComparison.Ordinal)
            && c.Path[d.Path.Length..] == c.OldPath[d.OldPath!.Length..]);
        var renames = changes.Where(c => c.Kind == ChangeKind.Renamed && !Implied(c)).ToList();
        // Two steps, so swaps and renames onto a replaced path work: every source goes to a temporary name
        // (deepest first, so a moved child leaves its moved parent first), then each goes to its destination
        // (shallowest first). A node the branch replaced by a rename is removed before the rename lands.
        var temps = new string[renames.Count];
        int serial = 0;
        foreach (int i in Enumerable.Range(0, renames.Count).OrderByDescending(i => Depth(renames[i].OldPath!)))
        {
            do temps[i] = $"/.daxfs-rebase-{serial++}"; while (target.Exists(temps[i]));
            target.Rename(renames[i].OldPath!, temps[i]);
        }
        var replaced = new List<string>();
        foreach (var c in renames.OrderByDescending(c => Depth(c.Path)))
        {
            if (!target.Exists(c.Path)) continue;
            target.Delete(c.Path, recursive: true);
            replaced.Add(c.Path);
        }
        foreach (int i in Enumerable.Range(0, renames.Count).OrderBy(i => Depth(renames[i].Path)))
        {
            EnsureParents(target, renames[i].Path, ours);
            target.Rename(temps[i], renames[i].Path);
        }
        // Removals, by where the node is now: under a renamed directory it moved with it; under a replaced
        // node it is already gone.
        var movedDirs = renames.Where(c => c.NodeKind == NodeKind.Directory).OrderByDescending(c => c.OldPath!.Length).ToList();
        foreach (var c in changes.Where(c => c.Kind == ChangeKind.Deleted).OrderByDescending(c => Depth(c.Path)))
        {
            if (replaced.Any(r => Under(c.Path, r)))
                continue;
            var dir = movedDirs.FirstOrDefault(d => c.Path.StartsWith(d.OldPath + "/", StringComparison.Ordinal));
            string now = dir is null ? c.Path : dir.Path + c.Path[dir.OldPath!.Length..];
            if (target.Exists(now) && !renames.Any(r => r.Path == now)) // a rename's destination holds the node that replaced it
                target.Delete(now, recursive: true);
        }
        foreach (var c in changes.Where(c => c.Kind == ChangeKind.Added && c.LinkTo is null).OrderBy(c => c.Path.Count(ch => ch == '/')).ThenBy(c => c.Path, StringComparer.Ordinal))
        {
            EnsureParents(target, c.Path, ours);
            long ino = Branch.Resolve(ours, c.Path);
            var info = ours.Info(ino);
            switch (c.NodeKind)
            {
                case NodeKind.Directory:
                    // A rename into the new directory may have made it already (EnsureParents): it takes its mode.
                    if (target.TryStat(c.Path, out var made) && made.Kind == NodeKind.Directory)
                        target.Chmod(c.Path, info.Perm);
                    else
                        target.CreateDirectory(c.Path, info.Perm);
                    break;
                case NodeKind.Symlink:
                    target.CreateSymlink(c.Path, ours.LinkTarget(ino));
                    break;
                case NodeKind.Fifo or NodeKind.Socket or NodeKind.CharDevice or NodeKind.BlockDevice:
                    target.CreateSpecialFile(c.Path, c.NodeKind, info.Perm, info.Rdev);
                    break;
                default:
                    target.CreateFile(c.Path, info.Perm);
                    CopyRange(target, c.Path, ours, ino, new ByteRange(0, info.Size));
                    break;
            }
            target.Chown(c.Path, info.Uid, info.Gid);
            CopyXattrs(target, c.Path, ours, Branch.Resolve(ours, c.Path));
        }
        // Other names of files (hard links), once every file they name is in place.
        foreach (var c in changes.Where(c => c.Kind == ChangeKind.Added && c.LinkTo is not null).OrderBy(c => c.Path, StringComparer.Ordinal))
        {
            EnsureParents(target, c.Path, ours);
            target.CreateHardLink(c.LinkTo!, c.Path);
        }
        foreach (var c in changes.Where(c => c.Kind == ChangeKind.Modified))
        {
            long ino = Branch.Resolve(ours, c.Path);
            var info = ours.Info(ino);
            if (c.NodeKind == NodeKind.Symlink)
            {
                target.Delete(c.Path);
                target.CreateSymlink(c.Path, ours.LinkTarget(ino));
                continue;
            }
            target.Truncate(c.Path, info.Size);
            foreach (var r in c.Ranges)
                CopyRange(target, c.Path, ours, ino, r);
        }
        foreach (var c in changes.Where(c => c.Kind == ChangeKind.AttributesChanged))
        {
            var info = ours.Info(Branch.Resolve(ours, c.Path));
            target.Chmod(c.Path, info.Perm);
            target.Chown(c.Path, info.Uid, info.Gid);
            CopyXattrs(target, c.Path, ours, Branch.Resolve(ours, c.Path));
        }
    }

    private static int Depth(string path) => path.Count(ch => ch == '/');

    private static bool Under(string path, string top) => path == top || path.StartsWith(top + "/", StringComparison.Ordinal);

    private static void EnsureParents(Branch target, string path, View ours)
    {
        int slash = path.LastIndexOf('/');
        if (slash > 0 && !target.Exists(path[..slash]))
            target.CreateDirectory(path[..slash], parents: true);
    }

    private static void CopyRange(Branch target, string path, View ours, long ino, ByteRange range)
    {
        var data = FileData.Of(ours, ino);
        long end = Math.Min(range.Offset + range.Length, data.Size);
        var buffer = new byte[Math.Min(1 << 20, Math.Max(0, end - range.Offset))];
        for (long at = range.Offset; at < end;)
        {
            int n = (int)Math.Min(buffer.Length, end - at);
            new ReadResult(target.Store.Region, in data, at, n).CopyTo(buffer);
            target.Write(path, at, buffer.AsSpan(0, n), create: false);
            at += n;
        }
    }
}
