namespace Daxfs.Branching.Remote.Tests;

/// <summary>A remote is not trusted: what it serves is checked before any of it lands in a region.</summary>
[Collection("s3")]
public sealed class HostileRemoteTests(S3Fixture s3)
{
    /// <summary>Publishes a main made by hand: one commit over <paramref name="tree"/>, with the chunks given.</summary>
    private static async Task<RemoteTarget> Forge(S3Fixture s3, TreeObject tree, params byte[][] chunks)
    {
        var target = s3.Fresh();
        using var store = new S3ObjectStore(target);
        foreach (var c in chunks) await store.PutAsync(RemoteFormat.ObjectKey(RemoteFormat.Hash(c)), c, default);
        var t = RemoteFormat.Encode(tree);
        await store.PutAsync(RemoteFormat.ObjectKey(RemoteFormat.Hash(t)), t, default);
        var commit = RemoteFormat.Encode(new CommitObject { Version = 1, Tree = RemoteFormat.Hash(t), Bytes = 10 });
        await store.PutAsync(RemoteFormat.ObjectKey(RemoteFormat.Hash(commit)), commit, default);
        await store.PutAsync(RemoteFormat.MainRef, RemoteFormat.Encode(new RefObject { Commit = RemoteFormat.Hash(commit), Version = 1 }), default);
        return target;
    }

    private static TreeEntry File(string name, byte[] content, uint mode = 0x1A4) =>
        new() { Name = name, Kind = "f", Mode = mode, Size = content.Length, Chunks = content.Length == 0 ? [] : [RemoteFormat.Hash(content)] };

    private static string NewPath() => Path.Combine("/dev/shm", $"daxfs-hostile-{Guid.NewGuid():N}.daxfs");

    [Fact]
    public async Task A_setuid_program_from_a_remote_lands_without_its_setuid_bit()
    {
        var content = "#!/bin/sh\nid\n"u8.ToArray();
        var target = await Forge(s3, new TreeObject { Entries = [File("run", content, 0xDED)] }, content); // 06755
        string path = NewPath();
        await RemoteClient.CloneAsync(target, path, "origin", null, 64L << 20);
        using var r = new Region(path);
        Assert.Equal(0x1EDu, r.Store.Main.Stat("/run").Mode & 0xFFFu); // 0755
        Assert.Equal(content, r.Store.Main.ReadAllBytes("/run"));
    }

    [Theory]
    [InlineData("..")]
    [InlineData("a/b")]
    [InlineData("")]
    public async Task A_name_that_is_not_one_path_component_is_damage_and_no_region_is_left(string name)
    {
        var content = "x"u8.ToArray();
        var target = await Forge(s3, new TreeObject { Entries = [File(name, content)] }, content);
        string path = NewPath();
        var e = await Assert.ThrowsAsync<RemoteException>(() => RemoteClient.CloneAsync(target, path, "origin", null, 64L << 20));
        Assert.Equal(RemoteError.Damaged, e.Error);
        Assert.Contains("one path component", e.Message);
        Assert.False(System.IO.File.Exists(path));
        Assert.Empty(Directory.EnumerateFiles("/dev/shm", $".{Path.GetFileName(path)}.building-*"));
    }

    [Fact]
    public async Task Chunks_that_do_not_add_up_to_the_size_and_missing_objects_are_refused()
    {
        var content = "abc"u8.ToArray();
        var lying = File("f", content);
        lying.Size = 5L << 20; // five chunks' worth, one chunk listed
        var target = await Forge(s3, new TreeObject { Entries = [lying] }, content);
        var e = await Assert.ThrowsAsync<RemoteException>(() => RemoteClient.CloneAsync(target, NewPath(), "origin", null, 64L << 20));
        Assert.Contains("1 chunks for 5242880 bytes", e.Message);

        var missing = await Forge(s3, new TreeObject { Entries = [File("g", content)] }); // the chunk was never stored
        string path = NewPath();
        var m = await Assert.ThrowsAsync<RemoteException>(() => RemoteClient.CloneAsync(missing, path, "origin", null, 64L << 20));
        Assert.Equal(RemoteError.NotFound, m.Error);
        Assert.Contains("/g", m.Message);
        Assert.False(System.IO.File.Exists(path));
    }

