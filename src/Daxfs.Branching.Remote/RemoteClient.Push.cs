using Daxfs.Branching.Index;
using System.Globalization;

namespace Daxfs.Branching.Remote;

public sealed partial class RemoteClient
{
    /// <summary>Paths changed since a tree the remote has: a directory is rebuilt when it or anything under it changed; the rest is reused by hash.</summary>
    private sealed class Dirty
    {
        private readonly HashSet<string> _paths = new(StringComparer.Ordinal);
        private readonly HashSet<string> _touched = new(StringComparer.Ordinal) { "/" };

        public bool All { get; init; }

        public void Add(string path)
        {
            _paths.Add(path);
            for (string? p = path; p is not null; p = ParentOf(p))
                _touched.Add(p);
        }

        public bool IsDirty(string path) => All || _paths.Contains(path);

        public bool Touches(string dir) => All || _touched.Contains(dir);

        public static Dirty From(IEnumerable<Change> changes, IEnumerable<string>? more = null)
        {
            var d = new Dirty();
            foreach (var c in changes)
            {
                d.Add(c.Path);
                if (c.OldPath is { } old) d.Add(old);
            }
            foreach (var p in more ?? []) d.Add(p);
            return d;
        }
    }

    /// <summary>
    /// The directory object of <paramref name="dir"/> in <paramref name="view"/>, built from <paramref name="oldHash"/>'s
    /// (the remote's tree the view descends from): untouched directories and unchanged entries are reused by hash,
    /// the rest is described from the view, and what the remote lacks is uploaded. Returns the hash and the bytes and
    /// files under it.
    /// </summary>
    private async Task<(string Hash, long Bytes, long Files)> BuildTreeAsync(Branch view, string dir, string? oldHash, Dirty dirty, CancellationToken ct)
    {
        var old = oldHash is null ? null : (await TreeAsync(oldHash, ct).ConfigureAwait(false)).Entries.ToDictionary(e => e.Name, StringComparer.Ordinal);
        var tree = new TreeObject();
        long total = 0, count = 0;
        var described = new List<Task<TreeEntry>>(); // files of this directory, hashed and sent side by side
        var packed = new List<(TreeEntry Entry, byte[] Content)>(); // its small files, sent as packs
        foreach (var child in view.List(dir))
        {
            string path = Join(dir, child.Name);
            TreeEntry? was = old is not null && old.TryGetValue(child.Name, out var o) ? o : null;
            if (was is not null && was.Kind == KindOf(child.Kind) && (child.Kind == NodeKind.Directory ? !dirty.Touches(path) : !dirty.IsDirty(path)))
            {
                tree.Entries.Add(was); // nothing at or under it changed: the remote's entry stands, unread below
                total += was.Kind == "f" || was.Kind == "d" ? was.Size : 0;
                count += child.Kind == NodeKind.Directory ? was.Entries + 1 : 1;
            }
            else if (child.Kind == NodeKind.Directory)
            {
                var st = view.Stat(path);
                var (hash, bytes, files) = await BuildTreeAsync(view, path, was?.Kind == "d" ? was.Tree : null, dirty, ct).ConfigureAwait(false);
                var entry = Attributes(view, path, st, "d");
                entry.Tree = hash;
                entry.Size = bytes;
                entry.Entries = files;
                tree.Entries.Add(entry);
                total += bytes;
                count += files + 1;
            }
            else
            {
                described.Add(DescribeAsync(view, path, view.Stat(path), was, packed, ct));
                if (described.Count >= 64)
                    await Drain(full: false).ConfigureAwait(false); // a directory of many files is held in memory a pack at a time
            }
        }
        await Drain(full: true).ConfigureAwait(false);

        async Task Drain(bool full)
        {
            foreach (var entry in await Task.WhenAll(described).ConfigureAwait(false))
            {
                tree.Entries.Add(entry);
                total += entry.Kind == "f" ? entry.Size : 0;
                count++;
            }
            described.Clear();
            if (full || packed.Sum(p => (long)p.Content.Length) >= RemoteFormat.PackBytes)
            {
                await SealPacksAsync(packed, ct).ConfigureAwait(false);
                packed.Clear();
            }
        }
        tree.Entries.Sort((a, b) => string.CompareOrdinal(a.Name, b.Name));
        var data = RemoteFormat.Encode(tree);
        string h = RemoteFormat.Hash(data);
        await UploadAsync(h, data, ct).ConfigureAwait(false);
        _trees[h] = tree;
        return (h, total, count);
    }

