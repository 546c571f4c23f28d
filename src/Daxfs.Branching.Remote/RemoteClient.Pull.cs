using System.Globalization;
using Daxfs.Branching.Index;

namespace Daxfs.Branching.Remote;

public sealed partial class RemoteClient
{
    /// <summary>A chunk to fetch and write: file, offset, object (for a packed file: its pack and where in it).</summary>
    private readonly record struct ChunkWork(string Path, long Offset, string Hash, int Length, string? Pack = null, long PackOffset = 0);

    /// <summary>
    /// What a downloader fetches: a run of consecutive chunks of one file (written with one write, so the branch's log
    /// holds one record per run, not one per chunk), or the files a directory needs from one pack.
    /// </summary>
    private readonly record struct Work(List<ChunkWork> Items, bool Packed);

    /// <summary>Chunks of one file written together (2 MiB: above the log's largest block, so each run's record gets a block of its own size).</summary>
    private const int RunChunks = 4;

    /// <summary>From this many files of one pack on, the whole pack is fetched rather than each file's range.</summary>
    private const int WholePackFrom = 4;

    /// <summary>Changes to make in a branch so its tree goes from one remote tree to another.</summary>
    private sealed class Plan(System.Threading.Channels.ChannelWriter<Work> chunks)
    {
        /// <summary>Held around every change of the branch: the walk and the downloads change it side by side.</summary>
        public readonly object Gate = new();

        /// <summary>Hands a chunk to the downloaders, which start while the walk goes on.</summary>
        public void Fetch(List<ChunkWork> run) => chunks.TryWrite(new Work(run, Packed: false));

        /// <summary>Hands the files one directory needs from one pack to the downloaders.</summary>
        public void FetchPacked(List<ChunkWork> slices) => chunks.TryWrite(new Work(slices, Packed: true));

        /// <summary>Entries whose attributes to set, in walk order (parents before children; set in reverse).</summary>
        public readonly List<(string Path, TreeEntry Entry, TreeEntry? Was)> Attributes = [];
        public readonly List<string> Changed = [];

        /// <summary>Into an empty region (a clone): what is created gets its final mode at once, and owner 0:0 (what creation gives) is not set again.</summary>
        public bool Fresh;
    }

    /// <summary>
    /// Makes <paramref name="branch"/>'s tree go from remote tree <paramref name="oldHash"/> (null: empty) to
    /// <paramref name="newHash"/>: only directories whose hashes differ are read, and only chunks that differ are
    /// fetched. Every object is checked against its hash before it is written; the caller commits or discards the
    /// branch, so nothing unverified becomes visible.
    /// </summary>
    private async Task ApplyAsync(Branch branch, string? oldHash, string newHash, CancellationToken ct, bool fresh = false)
    {
        var queue = System.Threading.Channels.Channel.CreateUnbounded<Work>(new() { SingleWriter = true });
        var plan = new Plan(queue.Writer) { Fresh = fresh };
        using var failed = CancellationTokenSource.CreateLinkedTokenSource(ct);
        var downloaders = Enumerable.Range(0, Parallelism).Select(_ => Task.Run(async () =>
        {
            try
            {
                await foreach (var w in queue.Reader.ReadAllAsync(failed.Token).ConfigureAwait(false))
                {
                    if (w.Packed)
                    {
                        await FetchPackedAsync(branch, plan, w.Items, failed.Token).ConfigureAwait(false);
                        continue;
                    }
                    var first = w.Items[0];
                    var data = new byte[w.Items.Sum(c => c.Length)];
                    int at = 0;
                    foreach (var c in w.Items)
                    {
                        var chunk = await FetchAsync(c.Hash, $"chunk of {c.Path} at {c.Offset}", RemoteFormat.ChunkBytes, failed.Token).ConfigureAwait(false);
                        if (chunk.Length != c.Length)
                            throw RemoteFormat.Damaged("chunk", c.Hash, $"{chunk.Length} bytes where {c.Path} needs {c.Length} at {c.Offset}");
                        chunk.CopyTo(data, at);
                        at += chunk.Length;
                    }
                    lock (plan.Gate)
                        branch.Write(first.Path, first.Offset, data, create: false);
                    Report("downloading", data.Length);
                }
            }
            catch
            {
                failed.Cancel(); // the others stop too: the branch is thrown away
                throw;
            }
        }, CancellationToken.None)).ToArray();
        try
        {
            await StructureAsync(branch, "/", oldHash, newHash, plan, failed.Token).ConfigureAwait(false);
        }
        catch (DaxfsIOException e) when (e.Error is FileSystemError.InvalidArgument or FileSystemError.NameTooLong)
        {
            failed.Cancel();
            throw RemoteFormat.Damaged("directory", newHash, $"the store refuses what it names: {e.Message}"); // a name or size no tree can hold
        }
        catch
        {
            failed.Cancel();
            throw;
        }
        finally
        {
            queue.Writer.Complete();
            try { await Task.WhenAll(downloaders).ConfigureAwait(false); }
            catch (OperationCanceledException) when (!ct.IsCancellationRequested) { } // the walk's own failure is the one reported
        }
        for (int i = plan.Attributes.Count - 1; i >= 0; i--)
        {
            var (path, e, was) = plan.Attributes[i];
            if (e.Kind == "l")
            {
                if (was is null ? !plan.Fresh || e.Uid != 0 || e.Gid != 0 : was.Uid != e.Uid || was.Gid != e.Gid) branch.Chown(path, e.Uid, e.Gid);
                continue;
            }
            if (was is null ? !plan.Fresh : was.Mode != e.Mode) branch.Chmod(path, e.Mode & ~RemoteFormat.SetIdBits); // a remote plants no setuid or setgid programs
            if (was is null ? !plan.Fresh || e.Uid != 0 || e.Gid != 0 : was.Uid != e.Uid || was.Gid != e.Gid) branch.Chown(path, e.Uid, e.Gid);
            SetXattrs(branch, path, e.Xattrs, was?.Xattrs);
            branch.SetModifiedTime(path, new DateTimeOffset(DateTime.UnixEpoch.AddTicks(e.MtimeNs / 100), TimeSpan.Zero));
        }
    }

