using System.Buffers.Binary;
using System.Text;
using Daxfs.Branching;
using Daxfs.Branching.Index;

namespace Daxfs.Branching.Tests;

/// <summary>Compaction: history folded into a new base image, retired versions, reclaimed space, pins and leases.</summary>
public class CompactionTests
{
    /// <summary>Everything a reader can see of a tree: kinds, attributes (times and inode numbers included) and contents.</summary>
    internal static string Tree(Branch b)
    {
        var sb = new StringBuilder();
        ReopenAndRecoveryTests.Dump(b, "/", sb, attributes: true);
        return sb.ToString();
    }

    private static VersionInfo Change(Store s, string name, Action<Branch> change)
    {
        var b = s.Main.Fork(name);
        change(b);
        return b.Commit(name);
    }

    /// <summary>Six versions touching every kind of change, with a big file rewritten three times.</summary>
    private static void History(Store s)
    {
        Change(s, "v1", b =>
        {
            b.WriteAllBytes("big.bin", TempRegion.Pattern(1 << 20, 1));
            b.WriteAllBytes("src/new.txt", "new\n"u8);
            b.CreateDirectory("deep/er/est", parents: true);
        });
        Change(s, "v2", b =>
        {
            b.WriteAllBytes("big.bin", TempRegion.Pattern(1 << 20, 2));
            b.Write("sparse.bin", 3 << 20, "far out"u8);           // a 3 MiB hole, then bytes
            b.Write("sparse.bin", 4096, "near"u8);
            b.CreateSymlink("deep/link", "../src/new.txt");
            b.Delete("src/b.txt");
        });
        Change(s, "v3", b =>
        {
            b.WriteAllBytes("big.bin", TempRegion.Pattern(1 << 20, 3));
            b.Rename("src/a.txt", "deep/er/a.txt");
            b.Chmod("README.md", 0x180);
            b.Chown("src/new.txt", 1000, 1001);
            b.Truncate("src/big.bin", 70_000);
        });
        Change(s, "v4", b =>
        {
            b.Write("big.bin", 100, "patched"u8);
            b.Truncate("sparse.bin", 5000);                        // the tail extent goes, the hole stays
            b.Truncate("sparse.bin", 2 << 20);                     // a hole grows at the end
        });
        Change(s, "v5", b =>
        {
            b.Delete("deep/er/est");
            b.SetModifiedTime("README.md", new DateTimeOffset(2020, 1, 2, 3, 4, 5, TimeSpan.Zero));
            b.WriteAllBytes("empty/now-full", "x"u8);
        });
        Change(s, "v6", b => b.Rename("deep", "shallow"));
    }

    [Fact]
    public void Compaction_folds_old_versions_and_every_kept_version_reads_exactly_as_before()
    {
        using var r = new TempRegion(capacity: 128L << 20);
        var s = r.Store;
        History(s);
        var before = Enumerable.Range(0, 7).Select(v => Tree(s.AtVersion(v))).ToArray();
        long freeBefore = s.Usage.ArenaFreeBytes;
        var handle = s.AtVersion(5).OpenFile("big.bin");          // opened before: must follow the version to its new place
        var oldHandle = s.AtVersion(2).OpenFile("big.bin");
        byte[] big5 = s.AtVersion(5).ReadAllBytes("big.bin");

        var report = s.Compact(new CompactOptions { Keep = 2 });
        Assert.Equal(big5, handle.Read().ToArray());
        Assert.Throws<VersionFoldedException>(() => oldHandle.Read());

        Assert.Equal(4, report.FoldedVersion);
        Assert.Equal(4, report.RetiredVersions);
        Assert.Null(report.Reason);
        Assert.True(report.ReleasedBytes >= 3 << 20, $"released {report.ReleasedBytes}");
        Assert.True(report.CopiedBytes < 3 << 20, $"copied {report.CopiedBytes}: holes must not be copied");
        Assert.True(s.Usage.ArenaFreeBytes > freeBefore + (1 << 20), $"free {freeBefore} -> {s.Usage.ArenaFreeBytes}");
        for (int round = 0; round < 2; round++)
        {
            var store = round == 0 ? s : r.Reopen();
            Assert.Equal(4, store.OldestVersion);
            for (int v = 4; v <= 6; v++)
                Assert.Equal(before[v], Tree(store.AtVersion(v)));
            Assert.Equal(before[6], Tree(store.Main));
            var ex = Assert.Throws<VersionFoldedException>(() => store.AtVersion(3));
            Assert.Equal(4, ex.Oldest);
            Assert.Throws<VersionFoldedException>(() => store.Tag("old", 2));
            var versions = store.Versions;
            Assert.Equal(6, versions.Count);
            Assert.Equal([true, true, true, false, false, false], versions.Select(v => v.Folded));
            Assert.Equal("v2", versions[1].Message);
            var verify = store.Verify();
            Assert.Equal(verify.ReachableBytes, verify.ArenaUsedBytes);
            Assert.Throws<VersionFoldedException>(() => store.AtVersion(4).Diff()); // the version before 4 is gone
        }
    }