    private readonly SemaphoreSlim _slots = new(Parallelism);

    private static string KindOf(NodeKind k) => k switch
    {
        NodeKind.File => "f",
        NodeKind.Directory => "d",
        NodeKind.Symlink => "l",
        NodeKind.Fifo => "p",
        NodeKind.Socket => "s",
        NodeKind.CharDevice => "c",
        NodeKind.BlockDevice => "b",
        _ => throw new NotSupportedException($"node kind {k}"),
    };

    private static TreeEntry Attributes(Branch view, string path, in FileStat st, string kind)
    {
        var e = new TreeEntry { Name = path[(path.LastIndexOf('/') + 1)..], Kind = kind, Mode = st.Mode, Uid = st.Uid, Gid = st.Gid, MtimeNs = st.ModifiedTimeNs };
        if (kind != "l" && view.GetExtendedAttributes(path) is { Count: > 0 } x)
            e.Xattrs = new SortedDictionary<string, string>(x.ToDictionary(a => a.Key, a => Convert.ToBase64String(a.Value)), StringComparer.Ordinal);
        return e;
    }

    /// <summary>Describes a non-directory: a file's chunks are hashed, and the ones the remote lacks uploaded, in parallel.</summary>
    /// <summary>
    /// Puts the small files a directory's push found into packs of up to <see cref="RemoteFormat.PackBytes"/>, each
    /// named by its hash and uploaded unless the remote has it, and tells each entry where its content lies.
    /// </summary>
    private async Task SealPacksAsync(List<(TreeEntry Entry, byte[] Content)> packed, CancellationToken ct)
    {
        packed.Sort((a, b) => string.CompareOrdinal(a.Entry.Name, b.Entry.Name)); // the same files make the same packs
        for (int start = 0; start < packed.Count;)
        {
            int end = start;
            long size = 0;
            while (end < packed.Count && (end == start || size + packed[end].Content.Length <= RemoteFormat.PackBytes))
                size += packed[end++].Content.Length;
            var pack = new byte[size];
            long at = 0;
            for (int i = start; i < end; i++)
            {
                packed[i].Content.CopyTo(pack, at);
                packed[i].Entry.PackOffset = at;
                at += packed[i].Content.Length;
            }
            string hash = RemoteFormat.Hash(pack);
            for (int i = start; i < end; i++) packed[i].Entry.Pack = hash;
            await _slots.WaitAsync(ct).ConfigureAwait(false);
            try { await UploadAsync(hash, pack, ct).ConfigureAwait(false); }
            finally { _slots.Release(); }
            start = end;
        }
    }

    private async Task<TreeEntry> DescribeAsync(Branch view, string path, FileStat st, TreeEntry? was, List<(TreeEntry, byte[])> packed, CancellationToken ct)
    {
        string kind = KindOf(st.Kind);
        var e = Attributes(view, path, st, kind);
        switch (st.Kind)
        {
            case NodeKind.Symlink:
                e.Target = view.ReadLink(path);
                break;
            case NodeKind.CharDevice or NodeKind.BlockDevice:
                e.Rdev = st.Device;
                break;
            case NodeKind.File when st.Size > 0 && st.Size <= RemoteFormat.PackedFileBytes:
                e.Size = st.Size;
                await _slots.WaitAsync(ct).ConfigureAwait(false);
                try
                {
                    var content = new byte[st.Size];
                    int read = view.Read(path, 0, content);
                    if (read != content.Length)
                        throw new DaxfsException($"{path}: read {read} of {content.Length} bytes (the file changed while it was pushed)");
                    string h = RemoteFormat.Hash(content);
                    e.Chunks = [h];
                    if (was is { Pack: not null, Chunks: [var same] } && same == h && was.Size == st.Size)
                    {
                        e.Pack = was.Pack; // the remote holds these bytes already, in that pack
                        e.PackOffset = was.PackOffset;
                    }
                    else
                    {
                        lock (packed) packed.Add((e, content));
                    }
                    Report("hashing", content.Length, content.Length);
                }
                finally
                {
                    _slots.Release();
                }
                break;
            case NodeKind.File:
                e.Size = st.Size;
                int n = (int)((st.Size + RemoteFormat.ChunkBytes - 1) / RemoteFormat.ChunkBytes);
                var chunks = new string[n];
                Report("hashing", 0, st.Size);
                await Parallel.ForAsync(0, n, new ParallelOptions { MaxDegreeOfParallelism = Parallelism, CancellationToken = ct }, async (i, token) =>
                {
                    await _slots.WaitAsync(token).ConfigureAwait(false); // at most Parallelism chunks in memory and in flight, over all files
                    try
                    {
                        long offset = (long)i * RemoteFormat.ChunkBytes;
                        var buffer = new byte[(int)Math.Min(RemoteFormat.ChunkBytes, st.Size - offset)];
                        int got = view.Read(path, offset, buffer);
                        if (got != buffer.Length)
                            throw new DaxfsException($"{path}: read {got} of {buffer.Length} bytes at {offset} (the file changed while it was pushed)");
                        string h = RemoteFormat.Hash(buffer);
                        chunks[i] = h;
                        if (was?.Chunks is { } before && i < before.Length && before[i] == h)
                            _present.TryAdd(h, 0); // the remote's tree lists it: stored
                        await UploadAsync(h, buffer, token).ConfigureAwait(false);
                        Report("uploading", buffer.Length);
                    }
                    finally
                    {
                        _slots.Release();
                    }
                }).ConfigureAwait(false);
                e.Chunks = chunks;
                break;
        }
        return e;
    }