    /// <summary>
    /// Fetches packed files: the whole pack (checked against its hash) when a directory needs many of its files, each
    /// file's range otherwise; either way every file's bytes are checked against their own hash before they are written.
    /// </summary>
    private async Task FetchPackedAsync(Branch branch, Plan plan, List<ChunkWork> slices, CancellationToken ct)
    {
        string pack = slices[0].Pack!;
        byte[]? whole = slices.Count >= WholePackFrom ? await FetchAsync(pack, "pack", RemoteFormat.MaxPackBytes, ct).ConfigureAwait(false) : null;
        foreach (var c in slices)
        {
            byte[] data;
            if (whole is not null)
            {
                if (c.PackOffset + c.Length > whole.Length)
                    throw RemoteFormat.Damaged("pack", pack, $"{c.Path} lies at {c.PackOffset} + {c.Length}, past its {whole.Length} bytes");
                data = whole.AsSpan((int)c.PackOffset, c.Length).ToArray();
            }
            else
            {
                try
                {
                    data = await _objects.GetRangeAsync(RemoteFormat.ObjectKey(pack), c.PackOffset, c.Length, ct).ConfigureAwait(false)
                        ?? throw new RemoteException(RemoteError.NotFound, $"{_objects.Where}: pack {pack} of {c.Path} is missing from the remote");
                }
                catch (RemoteException e) when (e.Error == RemoteError.Damaged)
                {
                    throw RemoteFormat.Damaged("pack", pack, $"{c.Path}: {e.Message}");
                }
                Interlocked.Increment(ref _downloaded);
                Interlocked.Add(ref _downloadedBytes, data.Length);
            }
            if (RemoteFormat.Hash(data) != c.Hash)
                throw RemoteFormat.Damaged("pack", pack, $"the bytes of {c.Path} at {c.PackOffset} do not match their SHA-256 {c.Hash}");
            lock (plan.Gate)
                branch.Write(c.Path, 0, data, create: false);
            Report("downloading", data.Length);
        }
    }

    private static void SetXattrs(Branch branch, string path, SortedDictionary<string, string>? now, SortedDictionary<string, string>? before)
    {
        foreach (var (name, _) in before ?? [])
            if (now is null || !now.ContainsKey(name))
                branch.RemoveExtendedAttribute(path, name);
        foreach (var (name, value) in now ?? [])
            if (before is null || !before.TryGetValue(name, out var old) || old != value)
            {
                byte[] bytes;
                try { bytes = Convert.FromBase64String(value); }
                catch (FormatException) { throw new RemoteException(RemoteError.Damaged, $"{path}: attribute {name} on the remote is not base64"); }
                branch.SetExtendedAttribute(path, name, bytes);
            }
    }