    [Fact]
    public async Task A_ref_or_commit_that_is_not_what_it_claims_is_damage()
    {
        var target = s3.Fresh();
        using (var store = new S3ObjectStore(target))
            await store.PutAsync(RemoteFormat.MainRef, "{\"commit\":\"not-a-hash\"}"u8.ToArray(), default);
        var e = await Assert.ThrowsAsync<RemoteException>(() => RemoteClient.CloneAsync(target, NewPath(), "origin", null, 64L << 20));
        Assert.Equal(RemoteError.Damaged, e.Error);

        var other = s3.Fresh();
        using (var store = new S3ObjectStore(other))
        {
            var fake = "{\"type\":\"commit\"}"u8.ToArray();
            string claimed = new('a', 64);
            await store.PutAsync(RemoteFormat.ObjectKey(claimed), fake, default); // stored under a name that is not its hash
            await store.PutAsync(RemoteFormat.MainRef, RemoteFormat.Encode(new RefObject { Commit = claimed, Version = 1 }), default);
        }
        var d = await Assert.ThrowsAsync<RemoteException>(() => RemoteClient.CloneAsync(other, NewPath(), "origin", null, 64L << 20));
        Assert.Equal(RemoteError.Damaged, d.Error);
        Assert.Contains("do not match its SHA-256", d.Message);
    }

    [Theory]
    [InlineData(1)]
    [InlineData(5)]
    public async Task A_packed_file_whose_pack_holds_other_bytes_is_damage(int files)
    {
        // Files point into a pack at offsets that hold other bytes: fetched whole (many files) or by range (few), each
        // file is checked against its own hash.
        var contents = Enumerable.Range(0, files).Select(i => Region.Bytes(1000, i)).ToArray();
        var pack = contents.SelectMany(c => c).ToArray();
        string packHash = RemoteFormat.Hash(pack);
        var entries = contents.Select((c, i) => new TreeEntry
        {
            Name = $"f{i}", Kind = "f", Mode = 0x1A4, Size = c.Length, Chunks = [RemoteFormat.Hash(c)], Pack = packHash,
            PackOffset = i == files - 1 ? 1 : i * 1000L, // the last one is off by a byte
        }).ToList();
        var target = await Forge(s3, new TreeObject { Entries = entries }, pack);
        string path = NewPath();
        var e = await Assert.ThrowsAsync<RemoteException>(() => RemoteClient.CloneAsync(target, path, "origin", null, 64L << 20));
        Assert.Equal(RemoteError.Damaged, e.Error);
        Assert.Contains($"/f{files - 1}", e.Message);
        Assert.False(System.IO.File.Exists(path));
    }

    [Fact]
    public async Task A_device_node_or_a_version_that_does_not_follow_is_refused()
    {
        var device = await Forge(s3, new TreeObject { Entries = [new TreeEntry { Name = "mem", Kind = "c", Mode = 0x21B6, Rdev = 257 }] });
        string path = NewPath();
        var e = await Assert.ThrowsAsync<RemoteException>(() => RemoteClient.CloneAsync(device, path, "origin", null, 64L << 20));
        Assert.Contains("/mem: a character device node", e.Message);
        Assert.False(System.IO.File.Exists(path));

        // A commit claiming a version that does not follow its parent's (here the largest long, which would overflow).
        var target = s3.Fresh();
        using var a = new Region();
        Remotes.Add(a.Store, "origin", target);
        using (var c = new RemoteClient(a.Store, "origin")) await c.PushMainAsync();
        using var b = new Region(await CloneTo(target));
        using (var store = new S3ObjectStore(target))
        {
            var tip = RemoteFormat.DecodeRef((await store.GetRefAsync(RemoteFormat.MainRef, default))!.Value.Data, "main");
            var tree = RemoteFormat.DecodeCommit((await store.GetAsync(RemoteFormat.ObjectKey(tip.Commit), 1 << 20, default))!, tip.Commit).Tree;
            var forged = RemoteFormat.Encode(new CommitObject { Parent = tip.Commit, Version = long.MaxValue, Tree = tree });
            await store.PutAsync(RemoteFormat.ObjectKey(RemoteFormat.Hash(forged)), forged, default);
            await store.PutAsync(RemoteFormat.MainRef, RemoteFormat.Encode(new RefObject { Commit = RemoteFormat.Hash(forged), Version = 2 }), default);
        }
        long before = b.Store.CurrentVersion;
        using (var c = new RemoteClient(b.Store, "origin"))
        {
            var d = await Assert.ThrowsAsync<RemoteException>(() => c.PullAsync());
            Assert.Equal(RemoteError.Damaged, d.Error);
        }
        Assert.Equal(before, b.Store.CurrentVersion);
    }

    private static async Task<string> CloneTo(RemoteTarget target)
    {
        string path = NewPath();
        await RemoteClient.CloneAsync(target, path, "origin", null, 64L << 20);
        return path;
    }
}
