using System.Diagnostics;

namespace Daxfs.Branching.Remote.Tests;

[Collection("s3")]
public sealed class FaultTests(S3Fixture s3)
{
    private static void Ceph(string verb)
    {
        var psi = new ProcessStartInfo(S3Fixture.CephScript, [verb, S3Fixture.CephDir!]) { RedirectStandardError = true, RedirectStandardOutput = true };
        using var p = Process.Start(psi)!;
        string err = p.StandardError.ReadToEnd();
        p.WaitForExit();
        Assert.True(p.ExitCode == 0, $"ceph-s3 {verb}: {err}");
    }

    [Fact]
    [Trait("Category", "Slow")]
    public async Task A_gateway_killed_mid_push_leaves_no_ref_and_the_push_resumes_skipping_what_was_stored()
    {
        if (S3Fixture.CephDir is null || !File.Exists(Path.Combine(S3Fixture.CephDir, "env")))
            Assert.Fail("this test kills the local Ceph gateway: run it through ./test.sh, which starts one with .ci/ceph-s3 and names its directory in DAXFS_CEPH_DIR");
        var target = s3.Fresh();
        using var a = new Region(b =>
        {
            for (int i = 0; i < 48; i++) b.AddFile($"/data/f{i:00}.bin", Region.Bytes(1 << 20, i));
        });
        Remotes.Add(a.Store, "origin", target);
        int killed = 0;
        var progress = new SyncProgress(p =>
        {
            if (p.Phase == "uploading" && p.Done >= 12 << 20 && Interlocked.Exchange(ref killed, 1) == 0)
                Ceph("kill-gateway");
        });
        try
        {
            using (var c = new RemoteClient(a.Store, "origin", progress))
            {
                var e = await Assert.ThrowsAsync<RemoteException>(() => c.PushMainAsync());
                Assert.Equal(RemoteError.Unreachable, e.Error);
                Assert.Contains("run the command again", e.Message);
            }
            Assert.Equal(1, killed);
        }
        finally
        {
            Ceph("start-gateway");
        }
        // Objects went first and the ref last: no ref names anything yet.
        Assert.Null(await s3.Client.GetObjectMetadataAsync(target.Url.Bucket, target.Url.Key("refs/heads/main")).ContinueWith(t => t.IsFaulted ? null : t.Result));
        using (var c = new RemoteClient(a.Store, "origin"))
        {
            var resumed = await c.PushMainAsync();
            // 96 chunks of 512 KiB, two directories and the commit: what went up before the kill is not sent again.
            Assert.Equal(99, resumed.ObjectsUploaded + resumed.ObjectsPresent);
            Assert.True(resumed.ObjectsPresent >= 20, $"the resumed push found only {resumed.ObjectsPresent} objects stored");
        }
        string path = Path.Combine("/dev/shm", $"daxfs-remote-clone-{Guid.NewGuid():N}.daxfs");
        await RemoteClient.CloneAsync(target, path, "origin", null, 256L << 20);
        using var b = new Region(path);
        Assert.Equal(Trees.Snapshot(a.Store.Main), Trees.Snapshot(b.Store.Main));
    }

    [Fact]
    public async Task Large_objects_go_up_in_parts_and_read_back_whole()
    {
        var target = s3.Fresh();
        using var store = new S3ObjectStore(target) { MultipartThreshold = 6 << 20, PartBytes = 5 << 20 };
        var data = Region.Bytes(13 << 20, 4);
        await store.PutAsync("objects/big", data, default);
        Assert.Equal(data, await store.GetAsync("objects/big", long.MaxValue, default));
        var parts = await s3.Client.GetObjectMetadataAsync(target.Url.Bucket, target.Url.Key("objects/big"));
        Assert.EndsWith("-3\"", parts.ETag); // three parts
    }

    [Fact]
    public async Task The_ref_probe_finds_what_the_store_honours_and_a_lock_updates_refs_where_only_if_none_match_holds()
    {
        var target = s3.Fresh();
        using var store = new S3ObjectStore(target);
        Assert.Equal(RefUpdater.IfMatchUnquoted, await RefUpdater.ProbeAsync(store, default));
        Assert.Empty(await store.ListAsync("probe/", default)); // the probe cleans up
        var locked = new RefUpdater(store, RefUpdater.Lock);
        Assert.True(await locked.SwapAsync("refs/x", null, "1"u8.ToArray(), default));
        Assert.False(await locked.SwapAsync("refs/x", null, "2"u8.ToArray(), default)); // it exists now
        var now = await store.GetRefAsync("refs/x", default);
        Assert.True(await locked.SwapAsync("refs/x", now, "3"u8.ToArray(), default));
        Assert.False(await locked.SwapAsync("refs/x", now, "4"u8.ToArray(), default)); // stale expectation
        Assert.Equal("3"u8.ToArray(), (await store.GetRefAsync("refs/x", default))!.Value.Data);
        // Many writers racing through the lock: each swap that succeeds saw the value before it, so none is lost.
        int wins = 0;
        await Parallel.ForAsync(0, 8, async (i, ct) =>
        {
            for (int tries = 0; tries < 50; tries++)
            {
                var seen = await store.GetRefAsync("refs/x", ct);
                int n = int.Parse(System.Text.Encoding.UTF8.GetString(seen!.Value.Data));
                if (await locked.SwapAsync("refs/x", seen, System.Text.Encoding.UTF8.GetBytes((n + 1).ToString()), ct))
                {
                    Interlocked.Increment(ref wins);
                    return;
                }
            }
        });
        Assert.Equal(8, wins);
        Assert.Equal("11", System.Text.Encoding.UTF8.GetString((await store.GetRefAsync("refs/x", default))!.Value.Data));
    }