    private static readonly Dictionary<int, string> s_zeroHashes = [];

    /// <summary>The hash of <paramref name="length"/> zero bytes (a hole a new file need not fetch or write).</summary>
    private static string ZeroHash(int length)
    {
        lock (s_zeroHashes)
        {
            if (!s_zeroHashes.TryGetValue(length, out var h))
                s_zeroHashes[length] = h = RemoteFormat.Hash(new byte[length]);
            return h;
        }
    }

    private async Task StructureAsync(Branch branch, string dir, string? oldHash, string newHash, Plan plan, CancellationToken ct)
    {
        if (oldHash == newHash) return;
        if (dir.Length > RemoteFormat.MaxPathBytes)
            throw RemoteFormat.Damaged("directory", newHash, $"it lies at {dir[..64]}…, deeper than a path can be ({RemoteFormat.MaxPathBytes} bytes)");
        var old = oldHash is null ? [] : (await TreeAsync(oldHash, ct).ConfigureAwait(false)).Entries.ToDictionary(e => e.Name, StringComparer.Ordinal);
        var now = (await TreeAsync(newHash, ct).ConfigureAwait(false)).Entries;
        var names = new HashSet<string>(now.Select(e => e.Name), StringComparer.Ordinal);
        var packs = new Dictionary<string, List<ChunkWork>>(StringComparer.Ordinal); // this directory's packed files, by pack
        foreach (var (name, _) in old)
            if (!names.Contains(name))
            {
                string gone = Join(dir, name);
                lock (plan.Gate) branch.Delete(gone, recursive: true);
                plan.Changed.Add(gone);
            }
        foreach (var e in now)
        {
            string path = Join(dir, e.Name);
            TreeEntry? was = old.TryGetValue(e.Name, out var o) ? o : null;
            if (was is not null && SameEntry(was, e)) continue;
            plan.Changed.Add(path);
            if (was is not null && (was.Kind != e.Kind || (e.Kind == "l" && was.Target != e.Target) || (e.Kind is "c" or "b" && was.Rdev != e.Rdev)))
            {
                lock (plan.Gate) branch.Delete(path, recursive: true);
                was = null;
            }
            switch (e.Kind)
            {
                case "d":
                    if (was is null) lock (plan.Gate) branch.CreateDirectory(path, plan.Fresh ? e.Mode & ~RemoteFormat.SetIdBits : 0x1C0); // owner-only until its attributes are set, after its content
                    plan.Attributes.Add((path, e, was));
                    await StructureAsync(branch, path, was?.Tree, e.Tree!, plan, ct).ConfigureAwait(false);
                    break;
                case "f":
                    lock (plan.Gate)
                    {
                        if (was is null) branch.CreateFile(path, plan.Fresh ? e.Mode & ~RemoteFormat.SetIdBits : 0x180);
                        if (was is null || was.Size != e.Size) branch.Truncate(path, e.Size);
                    }
                    var run = new List<ChunkWork>();
                    for (int i = 0; i < e.Chunks!.Length; i++)
                    {
                        if (was?.Chunks is { } before && i < before.Length && before[i] == e.Chunks[i]) continue;
                        long offset = (long)i * RemoteFormat.ChunkBytes;
                        int length = (int)Math.Min(RemoteFormat.ChunkBytes, e.Size - offset);
                        bool wasHole = was is null || was.Chunks is not { } b2 || i >= b2.Length || (offset >= was.Size);
                        if (wasHole && e.Chunks[i] == ZeroHash(length)) continue; // a new range of zeros: the truncate made it
                        Report("downloading", 0, length);
                        if (e.Pack is { } pack)
                        {
                            if (!packs.TryGetValue(pack, out var list)) packs[pack] = list = [];
                            list.Add(new ChunkWork(path, 0, e.Chunks[i], length, pack, e.PackOffset));
                        }
                        else
                        {
                            if (run.Count > 0 && (run.Count == RunChunks || run[^1].Offset + run[^1].Length != offset))
                            {
                                plan.Fetch(run);
                                run = [];
                            }
                            run.Add(new ChunkWork(path, offset, e.Chunks[i], length));
                        }
                    }
                    if (run.Count > 0) plan.Fetch(run);
                    plan.Attributes.Add((path, e, was));
                    break;
                case "l":
                    if (was is null) lock (plan.Gate) branch.CreateSymlink(path, e.Target!);
                    plan.Attributes.Add((path, e, was));
                    break;
                case "c" or "b":
                    throw new RemoteException(RemoteError.Unsupported, $"{path}: a {(e.Kind == "c" ? "character" : "block")} device node on the remote; "
                        + "a pull creates no device nodes (exported, one would open the machine's hardware to whoever may read it)");
                default:
                    if (was is null) lock (plan.Gate) branch.CreateSpecialFile(path, e.Kind switch { "p" => NodeKind.Fifo, "s" => NodeKind.Socket, "c" => NodeKind.CharDevice, _ => NodeKind.BlockDevice }, e.Mode & ~RemoteFormat.SetIdBits, e.Rdev);
                    plan.Attributes.Add((path, e, was));
                    break;
            }
        }
        foreach (var slices in packs.Values)
            plan.FetchPacked(slices);
    }

