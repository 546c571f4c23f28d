using System.Collections.Concurrent;
using System.Globalization;

namespace Daxfs.Branching.Remote;

/// <summary>Where a push, pull or clone is: the phase, and work done of work known (objects or bytes).</summary>
/// <param name="Phase">What is happening ("hashing", "uploading", "downloading", "writing").</param>
/// <param name="Done">Bytes done.</param>
/// <param name="Total">Bytes known so far (grows while the tree is walked).</param>
public readonly record struct RemoteProgress(string Phase, long Done, long Total);

/// <summary>What a push sent.</summary>
/// <param name="Ref">The ref it moved (main, a tag or a branch), or null when there was nothing to send.</param>
/// <param name="Versions">Commits made on the remote.</param>
/// <param name="Commit">The commit the ref names now.</param>
/// <param name="RemoteVersion">For main: the remote's version number now.</param>
/// <param name="ObjectsUploaded">Objects the remote lacked, uploaded.</param>
/// <param name="BytesUploaded">Their bytes.</param>
/// <param name="ObjectsPresent">Objects the remote had already (not uploaded).</param>
public readonly record struct PushReport(string? Ref, long Versions, string? Commit, long RemoteVersion, long ObjectsUploaded, long BytesUploaded, long ObjectsPresent);

/// <summary>What a pull or clone brought.</summary>
/// <param name="Versions">Local versions made.</param>
/// <param name="LocalVersion">Main's version after it.</param>
/// <param name="RemoteVersion">The remote's version of main it matches now.</param>
/// <param name="ObjectsDownloaded">Objects fetched (each checked against its hash).</param>
/// <param name="BytesDownloaded">Their bytes.</param>
/// <param name="Tags">Tags made.</param>
/// <param name="Branches">Branches made.</param>
public readonly record struct PullReport(long Versions, long LocalVersion, long RemoteVersion, long ObjectsDownloaded, long BytesDownloaded, IReadOnlyList<string> Tags, IReadOnlyList<string> Branches)
{
    /// <summary>The remote's tags not made here because a local tag of the same name names another version (each with both versions).</summary>
    public IReadOnlyList<string> TagClashes { get; init; } = [];
}

/// <summary>
/// Pushes and pulls one region's versions, tags and branches to and from one remote. Objects (file chunks,
/// directories, commits) are named by their SHA-256 and immutable: a push uploads only what the remote lacks, every
/// object fetched is checked against its name before anything of it is used, and refs move last, by
/// compare-and-swap, so a ref never names a missing object and two machines racing cannot lose each other's work.
/// Not thread-safe: one call at a time.
/// </summary>
public sealed partial class RemoteClient : IDisposable
{
    private readonly Store _store = null!;
    private readonly string _remote;
    private readonly IObjectStore _objects;
    private readonly IProgress<RemoteProgress>? _progress;
    private readonly ConcurrentDictionary<string, TreeObject> _trees = new(StringComparer.Ordinal);
    private readonly ConcurrentDictionary<string, byte> _present = new(StringComparer.Ordinal);
    private long _uploaded, _uploadedBytes, _skipped, _downloaded, _downloadedBytes, _done, _total;

    /// <summary>Objects in flight at once.</summary>
    internal const int Parallelism = 16;

    /// <summary>Opens remote <paramref name="remote"/> of <paramref name="store"/> (see <see cref="Remotes"/>).</summary>
    public RemoteClient(Store store, string remote, IProgress<RemoteProgress>? progress = null)
        : this(store, remote, new S3ObjectStore(Remotes.Get(store, remote).Target), progress)
    {
    }

    internal RemoteClient(Store? store, string remote, IObjectStore objects, IProgress<RemoteProgress>? progress)
    {
        _store = store!; // null only for the look-ups a clone makes before its region exists
        _remote = remote;
        _objects = objects;
        _progress = progress;
    }

    /// <inheritdoc/>
    public void Dispose()
    {
        if (!_borrowed) _objects.Dispose();
    }

    private IReadOnlyDictionary<string, string> Settings => _store.Settings;

    // ------------------------------------------------------------------ objects