    private sealed class SyncProgress(Action<RemoteProgress> report) : IProgress<RemoteProgress>
    {
        public void Report(RemoteProgress value) => report(value);
    }

    /// <summary>The object store, with a "crash" (an exception) just before or just after the swap of main's ref.</summary>
    private sealed class CrashAtSwap(IObjectStore inner, bool afterSwap) : IObjectStore
    {
        private bool _crashed; // from the crash on, nothing reaches the store: the process is gone

        public string Where => inner.Where;
        public Task<byte[]?> GetAsync(string key, long maxBytes, CancellationToken ct) => Alive(() => inner.GetAsync(key, maxBytes, ct));
        public Task<byte[]?> GetRangeAsync(string key, long offset, int length, CancellationToken ct) => Alive(() => inner.GetRangeAsync(key, offset, length, ct));
        public Task<bool> ExistsAsync(string key, CancellationToken ct) => Alive(() => inner.ExistsAsync(key, ct));
        public Task PutAsync(string key, ReadOnlyMemory<byte> data, CancellationToken ct) => Alive(async () => { await inner.PutAsync(key, data, ct); return true; });
        public Task<StoredRef?> GetRefAsync(string key, CancellationToken ct) => Alive(() => inner.GetRefAsync(key, ct));

        private Task<T> Alive<T>(Func<Task<T>> call) => _crashed ? throw new IOException("the process is gone") : call();
        public Task<bool> PutIfAbsentAsync(string key, byte[] data, CancellationToken ct) => Swap(key, () => inner.PutIfAbsentAsync(key, data, ct));
        public Task<bool> PutIfMatchAsync(string key, byte[] data, string etag, bool quoted, CancellationToken ct) => Swap(key, () => inner.PutIfMatchAsync(key, data, etag, quoted, ct));
        public Task PutRefAsync(string key, byte[] data, CancellationToken ct) => inner.PutRefAsync(key, data, ct);
        public Task DeleteAsync(string key, CancellationToken ct) => inner.DeleteAsync(key, ct);
        public Task<IReadOnlyList<string>> ListAsync(string prefix, CancellationToken ct) => inner.ListAsync(prefix, ct);
        public void Dispose() => inner.Dispose();

        private async Task<bool> Swap(string key, Func<Task<bool>> swap)
        {
            if (key != RemoteFormat.MainRef) return await swap();
            _crashed = true;
            if (!afterSwap) throw new IOException("crashed before the swap");
            await swap();
            throw new IOException("crashed after the swap");
        }
    }

    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public async Task A_push_cut_off_at_the_swap_is_settled_by_the_next_call(bool afterSwap)
    {
        var target = s3.Fresh();
        using var a = new Region();
        Remotes.Add(a.Store, "origin", target);
        using (var c = new RemoteClient(a.Store, "origin")) await c.PushMainAsync();
        a.Commit(w => w.WriteAllBytes("/s1", "same\n"u8));
        using (var crashing = new RemoteClient(a.Store, "origin", new CrashAtSwap(new S3ObjectStore(target), afterSwap), null))
            await Assert.ThrowsAsync<IOException>(() => crashing.PushMainAsync());
        Assert.True(a.Store.Settings.ContainsKey("remote.origin.main.pushing"), "the push's intent was not written before the swap");
        using (var c = new RemoteClient(a.Store, "origin"))
        {
            var next = await c.PushMainAsync();
            // After the swap the remote already has version 2: nothing is left to send. Before it, this push sends it.
            Assert.Equal(afterSwap ? null : "main", next.Ref);
            Assert.Equal(2, next.RemoteVersion);
        }
        Assert.False(a.Store.Settings.ContainsKey("remote.origin.main.pushing"));
        Assert.Equal(a.Store.CurrentVersion, Remotes.List(a.Store).Single().SyncedVersion);
        string path = Path.Combine("/dev/shm", $"daxfs-remote-clone-{Guid.NewGuid():N}.daxfs");
        await RemoteClient.CloneAsync(target, path, "origin", null, 64L << 20);
        using var b = new Region(path);
        Assert.Equal(Trees.Snapshot(a.Store.Main), Trees.Snapshot(b.Store.Main));
    }
}