    private static bool SameEntry(TreeEntry a, TreeEntry b) =>
        a.Kind == b.Kind && a.Mode == b.Mode && a.Uid == b.Uid && a.Gid == b.Gid && a.MtimeNs == b.MtimeNs && a.Size == b.Size && a.Tree == b.Tree
        && a.Target == b.Target && a.Rdev == b.Rdev && (a.Chunks ?? []).SequenceEqual(b.Chunks ?? [])
        && (a.Xattrs ?? []).SequenceEqual(b.Xattrs ?? []);

    /// <summary>The paths that differ between two remote trees (without changing anything): for the rebase's conflict check.</summary>
    private async Task ChangedPathsAsync(string dir, string? oldHash, string newHash, List<string> into, CancellationToken ct)
    {
        if (oldHash == newHash) return;
        var old = oldHash is null ? [] : (await TreeAsync(oldHash, ct).ConfigureAwait(false)).Entries.ToDictionary(e => e.Name, StringComparer.Ordinal);
        var now = (await TreeAsync(newHash, ct).ConfigureAwait(false)).Entries.ToDictionary(e => e.Name, StringComparer.Ordinal);
        foreach (var name in old.Keys.Union(now.Keys))
        {
            string path = Join(dir, name);
            old.TryGetValue(name, out var a);
            now.TryGetValue(name, out var b);
            if (a is not null && b is not null && a.Kind == "d" && b.Kind == "d")
                await ChangedPathsAsync(path, a.Tree, b.Tree!, into, ct).ConfigureAwait(false); // a directory whose content changed is not a change of its own
            else if (a is null || b is null || !SameEntry(a, b))
                into.Add(path);
        }
    }

    /// <summary>A branch name for the work of a pull (it shows as the version's source): the remote and its version, made unique.</summary>
    private string WorkBranch(string what) => $"{_remote}-{what}-{Guid.NewGuid().ToString("N")[..6]}";

    /// <summary>Applies remote tree change <paramref name="oldTree"/> → <paramref name="newTree"/> to main as one new version (nothing of it shows on failure).</summary>
    private async Task<long> CommitTreeChangeAsync(string? oldTree, string newTree, long remoteVersion, string message, CancellationToken ct, bool fresh = false)
    {
        var work = _store.Main.Fork(WorkBranch("v" + remoteVersion.ToString(CultureInfo.InvariantCulture)));
        try
        {
            await ApplyAsync(work, oldTree, newTree, ct, fresh).ConfigureAwait(false);
            return work.Commit(message).Sequence;
        }
        catch
        {
            try { work.Abort(); } catch (DaxfsException) { } // the branch goes; main is as it was
            throw;
        }
    }

