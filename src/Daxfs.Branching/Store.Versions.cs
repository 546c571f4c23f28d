using Daxfs.Branching.Branching;
using Daxfs.Branching.Coordination;
using Daxfs.Branching.Format;
using Daxfs.Branching.Index;
using Daxfs.Branching.Replay;

namespace Daxfs.Branching;

public sealed partial class Store
{
    /// <summary>Main as it was at version <paramref name="version"/> (0 = the base image): a read-only view.</summary>
    /// <remarks>
    /// Reads work as on any branch. Forking it makes a branch based on that version; such a branch is not
    /// invalidated by later commits, and can be committed to main only while main is still at that version.
    /// </remarks>
    /// <exception cref="ArgumentOutOfRangeException">No such version.</exception>
    public Branch AtVersion(long version)
    {
        EnsureCurrent();
        lock (_gate)
        {
            ThrowIfUnusable();
            var view = VersionViewRead(version);
            var st = new BranchState
            {
                Slot = -1,
                Generation = 0,
                Name = $"main@{version}",
                Parent = null,
                Depth = 0,
                CreatedNs = version == 0 ? 0 : FileStat.ToNs(_picture.Versions[(int)version - 1].Time),
                Log = null!,
                SnapshotOf = version,
                BaseVersion = version,
            };
            st.View = view;
            st.PictureGeneration = _picture.Generation;
            return new Branch(this, st);
        }
    }

    /// <summary>
    /// The branch or version a reference names: <c>main</c>, a branch name, a tag, or a version number
    /// (<c>3</c> or <c>@3</c>).
    /// </summary>
    public Branch Resolve(string reference)
    {
        ArgumentException.ThrowIfNullOrEmpty(reference);
        string r = reference.StartsWith('@') ? reference[1..] : reference;
        if (r.Length > 0 && r.All(char.IsAsciiDigit) && long.TryParse(r, out long v))
            return AtVersion(v);
        if (BranchNameProblem(reference) is null)
            Read(reference); // a branch of that name wins over a tag: it is read first
        else
            EnsureCurrent();
        long? tagged = null;
        lock (_gate)
        {
            ThrowIfUnusable();
            if (_picture.Tags.TryGetValue(reference, out long t) && !_picture.ByName.ContainsKey(reference))
                tagged = t;
        }
        if (tagged is { } tv)
            return AtVersion(tv);
        try
        {
            return GetBranch(reference);
        }
        catch (BranchNotFoundException)
        {
            throw new BranchNotFoundException(reference, $"'{reference}' names no branch, tag or version of main (see daxfs branch list and daxfs tag --list)");
        }
    }

    /// <summary>The tags: name → version of main.</summary>
    public IReadOnlyDictionary<string, long> Tags
    {
        get { EnsureCurrent(); lock (_gate) { ThrowIfUnusable(); return new SortedDictionary<string, long>(_picture.Tags, StringComparer.Ordinal); } }
    }

    /// <summary>Names version <paramref name="version"/> of main <paramref name="name"/> (same rules as branch names). Tags survive reopening.</summary>
    public void Tag(string name, long version)
    {
        if (TagNameProblem(name) is { } why)
            throw new ArgumentException($"invalid tag name '{name}': {why}", nameof(name));
        Locked(() =>
        {
            _picture.CheckVersion(version); // refuses versions that do not exist or were folded away
            if (_picture.Tags.TryGetValue(name, out long existing))
                throw new DaxfsException($"tag '{name}' already names version {existing}; delete it first");
            AppendTag(name, version, deleted: false);
            _picture.Tags[name] = version;
        });
    }

    /// <summary>Why <paramref name="name"/> cannot name a tag, or null: the rules of branch names, and not only digits (that reads as a version number).</summary>
    public static string? TagNameProblem(string name)
    {
        if (BranchNameProblem(name) is { } why)
            return why.Replace("a branch name", "a tag name", StringComparison.Ordinal);
        if (name.All(char.IsAsciiDigit))
            return "a tag name must not be only digits: it would read as a version number";
        return null;
    }

    /// <summary>Removes tag <paramref name="name"/>.</summary>
    public void DeleteTag(string name)
    {
        ArgumentNullException.ThrowIfNull(name);
        Locked(() =>
        {
            if (!_picture.Tags.TryGetValue(name, out long v))
                throw new DaxfsException($"no tag '{name}'");
            AppendTag(name, v, deleted: true);
            _picture.Tags.Remove(name);
        });
    }

    private void AppendTag(string name, long version, bool deleted)
    {
        var main = _picture.Slots[0]!;
        int len = RecordCodec.EncodeTag(default, version, name, deleted);
        long at = main.Log.Reserve(RecordKind.Tag, BaseImageBuilder.NowNs(), len);
        RecordCodec.EncodeTag(main.Log.Body(at, len), version, name, deleted);
        main.Log.Publish(at, _region.Kind != Media.RegionKind.Memory);
    }

    /// <summary>The view a diff of <paramref name="s"/> "against its parent" starts from.</summary>
    internal View OlderViewOf(BranchState s)
    {
        lock (_gate) // the list of version views grows under this lock
            return OlderViewOfLocked(s);
    }

    private View OlderViewOfLocked(BranchState s)
    {
        if (s.IsSnapshot)
            return VersionViewRead(Math.Max(0, s.SnapshotOf - 1));
        if (s.IsMain)
            return VersionViewRead(Math.Max(0, _picture.CurrentVersion - 1));
        if (s.Detached && s.Parent!.IsMain)
            return VersionViewRead(s.BaseVersion);
        return s.Parent!.View;
    }
}