    private Dirty DirtySince(long version, long newer)
    {
        return Dirty.From(_store.AtVersion(version).DiffTo(newer == _store.CurrentVersion ? _store.Main : _store.AtVersion(newer)));
    }

    /// <summary>
    /// Sends main's versions since the last exchange, one remote commit each (the first push sends the current
    /// version alone), then moves the remote's main with a compare-and-swap. Refused (<see cref="RemoteError.Behind"/>)
    /// when the remote's main moved on since this region last saw it: pull --rebase, then push again.
    /// </summary>
    public async Task<PushReport> PushMainAsync(CancellationToken ct = default)
    {
        var updater = await RefUpdaterAsync(ct).ConfigureAwait(false);
        await SettlePushAsync(ct).ConfigureAwait(false);
        var sync = SyncPoint.Read(Settings, _remote);
        var (stored, current) = await MainRefAsync(ct).ConfigureAwait(false);
        long head = _store.CurrentVersion;
        var versions = _store.Versions.ToDictionary(v => v.Sequence);
        var plan = new List<(long Version, Dirty Dirty)>();
        string? parent;
        long remoteVersion;
        if (sync is null)
        {
            if (current is not null)
                throw new RemoteException(RemoteError.Behind, $"{_objects.Where} already has a main (version {current.Version}) this region never exchanged with: clone it, or push to another prefix");
            parent = null;
            remoteVersion = 0;
            plan.Add((head, new Dirty { All = true }));
        }
        else
        {
            if (current is null)
                throw new RemoteException(RemoteError.NotFound, $"{_objects.Where} has no main any more, though this region pushed or pulled version {sync.RemoteVersion} of it");
            if (current.Commit != sync.Commit)
                throw new RemoteException(RemoteError.Behind, $"{_objects.Where}: main is at version {current.Version} there, and this region last saw version {sync.RemoteVersion}: run daxfs pull --rebase, then push again");
            parent = sync.Commit;
            remoteVersion = sync.RemoteVersion;
            if (sync.PendingAll || sync.Pending is { Count: > 0 })
                plan.Add((sync.LocalVersion, sync.PendingAll ? new Dirty { All = true } : Dirty.From([], sync.Pending)));
            for (long v = sync.LocalVersion + 1; v <= head; v++)
                plan.Add((v, DirtySince(v - 1, v)));
        }
        if (plan.Count == 0)
            return new PushReport(null, 0, parent, remoteVersion, 0, 0, 0);
        string? parentTree = parent is null ? null : (await CommitAsync(parent, ct).ConfigureAwait(false)).Tree;
        var made = new List<KeyValuePair<string, string?>>();
        foreach (var (v, dirty) in plan)
        {
            var view = v == _store.CurrentVersion ? _store.Main : _store.AtVersion(v);
            var (tree, bytes, files) = await BuildTreeAsync(view, "/", parentTree, dirty, ct).ConfigureAwait(false);
            versions.TryGetValue(v, out var info);
            var commit = new CommitObject
            {
                Parent = parent, Version = ++remoteVersion, Tree = tree, Message = v == 0 ? "the base image" : info.Message ?? "", Source = info.SourceBranch ?? "main",
                TimeNs = info.Time == default ? 0 : (info.Time.UtcDateTime - DateTime.UnixEpoch).Ticks * 100, Bytes = bytes, Files = files,
            };
            var data = RemoteFormat.Encode(commit);
            parent = RemoteFormat.Hash(data);
            await UploadAsync(parent, data, ct).ConfigureAwait(false);
            parentTree = tree;
            made.Add(new(SyncPoint.VersionKey(_remote, v), string.Create(CultureInfo.InvariantCulture, $"{parent} {remoteVersion}")));
        }
        // Every object is stored: only now may the ref name them. What the push is about to make the ref name is
        // written down first, so a push killed between the swap and its record here is settled by the next call.
        var moved = RemoteFormat.Encode(new RefObject { Commit = parent!, Version = remoteVersion });
        _store.SetSettings([.. made, new(Remotes.Key(_remote, "main.pushing"), string.Create(CultureInfo.InvariantCulture, $"{parent} {head} {remoteVersion}"))]);
        bool swapped = false;
        try
        {
            swapped = await updater.SwapAsync(RemoteFormat.MainRef, stored, moved, ct).ConfigureAwait(false);
        }
        finally
        {
            if (!swapped)
                await SettlePushAsync(ct).ConfigureAwait(false); // refused, or unknown (an error): the ref says which
        }
        if (swapped)
            _store.SetSettings([.. new SyncPoint(parent!, head, remoteVersion, null, false).Settings(_remote), new(Remotes.Key(_remote, "main.pushing"), null)]);
        else if (SyncPoint.Read(Settings, _remote)?.Commit != parent) // refused: the settling found another commit there
            throw new RemoteException(RemoteError.Behind, $"{_objects.Where}: main moved on while this push ran (another push won): run daxfs pull --rebase, then push again");
        return new PushReport("main", plan.Count, parent, remoteVersion, _uploaded, _uploadedBytes, _skipped);
    }