    /// <summary>
    /// Brings the remote's new versions of main into the region, one local version each, then its tags that name
    /// versions now here, then the branches named in <paramref name="branches"/> (as local branches of the same name).
    /// When main has versions the remote lacks, refused unless <paramref name="rebase"/>: then the remote's changes are
    /// put under them as one new version, provided the two sides changed different paths, and the next push sends it.
    /// </summary>
    public async Task<PullReport> PullAsync(bool rebase = false, IReadOnlyList<string>? branches = null, CancellationToken ct = default)
    {
        await SettlePushAsync(ct).ConfigureAwait(false);
        var sync = SyncPoint.Read(Settings, _remote)
            ?? throw new RemoteException(RemoteError.NotFound, $"this region has not exchanged with {_objects.Where} yet: push to it, or clone from it");
        var (_, current) = await MainRefAsync(ct).ConfigureAwait(false);
        if (current is null)
            throw new RemoteException(RemoteError.NotFound, $"{_objects.Where} has no main (push to it first)");
        // The commits after the one last seen, newest first, followed back through their parents.
        var chain = new List<(string Hash, CommitObject Commit)>();
        for (string? h = current.Commit; h != sync.Commit; )
        {
            if (h is null)
                throw new RemoteException(RemoteError.Behind, $"{_objects.Where}: main's history there no longer holds version {sync.RemoteVersion}, which this region last saw (was the remote replaced?)");
            var c = await CommitAsync(h, ct).ConfigureAwait(false);
            if (chain.Count > 0 && c.Version != chain[^1].Commit.Version - 1)
                throw RemoteFormat.Damaged("commit", h, $"version {c.Version} before version {chain[^1].Commit.Version}");
            chain.Add((h, c));
            h = c.Parent;
        }
        chain.Reverse();
        if (chain.Count > 0 && (chain[0].Commit.Version != sync.RemoteVersion + 1 || chain[^1].Commit.Version != current.Version))
            throw RemoteFormat.Damaged("commit", chain[0].Hash, $"versions {chain[0].Commit.Version} to {chain[^1].Commit.Version} do not follow version {sync.RemoteVersion} up to the ref's {current.Version}");
        long made = 0, head = _store.CurrentVersion;
        bool ahead = head != sync.LocalVersion || sync.PendingAll || sync.Pending is { Count: > 0 };
        if (chain.Count > 0)
        {
            string oldTree = (await CommitAsync(sync.Commit, ct).ConfigureAwait(false)).Tree;
            if (ahead && !rebase)
                throw new RemoteException(RemoteError.Behind, $"main has {Plural(head - sync.LocalVersion, "version")} {_objects.Where} lacks, and the remote has {Plural(chain.Count, "new version")}: daxfs pull --rebase puts the remote's under yours (if you changed different paths), then push");
            if (ahead)
            {
                var (hash, last) = chain[^1];
                var local = new List<string>();
                foreach (var c in _store.AtVersion(sync.LocalVersion).DiffTo(_store.Main))
                {
                    if (c.NodeKind == NodeKind.Directory && c.Kind is ChangeKind.Modified or ChangeKind.AttributesChanged) continue;
                    local.Add(c.Path);
                    if (c.OldPath is { } op) local.Add(op);
                }
                local.AddRange(sync.Pending ?? []);
                var theirs = new List<string>();
                await ChangedPathsAsync("/", oldTree, last.Tree, theirs, ct).ConfigureAwait(false);
                var clashes = local.Where(p => theirs.Any(q => p == q || p.StartsWith(q + "/", StringComparison.Ordinal) || q.StartsWith(p + "/", StringComparison.Ordinal))).Distinct().Order(StringComparer.Ordinal).ToList();
                if (clashes.Count > 0)
                    throw new RemoteException(RemoteError.Conflict, $"both this region and {_objects.Where} changed {string.Join(", ", clashes.Take(10))}{(clashes.Count > 10 ? $" and {clashes.Count - 10} more" : "")}: fork main's last exchanged version (daxfs branch create NAME --from {sync.LocalVersion}), pull into a fresh clone, and choose");
                long v = await CommitTreeChangeAsync(oldTree, last.Tree, last.Version, $"rebase onto {_remote} version {last.Version}: {last.Message}", ct).ConfigureAwait(false);
                made++;
                _store.SetSettings(new SyncPoint(hash, v, last.Version, local.Distinct().ToList(), sync.PendingAll).Settings(_remote).ToList());
            }
            else
            {
                foreach (var (hash, c) in chain)
                {
                    long v = await CommitTreeChangeAsync(oldTree, c.Tree, c.Version, c.Message, ct).ConfigureAwait(false);
                    made++;
                    _store.SetSettings(new SyncPoint(hash, v, c.Version, null, false).Settings(_remote).ToList());
                    oldTree = c.Tree;
                }
            }
        }
        var tags = await PullTagsAsync(ct).ConfigureAwait(false);
        var forked = new List<string>();
        foreach (var b in branches ?? [])
        {
            await ForkRemoteAsync(b, b, ct).ConfigureAwait(false);
            forked.Add(b);
        }
        var now = SyncPoint.Read(Settings, _remote)!;
        return new PullReport(made, _store.CurrentVersion, now.RemoteVersion, _downloaded, _downloadedBytes, tags.Made, forked) { TagClashes = tags.Clashes };
    }

