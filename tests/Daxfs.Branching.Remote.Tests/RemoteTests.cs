using System.Text;

namespace Daxfs.Branching.Remote.Tests;

[Collection("s3")]
public sealed class RemoteTests(S3Fixture s3)
{
    private static RemoteClient Client(Region r, string remote = "origin") => new(r.Store, remote);

    private static string Clone(RemoteTarget target, string? reference = null)
    {
        string path = Path.Combine("/dev/shm", $"daxfs-remote-clone-{Guid.NewGuid():N}.daxfs");
        RemoteClient.CloneAsync(target, path, "origin", reference, 256L << 20).GetAwaiter().GetResult();
        return path;
    }

    [Fact]
    public async Task A_pushes_B_clones_forks_and_pushes_a_branch_A_pulls_and_commits_it()
    {
        var target = s3.Fresh();
        using var a = new Region();
        Remotes.Add(a.Store, "origin", target);
        using (var c = Client(a))
        {
            var first = await c.PushMainAsync();
            Assert.Equal("main", first.Ref);
            Assert.Equal(1, first.RemoteVersion);
            Assert.True(first.ObjectsUploaded >= 8, $"uploaded {first.ObjectsUploaded}");
        }
        using var b = new Region(Clone(target));
        Assert.Equal(Trees.Snapshot(a.Store.Main), Trees.Snapshot(b.Store.Main));
        Assert.Equal("if-match-unquoted", Remotes.List(a.Store).Single().RefUpdates); // Ceph RGW 16 honours If-Match only unquoted

        var fix = b.Store.Main.Fork("fix");
        fix.WriteAllBytes("/src/a.c", "int a = 42;\n"u8);
        fix.Delete("/src/b.c");
        fix.CreateDirectory("/docs");
        fix.WriteAllBytes("/docs/new.md", "new\n"u8);
        using (var c = Client(b))
            Assert.Equal("branches/fix", (await c.PushBranchAsync("fix")).Ref);

        using (var c = Client(a))
        {
            var pulled = await c.PullAsync(branches: ["fix"]);
            Assert.Equal(["fix"], pulled.Branches);
        }
        var got = a.Store.GetBranch("fix");
        Assert.Equal(Trees.Snapshot(fix), Trees.Snapshot(got));
        got.Commit("fix from B");
        Assert.Equal("int a = 42;\n", Encoding.UTF8.GetString(a.Store.Main.ReadAllBytes("/src/a.c")));
        Assert.False(a.Store.Main.Exists("/src/b.c"));

        using (var c = Client(a))
            Assert.Equal(2, (await c.PushMainAsync()).RemoteVersion);
        using (var c = Client(b))
        {
            var report = await c.PullAsync();
            Assert.Equal(1, report.Versions);
        }
        Assert.Equal(Trees.Snapshot(a.Store.Main), Trees.Snapshot(b.Store.Main));
    }

    [Fact]
    public async Task Two_regions_racing_to_push_main_one_wins_the_other_is_refused_then_succeeds_after_rebase()
    {
        var target = s3.Fresh();
        using var a = new Region();
        Remotes.Add(a.Store, "origin", target);
        using (var c = Client(a)) await c.PushMainAsync();
        using var b = new Region(Clone(target));
        a.Commit(w => w.WriteAllBytes("/from-a.txt", "A\n"u8), "a's change");
        b.Commit(w => w.WriteAllBytes("/src/from-b.txt", "B\n"u8), "b's change");

        using var ca = Client(a);
        using var cb = Client(b);
        var results = await Task.WhenAll(Try(ca.PushMainAsync()), Try(cb.PushMainAsync()));
        Assert.Equal(1, results.Count(r => r is null));
        var refused = Assert.Single(results, r => r is not null)!;
        Assert.Equal(RemoteError.Behind, refused.Error);

        var (winner, loser, loserClient) = results[0] is null ? (a, b, cb) : (b, a, ca);
        var plain = await Assert.ThrowsAsync<RemoteException>(() => loserClient.PullAsync());
        Assert.Equal(RemoteError.Behind, plain.Error);
        Assert.Contains("--rebase", plain.Message);
        await loserClient.PullAsync(rebase: true);
        var pushed = await loserClient.PushMainAsync();
        Assert.Equal(3, pushed.RemoteVersion);
        using (var cw = Client(winner)) await cw.PullAsync();
        Assert.Equal(Trees.Snapshot(winner.Store.Main), Trees.Snapshot(loser.Store.Main));
        Assert.True(winner.Store.Main.Exists("/from-a.txt") && winner.Store.Main.Exists("/src/from-b.txt"));

        static async Task<RemoteException?> Try(Task t)
        {
            try { await t; return null; }
            catch (RemoteException e) { return e; }
        }
    }

