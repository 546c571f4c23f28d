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

    /// <summary>
    /// The region's settings: named strings kept in main's log, which every process sees and which survive
    /// reopening and compaction (remotes, and what was exchanged with them, are kept here). Empty on regions of
    /// format version 4 and older, which cannot hold settings.
    /// </summary>
    public IReadOnlyDictionary<string, string> Settings
    {
        get { EnsureCurrent(); lock (_gate) { ThrowIfUnusable(); return new SortedDictionary<string, string>(_picture.Settings, StringComparer.Ordinal); } }
    }

    /// <summary>
    /// Sets setting <paramref name="name"/> to <paramref name="value"/>, or removes it when <paramref name="value"/>
    /// is null (removing one that is not there does nothing). Names are 1 to 255 bytes of UTF-8 letters, digits and
    /// <c>. _ - / :</c>; values at most 16 KiB.
    /// </summary>
    /// <exception cref="ArgumentException">A bad name, or a value too long.</exception>
    /// <exception cref="NotSupportedException">The region's format (version 4 or older) cannot hold settings.</exception>
    public void SetSetting(string name, string? value) => SetSettings([new(name, value)]);

    /// <summary>
    /// Sets (or, for a null value, removes) several settings at once: they are written under one hold of the
    /// region's lock, so another process sees none or all of them once it reads again.
    /// </summary>
    public void SetSettings(IReadOnlyList<KeyValuePair<string, string?>> settings)
    {
        ArgumentNullException.ThrowIfNull(settings);
        foreach (var (name, value) in settings)
        {
            if (SettingNameProblem(name) is { } why)
                throw new ArgumentException($"invalid setting name '{name}': {why}", nameof(settings));
            if (value is not null && (value.Contains('\0', StringComparison.Ordinal) || RecordCodec.Utf8Length(value) > FormatConstants.MaxSettingValue))
                throw new ArgumentException($"setting '{name}': a value is at most {FormatConstants.MaxSettingValue} bytes, without NUL", nameof(settings));
        }
        if (_super.FormatVersion < FormatConstants.SettingsVersion)
            throw new NotSupportedException($"{_region.Path}: format version {_super.FormatVersion} regions cannot hold settings (version {FormatConstants.SettingsVersion} can): export the tree and make a new region");
        Locked(() =>
        {
            var main = _picture.Slots[0]!;
            foreach (var (name, value) in settings)
            {
                if (value is null ? !_picture.Settings.ContainsKey(name) : _picture.Settings.TryGetValue(name, out var old) && old == value)
                    continue;
                int len = RecordCodec.EncodeSetting(default, name, value);
                long at = main.Log.Reserve(RecordKind.Setting, BaseImageBuilder.NowNs(), len);
                RecordCodec.EncodeSetting(main.Log.Body(at, len), name, value);
                main.Log.Publish(at, _region.Kind != Media.RegionKind.Memory);
                if (value is null) _picture.Settings.Remove(name);
                else _picture.Settings[name] = value;
            }
        });
    }

    /// <summary>Why <paramref name="name"/> cannot name a setting, or null.</summary>
    public static string? SettingNameProblem(string name)
    {
        if (string.IsNullOrEmpty(name))
            return "a setting name must not be empty";
        if (RecordCodec.Utf8Length(name) > FormatConstants.MaxSettingName)
            return $"a setting name is at most {FormatConstants.MaxSettingName} bytes";
        foreach (char ch in name)
            if (!(char.IsAsciiLetterOrDigit(ch) || ch is '.' or '_' or '-' or '/' or ':'))
                return $"a setting name holds only ASCII letters, digits and . _ - / : (not '{ch}')";
        return null;
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