    /// <summary>
    /// Makes the remote's tags that name versions exchanged with this region. A local tag of the same name that names
    /// another version is kept, and the clash is reported (tags never move, here or there).
    /// </summary>
    private async Task<(List<string> Made, List<string> Clashes)> PullTagsAsync(CancellationToken ct)
    {
        var made = new List<string>();
        var clashes = new List<string>();
        var local = _store.Tags;
        var settings = Settings;
        foreach (var key in await _objects.ListAsync("refs/tags/", ct).ConfigureAwait(false))
        {
            string name = key["refs/tags/".Length..];
            if (Store.TagNameProblem(name) is not null) continue;
            var r = await RefAsync(key, ct).ConfigureAwait(false);
            if (r is null || SyncPoint.LocalOf(settings, _remote, r.Commit) is not { } v) continue;
            if (local.TryGetValue(name, out long here))
            {
                if (here != v)
                    clashes.Add($"{name} (version {here} here, version {v} on {_remote})");
                continue;
            }
            _store.Tag(name, v);
            made.Add(name);
        }
        return (made, clashes);
    }

    /// <summary>
    /// Continues branch <paramref name="remoteBranch"/> pushed from another machine: a local branch
    /// <paramref name="localName"/> forked from the version of main it started from (pulled first when this region
    /// lacks it and has nothing unpushed), with the branch's changes applied.
    /// </summary>
    public async Task<Branch> ForkRemoteAsync(string remoteBranch, string localName, CancellationToken ct = default)
    {
        if (Store.BranchNameProblem(remoteBranch) is { } why)
            throw new ArgumentException($"invalid branch name '{remoteBranch}': {why}");
        string key = RemoteFormat.BranchRef(remoteBranch);
        var r = await RefAsync(key, ct).ConfigureAwait(false)
            ?? throw new RemoteException(RemoteError.NotFound, $"{_objects.Where} has no branch '{remoteBranch}'");
        var commit = await CommitAsync(r.Commit, ct).ConfigureAwait(false);
        string baseHash = commit.Base ?? throw RemoteFormat.Damaged("commit", r.Commit, "a branch's commit without a base");
        long? local = SyncPoint.LocalOf(Settings, _remote, baseHash);
        if (local is null)
        {
            var sync = SyncPoint.Read(Settings, _remote);
            if (sync is not null && sync.LocalVersion == _store.CurrentVersion && sync.Pending is null && !sync.PendingAll)
            {
                await PullAsync(false, null, ct).ConfigureAwait(false);
                local = SyncPoint.LocalOf(Settings, _remote, baseHash);
            }
            if (local is null)
                throw new RemoteException(RemoteError.NotFound, $"{_objects.Where}: branch '{remoteBranch}' starts from version {r.BaseVersion} of main, which this region does not have: daxfs pull first");
        }
        var baseCommit = await CommitAsync(baseHash, ct).ConfigureAwait(false);
        var branch = local == _store.CurrentVersion ? _store.Main.Fork(localName) : _store.AtVersion(local.Value).Fork(localName);
        try
        {
            await ApplyAsync(branch, baseCommit.Tree, commit.Tree, ct).ConfigureAwait(false);
        }
        catch
        {
            try { branch.Abort(); } catch (DaxfsException) { }
            throw;
        }
        _store.SetSetting(Remotes.Key(_remote, "branch." + localName), r.Commit);
        return branch;
    }