    private void Report(string phase, long done = 0, long total = 0)
    {
        Interlocked.Add(ref _done, done);
        Interlocked.Add(ref _total, total);
        _progress?.Report(new RemoteProgress(phase, Interlocked.Read(ref _done), Interlocked.Read(ref _total)));
    }

    /// <summary>An object's bytes, checked against its name; damaged or missing is an error naming it.</summary>
    private async Task<byte[]> FetchAsync(string hash, string what, long maxBytes, CancellationToken ct)
    {
        var data = await _objects.GetAsync(RemoteFormat.ObjectKey(hash), maxBytes, ct).ConfigureAwait(false)
            ?? throw new RemoteException(RemoteError.NotFound, $"{_objects.Where}: {what} {hash} is missing from the remote");
        if (RemoteFormat.Hash(data) != hash)
            throw RemoteFormat.Damaged(what, hash, "its bytes do not match its SHA-256 (damaged in the store or on the way)");
        Interlocked.Increment(ref _downloaded);
        Interlocked.Add(ref _downloadedBytes, data.Length);
        _present.TryAdd(hash, 0);
        return data;
    }

    private async Task<TreeObject> TreeAsync(string hash, CancellationToken ct)
    {
        if (_trees.TryGetValue(hash, out var t)) return t;
        t = RemoteFormat.DecodeTree(await FetchAsync(hash, "directory", RemoteFormat.MaxTreeBytes, ct).ConfigureAwait(false), hash);
        _trees[hash] = t;
        return t;
    }

    private async Task<CommitObject> CommitAsync(string hash, CancellationToken ct) =>
        RemoteFormat.DecodeCommit(await FetchAsync(hash, "commit", RemoteFormat.MaxCommitBytes, ct).ConfigureAwait(false), hash);

    /// <summary>Stores the object unless the remote has it (known, or found by a HEAD).</summary>
    private async Task UploadAsync(string hash, ReadOnlyMemory<byte> data, CancellationToken ct)
    {
        if (_present.ContainsKey(hash) || await _objects.ExistsAsync(RemoteFormat.ObjectKey(hash), ct).ConfigureAwait(false))
        {
            Interlocked.Increment(ref _skipped);
        }
        else
        {
            await _objects.PutAsync(RemoteFormat.ObjectKey(hash), data, ct).ConfigureAwait(false);
            Interlocked.Increment(ref _uploaded);
            Interlocked.Add(ref _uploadedBytes, data.Length);
        }
        _present.TryAdd(hash, 0);
    }

    private async Task<RefObject?> RefAsync(string key, CancellationToken ct) =>
        await _objects.GetRefAsync(key, ct).ConfigureAwait(false) is { } r ? RemoteFormat.DecodeRef(r.Data, key) : null;

    private async Task<RefUpdater> RefUpdaterAsync(CancellationToken ct)
    {
        if (Settings.TryGetValue(Remotes.Key(_remote, "cas"), out var mode))
            return new RefUpdater(_objects, mode);
        mode = await RefUpdater.ProbeAsync(_objects, ct).ConfigureAwait(false);
        _store.SetSetting(Remotes.Key(_remote, "cas"), mode);
        return new RefUpdater(_objects, mode);
    }

    /// <summary>The remote's main: its ref as stored (for the swap) and decoded, or nulls.</summary>
    private async Task<(StoredRef? Stored, RefObject? Ref)> MainRefAsync(CancellationToken ct)
    {
        var stored = await _objects.GetRefAsync(RemoteFormat.MainRef, ct).ConfigureAwait(false);
        return (stored, stored is { } s ? RemoteFormat.DecodeRef(s.Data, RemoteFormat.MainRef) : null);
    }

    private static string Join(string dir, string name) => dir == "/" ? "/" + name : dir + "/" + name;

    private static string? ParentOf(string path)
    {
        int slash = path.LastIndexOf('/');
        return slash <= 0 ? (path == "/" ? null : "/") : path[..slash];
    }

    private static string Plural(long n, string one) => n == 1 ? $"1 {one}" : string.Create(CultureInfo.InvariantCulture, $"{n} {one}s");
}