    [Fact]
    public void Branches_live_across_a_compaction_and_new_inodes_never_reuse_numbers()
    {
        using var r = new TempRegion();
        var s = r.Store;
        History(s);
        var work = s.Main.Fork("work");
        work.WriteAllBytes("work.txt", "before"u8);
        var child = work.Fork("child");
        child.WriteAllBytes("child.txt", "in child"u8);
        long maxIno = Inodes(s.Main).Max();

        var report = s.Compact();
        Assert.Equal(6, report.FoldedVersion);

        Assert.Equal("in child", Encoding.UTF8.GetString(child.ReadAllBytes("child.txt")));
        Assert.Equal("before", Encoding.UTF8.GetString(child.ReadAllBytes("work.txt")));
        child.WriteAllBytes("after.txt", "after"u8);
        Assert.True(child.Stat("after.txt").Inode > maxIno);
        var v7 = child.Commit("after compaction");
        Assert.Equal(7, v7.Sequence);
        Assert.Equal("after", Encoding.UTF8.GetString(s.Main.ReadAllBytes("after.txt")));
        var reopened = r.Reopen();
        Assert.Equal("in child", Encoding.UTF8.GetString(reopened.Main.ReadAllBytes("child.txt")));
        Assert.Equal(6, reopened.OldestVersion);
        Assert.Equal(["after.txt", "child.txt", "work.txt"], reopened.Main.Diff().Select(c => c.Path.TrimStart('/')).Order(StringComparer.Ordinal));
        var verify = reopened.Verify();
        Assert.Equal(verify.ReachableBytes, verify.ArenaUsedBytes);
    }

    private static IEnumerable<long> Inodes(Branch b) => Walk(b, "/").Select(p => b.Stat(p).Inode);

    private static IEnumerable<string> Walk(Branch b, string dir)
    {
        foreach (var e in b.List(dir))
        {
            string p = dir == "/" ? "/" + e.Name : dir + "/" + e.Name;
            yield return p;
            if (e.Kind == NodeKind.Directory)
                foreach (var q in Walk(b, p)) yield return q;
        }
    }

    [Fact]
    public void Tags_and_forks_of_past_versions_pin_their_version_and_a_second_compaction_frees_the_first_image()
    {
        using var r = new TempRegion(capacity: 128L << 20);
        var s = r.Store;
        History(s);
        s.Tag("release", 2);
        var replay = s.AtVersion(3).Fork("replay");

        var first = s.Compact();
        Assert.Equal(2, first.FoldedVersion);
        Assert.Equal("v2", s.Versions[1].Message);
        Assert.Equal(2, s.Tags["release"]);
        Assert.NotNull(s.Resolve("release"));

        s.DeleteTag("release");
        var second = s.Compact();
        Assert.Equal(3, second.FoldedVersion);               // the fork of version 3 still pins it
        Assert.True(second.ReleasedBytes >= first.BaseBytes, $"released {second.ReleasedBytes}, first image {first.BaseBytes}");
        Assert.Throws<BranchStaleBaseException>(() => replay.Commit());

        replay.Discard();
        string main = Tree(s.Main);
        var third = s.Compact();
        Assert.Equal(6, third.FoldedVersion);
        Assert.Equal(main, Tree(s.Main));
        var none = s.Compact();
        Assert.Equal(-1, none.FoldedVersion);
        Assert.Contains("nothing to fold", none.Reason);
        var verify = r.Reopen().Verify();
        Assert.Equal(verify.ReachableBytes, verify.ArenaUsedBytes);
    }