    /// <summary>
    /// Settles a push of main that was cut off between moving the remote's ref and recording it here (its intent is
    /// the setting main.pushing): when the remote's main names the commit it pushed, the region records the exchange;
    /// otherwise it forgets what that push would have recorded. Safe to call any time.
    /// </summary>
    private async Task SettlePushAsync(CancellationToken ct)
    {
        var settings = Settings;
        if (!settings.TryGetValue(Remotes.Key(_remote, "main.pushing"), out var text))
            return;
        var parts = text.Split(' ');
        if (parts.Length != 3 || !RemoteFormat.IsHash(parts[0]) || !long.TryParse(parts[1], NumberStyles.None, CultureInfo.InvariantCulture, out long head)
            || !long.TryParse(parts[2], NumberStyles.None, CultureInfo.InvariantCulture, out long rv))
            throw new RemoteException(RemoteError.Damaged, $"setting {Remotes.Key(_remote, "main.pushing")} = '{text}' cannot be read (daxfs remote remove {_remote}, add it again and pull)");
        var (_, current) = await MainRefAsync(ct).ConfigureAwait(false);
        if (current?.Commit == parts[0])
        {
            _store.SetSettings([.. new SyncPoint(parts[0], head, rv, null, false).Settings(_remote), new(Remotes.Key(_remote, "main.pushing"), null)]);
            return;
        }
        // The swap did not happen: the versions that push would have recorded are not on the remote.
        long from = SyncPoint.Read(settings, _remote)?.LocalVersion ?? -1;
        var forget = new List<KeyValuePair<string, string?>> { new(Remotes.Key(_remote, "main.pushing"), null) };
        for (long v = from + 1; v <= head; v++)
            forget.Add(new(SyncPoint.VersionKey(_remote, v), null));
        _store.SetSettings(forget);
    }

