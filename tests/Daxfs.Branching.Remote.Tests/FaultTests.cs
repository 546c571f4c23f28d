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
}