    [Fact]
    public async Task A_rebase_over_the_same_path_is_a_conflict_and_changes_nothing()
    {
        var target = s3.Fresh();
        using var a = new Region();
        Remotes.Add(a.Store, "origin", target);
        using (var c = Client(a)) await c.PushMainAsync();
        using var b = new Region(Clone(target));
        a.Commit(w => w.WriteAllBytes("/README.md", "A\n"u8));
        b.Commit(w => w.WriteAllBytes("/README.md", "B\n"u8));
        using (var c = Client(a)) await c.PushMainAsync();
        long before = b.Store.CurrentVersion;
        using var cb = Client(b);
        var e = await Assert.ThrowsAsync<RemoteException>(() => cb.PullAsync(rebase: true));
        Assert.Equal(RemoteError.Conflict, e.Error);
        Assert.Contains("/README.md", e.Message);
        Assert.Equal(before, b.Store.CurrentVersion);
        Assert.Equal("B\n", Encoding.UTF8.GetString(b.Store.Main.ReadAllBytes("/README.md")));
    }

    [Fact]
    public async Task An_unchanged_region_pushes_nothing_and_a_small_change_uploads_only_its_chunk()
    {
        var target = s3.Fresh();
        using var a = new Region(b =>
        {
            for (int i = 0; i < 40; i++) b.AddFile($"/d{i % 4}/f{i}.bin", Region.Bytes(200_000, i));
            b.AddFile("/large.bin", Region.Bytes(8 << 20, 99));
        });
        Remotes.Add(a.Store, "origin", target);
        using (var c = Client(a)) await c.PushMainAsync();
        using (var c = Client(a))
        {
            var again = await c.PushMainAsync();
            Assert.Null(again.Ref);
            Assert.Equal(0, again.ObjectsUploaded);
        }
        a.Commit(w => w.Write("/large.bin", 3 << 20, Region.Bytes(1 << 20, 5), create: false));
        using (var c = Client(a))
        {
            var small = await c.PushMainAsync();
            // Two 512 KiB chunks, the root directory and the commit: what changed, not the 16 MiB tree.
            Assert.Equal(4, small.ObjectsUploaded);
            Assert.InRange(small.BytesUploaded, 1 << 20, (1 << 20) + 64 * 1024);
        }
        using var b = new Region(Clone(target));
        Assert.Equal(Trees.Snapshot(a.Store.Main), Trees.Snapshot(b.Store.Main));
        // The clone's log holds the content once, not a block per chunk half empty.
        long content = 40 * 200_000 + (8 << 20);
        long used = b.Store.Usage.ArenaBytes - b.Store.Usage.ArenaFreeBytes;
        Assert.True(used < content * 11 / 10 + (1 << 20), $"the clone uses {used} bytes of arena for {content} bytes of content");
    }

    [Fact]
    public async Task Every_pulled_version_reads_byte_identical_to_its_source()
    {
        var target = s3.Fresh();
        using var a = new Region();
        Remotes.Add(a.Store, "origin", target);
        using (var c = Client(a)) await c.PushMainAsync();
        using var b = new Region(Clone(target));
        long first = a.Store.CurrentVersion;
        var rng = new Random(3);
        for (int i = 0; i < 6; i++)
        {
            a.Commit(w =>
            {
                w.WriteAllBytes($"/v{i}.txt", Encoding.UTF8.GetBytes($"version {i}\n"));
                w.Write("/big.bin", rng.Next(0, 3 << 20), Region.Bytes(5000, i), create: false);
                if (i == 2) w.Rename("/src", "/source");
                if (i == 3) w.Chmod("/README.md", 0x1ED);
                if (i == 4) w.Truncate("/big.bin", 1 << 20);
                if (i == 5) { w.Delete("/v1.txt"); w.CreateSymlink("/source/l2", "../v0.txt"); }
            }, $"v{i}");
            if (i % 2 == 1)
                using (var c = Client(a)) await c.PushMainAsync();
        }
        using (var c = Client(b))
            Assert.Equal(6, (await c.PullAsync()).Versions);
        long bHead = b.Store.CurrentVersion;
        for (int k = 0; k < 6; k++)
            Assert.Equal(Trees.Snapshot(a.Store.AtVersion(first + 1 + k)), Trees.Snapshot(b.Store.AtVersion(bHead - 5 + k)));
        Assert.Equal("v5", b.Store.Versions[^1].Message);
    }

    [Fact]
    public async Task Tags_travel_and_a_clone_can_start_from_a_tag_or_a_version()
    {
        var target = s3.Fresh();
        using var a = new Region();
        Remotes.Add(a.Store, "origin", target);
        a.Commit(w => w.WriteAllBytes("/one.txt", "1\n"u8));
        using (var c = Client(a)) await c.PushMainAsync();
        a.Store.Tag("release-1", a.Store.CurrentVersion);
        var atTag = Trees.Snapshot(a.Store.Main);
        a.Commit(w => w.WriteAllBytes("/two.txt", "2\n"u8));
        using (var c = Client(a))
        {
            await c.PushMainAsync();
            Assert.Equal("tags/release-1", (await c.PushTagAsync("release-1")).Ref);
        }
        using var byTag = new Region(Clone(target, "release-1"));
        Assert.Equal(atTag, Trees.Snapshot(byTag.Store.Main));
        using var byVersion = new Region(Clone(target, "1"));
        Assert.Equal(atTag, Trees.Snapshot(byVersion.Store.Main));
        using var latest = new Region(Clone(target));
        using (var c = Client(latest)) await c.PullAsync();
        Assert.False(latest.Store.Tags.ContainsKey("release-1")); // it names a version the clone never had
        Assert.Equal(1, byVersion.Store.Tags["release-1"]); // the clone made the tag of the version it holds
        byVersion.Store.DeleteTag("release-1");
        byVersion.Store.Tag("release-1", 0); // a local tag of the same name, on another version: kept, and the clash said
        using (var c = Client(byVersion))
        {
            var pulled = await c.PullAsync();
            Assert.Equal(["release-1 (version 0 here, version 1 on origin)"], pulled.TagClashes);
        }
        Assert.Equal(0, byVersion.Store.Tags["release-1"]);
    }