    /// <summary>
    /// Builds a new region at <paramref name="regionPath"/> from a remote version: main's latest, a tag's, or version
    /// N (<paramref name="reference"/>). The region is built beside its path and renamed into place once whole, so a
    /// clone that fails leaves nothing; the remote is added as <paramref name="remoteName"/>.
    /// </summary>
    public static async Task<PullReport> CloneAsync(RemoteTarget target, string regionPath, string remoteName, string? reference, long? capacity,
        IProgress<RemoteProgress>? progress = null, CancellationToken ct = default)
    {
        ArgumentNullException.ThrowIfNull(target);
        ArgumentException.ThrowIfNullOrEmpty(regionPath);
        if (File.Exists(regionPath))
            throw new IOException($"{regionPath}: a region (or file) is already there");
        using var objects = new S3ObjectStore(target);
        return await CloneAsync(objects, target, regionPath, remoteName, reference, capacity, progress, ct).ConfigureAwait(false);
    }

    internal static async Task<PullReport> CloneAsync(IObjectStore objects, RemoteTarget target, string regionPath, string remoteName, string? reference, long? capacity,
        IProgress<RemoteProgress>? progress, CancellationToken ct)
    {
        if (Remotes.NameProblem(remoteName) is { } bad) throw new ArgumentException($"invalid remote name '{remoteName}': {bad}");
        string full = Path.GetFullPath(regionPath);
        string dir = Path.GetDirectoryName(full)!;
        if (!Directory.Exists(dir))
            throw new DirectoryNotFoundException($"{dir}: no such directory for the region");
        // Which commit: read before anything is made.
        var probe = new RemoteClient(null, remoteName, objects, progress, borrowed: true);
        var (hash, commit) = await probe.ResolveAsync(reference, ct).ConfigureAwait(false);
        long size = capacity ?? commit.Bytes + commit.Bytes / 4 + commit.Files * 8192 + (256L << 20);
        // Built beside its path and renamed into place once whole: a clone that fails or is killed leaves nothing at
        // the path, and the next build of that path removes what a killed one left (the store's own mechanism).
        using var building = Store.CreateUnpublished(full, new BaseImageBuilder(), new StoreOptions { Capacity = size });
        PullReport report;
        using (var store = Store.Open(building.BuildingPath))
        {
            Remotes.Add(store, remoteName, target);
            var client = new RemoteClient(store, remoteName, objects, progress, borrowed: true);
            long v = await client.CommitTreeChangeAsync(null, commit.Tree, commit.Version, commit.Message, ct, fresh: true).ConfigureAwait(false);
            store.SetSettings(new SyncPoint(hash, v, commit.Version, null, false).Settings(remoteName).ToList());
            var tags = await client.PullTagsAsync(ct).ConfigureAwait(false);
            report = new PullReport(1, v, commit.Version, client._downloaded + probe._downloaded, client._downloadedBytes + probe._downloadedBytes, tags.Made, []);
        }
        building.Publish();
        return report;
    }

    private RemoteClient(Store? store, string remote, IObjectStore objects, IProgress<RemoteProgress>? progress, bool borrowed)
        : this(store, remote, objects, progress) => _borrowed = borrowed;

    private readonly bool _borrowed;

    /// <summary>The commit of main <paramref name="reference"/> names: null for the latest, a tag, or a version number.</summary>
    private async Task<(string Hash, CommitObject Commit)> ResolveAsync(string? reference, CancellationToken ct)
    {
        var (_, main) = await MainRefAsync(ct).ConfigureAwait(false);
        if (reference is not null && !reference.All(char.IsAsciiDigit))
        {
            var tag = await RefAsync(RemoteFormat.TagRef(reference), ct).ConfigureAwait(false)
                ?? throw new RemoteException(RemoteError.NotFound, $"{_objects.Where} has no tag '{reference}'");
            return (tag.Commit, await CommitAsync(tag.Commit, ct).ConfigureAwait(false));
        }
        if (main is null)
            throw new RemoteException(RemoteError.NotFound, $"{_objects.Where} has no main (nothing was pushed there)");
        long? wanted = reference is null ? null : long.Parse(reference, NumberStyles.None, CultureInfo.InvariantCulture);
        long expected = main.Version;
        for (string? h = main.Commit; h is not null; expected--)
        {
            var c = await CommitAsync(h, ct).ConfigureAwait(false);
            if (c.Version != expected)
                throw RemoteFormat.Damaged("commit", h, $"it says version {c.Version} where main's history has version {expected}");
            if (wanted is null || c.Version == wanted) return (h, c);
            if (c.Version < wanted) break;
            h = c.Parent;
        }
        throw new RemoteException(RemoteError.NotFound, $"{_objects.Where}: main has no version {reference} (it is at version {main.Version})");
    }
}