    /// <summary>
    /// Sends branch <paramref name="name"/> (forked from a version of main the remote has) as refs/branches/NAME: its
    /// whole state as one commit whose base is that version. Refused when the remote's branch moved on since this
    /// region last pushed or pulled it.
    /// </summary>
    public async Task<PushReport> PushBranchAsync(string name, CancellationToken ct = default)
    {
        var updater = await RefUpdaterAsync(ct).ConfigureAwait(false);
        var branch = _store.GetBranch(name);
        if (branch.Parent is not { IsMain: true } && branch.Parent is not null)
            throw new RemoteException(RemoteError.Unsupported, $"branch '{name}' is forked from branch '{branch.Parent.Name}': only branches forked from main (or a version of it) can be pushed; commit it to its parent first");
        long baseVersion = branch.BaseVersion;
        var settings = Settings;
        var based = SyncPoint.CommitOf(settings, _remote, baseVersion)
            ?? throw new RemoteException(RemoteError.NotFound, $"branch '{name}' was forked from version {baseVersion} of main, which {_objects.Where} does not have: push main first (daxfs push main)");
        string key = RemoteFormat.BranchRef(name);
        var stored = await _objects.GetRefAsync(key, ct).ConfigureAwait(false);
        var current = stored is { } s ? RemoteFormat.DecodeRef(s.Data, key) : null;
        settings.TryGetValue(Remotes.Key(_remote, "branch." + name), out var known);
        if (current is not null && current.Commit != known)
            throw new RemoteException(RemoteError.Behind, known is null
                ? $"{_objects.Where} already has a branch '{name}' this region did not pull: fork it with daxfs fork-remote {_remote}/{name} NEWNAME, or push under another name"
                : $"{_objects.Where}: branch '{name}' moved on since this region last pushed or pulled it");
        var baseCommit = await CommitAsync(based.Commit, ct).ConfigureAwait(false);
        var dirty = Dirty.From(_store.AtVersion(baseVersion).DiffTo(branch));
        var (tree, bytes, files) = await BuildTreeAsync(branch, "/", baseCommit.Tree, dirty, ct).ConfigureAwait(false);
        var commit = new CommitObject
        {
            Parent = current?.Commit ?? based.Commit, Base = based.Commit, Tree = tree, Message = $"branch {name}", Source = name,
            TimeNs = (DateTime.UtcNow - DateTime.UnixEpoch).Ticks * 100, Bytes = bytes, Files = files,
        };
        var data = RemoteFormat.Encode(commit);
        string hash = RemoteFormat.Hash(data);
        await UploadAsync(hash, data, ct).ConfigureAwait(false);
        var moved = RemoteFormat.Encode(new RefObject { Commit = hash, Base = based.Commit, BaseVersion = based.RemoteVersion });
        if (!await updater.SwapAsync(key, stored, moved, ct).ConfigureAwait(false))
            throw new RemoteException(RemoteError.Behind, $"{_objects.Where}: branch '{name}' moved on while this push ran (another push won)");
        _store.SetSetting(Remotes.Key(_remote, "branch." + name), hash);
        return new PushReport("branches/" + name, 1, hash, based.RemoteVersion, _uploaded, _uploadedBytes, _skipped);
    }

    /// <summary>Sends tag <paramref name="name"/>: its version must have been pushed. A tag on the remote never moves: one naming another commit is refused.</summary>
    public async Task<PushReport> PushTagAsync(string name, CancellationToken ct = default)
    {
        var updater = await RefUpdaterAsync(ct).ConfigureAwait(false);
        if (!_store.Tags.TryGetValue(name, out long version))
            throw new RemoteException(RemoteError.NotFound, $"no tag '{name}' in this region (daxfs tag --list)");
        var at = SyncPoint.CommitOf(Settings, _remote, version)
            ?? throw new RemoteException(RemoteError.NotFound, $"tag '{name}' names version {version}, which was never pushed to {_objects.Where} (push main first; versions before the first push stay local)");
        string key = RemoteFormat.TagRef(name);
        var moved = RemoteFormat.Encode(new RefObject { Commit = at.Commit, Version = at.RemoteVersion });
        if (await updater.SwapAsync(key, null, moved, ct).ConfigureAwait(false))
            return new PushReport("tags/" + name, 0, at.Commit, at.RemoteVersion, 0, 0, 0);
        var there = await RefAsync(key, ct).ConfigureAwait(false);
        if (there?.Commit == at.Commit)
            return new PushReport(null, 0, at.Commit, at.RemoteVersion, 0, 0, 0);
        throw new RemoteException(RemoteError.Behind, $"{_objects.Where}: tag '{name}' already names version {there?.Version} there; tags do not move");
    }
}