    [Fact]
    public async Task A_corrupted_object_is_a_clear_error_and_nothing_of_it_shows()
    {
        var target = s3.Fresh();
        using var a = new Region();
        Remotes.Add(a.Store, "origin", target);
        using (var c = Client(a)) await c.PushMainAsync();
        using var b = new Region(Clone(target));
        a.Commit(w => w.WriteAllBytes("/poisoned.bin", Region.Bytes(300_000, 1)));
        using (var c = Client(a)) await c.PushMainAsync();
        // Flip one byte of the new chunk in the bucket.
        string hash = RemoteFormat.Hash(a.Store.Main.ReadAllBytes("/poisoned.bin"));
        string key = $"{target.Url.Prefix}/{RemoteFormat.ObjectKey(hash)}";
        var bytes = a.Store.Main.ReadAllBytes("/poisoned.bin");
        bytes[1234] ^= 0x40;
        await s3.Client.PutObjectAsync(new Amazon.S3.Model.PutObjectRequest { BucketName = target.Url.Bucket, Key = key, InputStream = new MemoryStream(bytes) });
        long before = b.Store.CurrentVersion;
        int branches = b.Store.ListBranches().Count;
        using var cb = Client(b);
        var e = await Assert.ThrowsAsync<RemoteException>(() => cb.PullAsync());
        Assert.Equal(RemoteError.Damaged, e.Error);
        Assert.Contains(hash, e.Message);
        Assert.Contains("/poisoned.bin", e.Message);
        Assert.Equal(before, b.Store.CurrentVersion);
        Assert.False(b.Store.Main.Exists("/poisoned.bin"));
        Assert.Equal(branches, b.Store.ListBranches().Count); // the pull's work branch went
    }

    [Fact]
    public async Task Wrong_credentials_and_a_missing_bucket_are_clear_errors()
    {
        using var a = new Region();
        Remotes.Add(a.Store, "nobucket", new RemoteTarget(RemoteUrl.Parse("s3://no-such-bucket-daxfs/x"), s3.Endpoint, "us-east-1"));
        using (var c = Client(a, "nobucket"))
        {
            var e = await Assert.ThrowsAsync<RemoteException>(() => c.PushMainAsync());
            Assert.Equal(RemoteError.NoBucket, e.Error);
            Assert.Contains("no-such-bucket-daxfs", e.Message);
        }
        Remotes.Add(a.Store, "origin", s3.Fresh());
        string? key = Environment.GetEnvironmentVariable("AWS_SECRET_ACCESS_KEY");
        Environment.SetEnvironmentVariable("AWS_SECRET_ACCESS_KEY", "wrong-secret");
        try
        {
            using var c = Client(a);
            var e = await Assert.ThrowsAsync<RemoteException>(() => c.PushMainAsync());
            Assert.True(e.Error == RemoteError.Access, $"{e.Error}: {e.Message}");
            Assert.Contains("credentials", e.Message);
        }
        finally
        {
            Environment.SetEnvironmentVariable("AWS_SECRET_ACCESS_KEY", key);
        }
    }

    [Fact]
    public void Remotes_are_kept_in_the_region_and_survive_reopening()
    {
        using var a = new Region();
        var target = new RemoteTarget(RemoteUrl.Parse("s3://bucket-one/some/prefix/"), "http://127.0.0.1:1", "eu-west-1");
        Remotes.Add(a.Store, "origin", target);
        Assert.Throws<DaxfsException>(() => Remotes.Add(a.Store, "origin", target));
        Assert.Throws<ArgumentException>(() => Remotes.Add(a.Store, "bad name", target));
        Assert.Throws<ArgumentException>(() => RemoteUrl.Parse("s3://Bad_Bucket/x"));
        Assert.Throws<ArgumentException>(() => RemoteUrl.Parse("s3://bucket/../x"));
        Assert.Throws<ArgumentException>(() => RemoteUrl.Parse("http://bucket/x"));
        a.Reopen();
        var r = Assert.Single(Remotes.List(a.Store));
        Assert.Equal("s3://bucket-one/some/prefix", r.Target.Url.ToString());
        Assert.Equal("eu-west-1", r.Target.Region);
        Assert.Null(r.SyncedVersion);
        Remotes.Remove(a.Store, "origin");
        a.Reopen();
        Assert.Empty(Remotes.List(a.Store));
        Assert.Empty(a.Store.Settings);
    }
}