    [Fact]
    public void Another_store_follows_a_compaction_and_its_lease_keeps_old_bytes_until_it_ends()
    {
        using var r = new TempRegion(capacity: 96L << 20);
        var s = r.Store;
        Change(s, "v1", b => b.WriteAllBytes("data.bin", TempRegion.Pattern(4 << 20, 11)));
        Change(s, "v2", b => b.WriteAllBytes("data.bin", TempRegion.Pattern(4 << 20, 12)));
        using var other = Store.Open(r.RegionPath);
        var v1 = other.AtVersion(1);
        var expected = TempRegion.Pattern(4 << 20, 11);
        var lease = other.BeginRead();
        var spans = v1.Read("data.bin");                      // spans into version 1's log

        s.Compact();                                          // folds version 1 (and 2) away
        for (int i = 0; i < 12; i++)                          // churn: fill the arena with new logs
            Change(s, $"churn{i}", b => b.WriteAllBytes("churn.bin", TempRegion.Pattern(4 << 20, 100 + i)));
        Assert.True(spans.ToArray().AsSpan().SequenceEqual(expected), "a leased span changed under its reader");
        lease.Dispose();

        Assert.Throws<VersionFoldedException>(() => v1.ReadAllBytes("data.bin"));
        Assert.Throws<VersionFoldedException>(() => other.AtVersion(1));
        Assert.Equal(TempRegion.Pattern(4 << 20, 12), other.AtVersion(2).ReadAllBytes("data.bin"));
        Assert.Equal(2, other.OldestVersion);
        Assert.Equal(Tree(s.Main), Tree(other.Main));
    }

    [Fact]
    public void Damage_to_a_compacted_base_image_is_a_typed_error_naming_it()
    {
        using var r = new TempRegion();
        History(r.Store);
        var report = r.Store.Compact();
        r.Store.Dispose();
        byte[] bytes = File.ReadAllBytes(r.RegionPath);
        long image = FindCompactedImage(bytes);

        byte[] header = (byte[])bytes.Clone();
        header[image + 8] ^= 1;                               // the inode count
        File.WriteAllBytes(r.RegionPath, header);
        var ex = Assert.Throws<CorruptionException>(() => Store.Open(r.RegionPath));
        Assert.Equal("base header", ex.Structure);

        byte[] data = (byte[])bytes.Clone();
        long dataOffset = BinaryPrimitives.ReadInt64LittleEndian(data.AsSpan((int)image + 56));
        data[dataOffset + 10] ^= 0x55;                        // file bytes under a chunk checksum
        File.WriteAllBytes(r.RegionPath, data);
        using (var s = Store.Open(r.RegionPath))
        {
            var bad = Assert.Throws<CorruptionException>(() => s.Verify());
            Assert.StartsWith("base data chunk", bad.Structure);
        }
        Assert.True(report.BaseBytes > 0);
        r.Reopen(); // the TempRegion closes what it holds
    }

    /// <summary>The compacted image: a base header in the arena (past the superblock's own image).</summary>
    private static long FindCompactedImage(byte[] region)
    {
        long arena = BinaryPrimitives.ReadInt64LittleEndian(region.AsSpan(80));
        for (long at = arena; at < region.Length; at += 4096)
            if (BinaryPrimitives.ReadUInt64LittleEndian(region.AsSpan((int)at)) == 0x3145_5341_4258_4144)
                return at;
        throw new InvalidOperationException("no compacted image found");
    }
}
