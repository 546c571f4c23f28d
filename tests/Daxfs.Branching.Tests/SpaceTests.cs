using System.Text;
using Daxfs.Branching;
using Xunit;

namespace Daxfs.Branching.Tests;

/// <summary>Space: compaction gives back the image it replaced, regions grow in place, a full region says what to do.</summary>
public class SpaceTests
{
    private static byte[] Filled(int length, byte value) => TempRegion.Filled(length, value);

    private static long Used(Store s) => TempRegion.ArenaUsed(s);

    [Fact]
    public void Compaction_gives_back_the_original_base_image_so_arena_use_follows_live_data()
    {
        // A base image of 24 MiB; then every file of it is replaced by a commit: the image is all dead history.
        var image = new BaseImageBuilder();
        for (int i = 0; i < 24; i++)
            image.AddFile($"f{i}", TempRegion.Pattern(1 << 20, i));
        using var r = new TempRegion(image, capacity: 256L << 20);
        var b = r.Store.Main.Fork("rewrite");
        for (int i = 0; i < 24; i++)
            b.WriteAllBytes($"f{i}", Filled(1 << 20, (byte)i));
        b.Commit("all new");
        long arena = r.Store.Usage.ArenaBytes;
        var report = r.Store.Compact();
        Assert.Equal(1, report.FoldedVersion);
        // The arena took in the original image's pages: it grew by about 24 MiB, and they are free.
        Assert.True(r.Store.Usage.ArenaBytes >= arena + (24L << 20), $"arena {arena} -> {r.Store.Usage.ArenaBytes}");
        long live = 24L << 20;
        long used = Used(r.Store);
        Assert.True(used <= live + live / 10 + (1L << 20), $"arena use {used} for {live} live bytes after compaction");
        Assert.Equal(Filled(1 << 20, 7), r.Store.Main.ReadAllBytes("f7"));
        Assert.Equal(24 + 1, r.Store.Usage.BaseInodes); // the new image: 24 files and the root

        // The freed pages hold new data; the region still opens (the original image is never read again).
        var c = r.Store.Main.Fork("after");
        for (int i = 0; i < 30; i++)
            c.WriteAllBytes($"g{i}", Filled(1 << 20, (byte)(100 + i)));
        var s = r.Reopen();
        Assert.Equal(Filled(1 << 20, 129), s.GetBranch("after").ReadAllBytes("g29"));
        Assert.Equal(Filled(1 << 20, 7), s.Main.ReadAllBytes("f7"));
        var v = s.Verify();
        Assert.Empty(v.Damage);
        Assert.Equal(v.ReachableBytes, v.ArenaUsedBytes);
        // A second compaction gives back the first compacted image as before.
        s.GetBranch("after").Commit("more");
        Assert.True(s.Compact().ReleasedBytes >= 24L << 20);
        Assert.Equal(Filled(1 << 20, 7), s.Main.ReadAllBytes("f7"));
    }

    [Fact]
    public void A_region_grows_in_place_and_every_open_store_takes_the_new_size()
    {
        using var r = new TempRegion(capacity: 16L << 20);
        var other = Store.Open(r.RegionPath); // a second process's store, open across the resize
        try
        {
            var a = r.Store.Main.Fork("a");
            Assert.Throws<RegionFullException>(() => a.WriteAllBytes("big", new byte[20 << 20]));
            Assert.Equal(0, new FileInfo(r.RegionPath).Length % 4096);
            var report = r.Store.Resize(64L << 20);
            Assert.Equal(16L << 20, report.OldCapacity);
            Assert.Equal(64L << 20, report.NewCapacity);
            Assert.Equal(64L << 20, new FileInfo(r.RegionPath).Length);
            a.WriteAllBytes("big", Filled(20 << 20, 3));
            Assert.Equal(64L << 20, other.Usage.Capacity);
            Assert.Equal(Filled(20 << 20, 3), other.GetBranch("a").ReadAllBytes("big"));
            other.GetBranch("a").WriteAllBytes("more", Filled(10 << 20, 4)); // the other store allocates in the new pages too
            Assert.Throws<ArgumentOutOfRangeException>(() => r.Store.Resize(32L << 20));       // never shrinks
            Assert.Throws<ArgumentOutOfRangeException>(() => r.Store.Resize(r.Store.MaxCapacity + (1L << 30)));
        }
        finally
        {
            other.Dispose();
        }
        var s = r.Reopen();
        Assert.Equal(64L << 20, s.Usage.Capacity);
        Assert.Equal(Filled(10 << 20, 4), s.GetBranch("a").ReadAllBytes("more"));
        var v = s.Verify();
        Assert.Empty(v.Damage);
        Assert.Equal(v.ReachableBytes, v.ArenaUsedBytes);
    }

    [Fact]
    public void Growth_past_the_file_systems_free_space_is_refused_up_front_and_changes_nothing()
    {
        string dir = Directory.CreateTempSubdirectory("daxfs-grow-").FullName;
        try
        {
            string path = Path.Combine(dir, "r.daxfs");
            long free = Media.Libc.FreeBytes(dir);
            long want = (free + (1L << 30)) / 4096 * 4096;
            using var s = Store.Create(path, TempRegion.SampleImage(), new StoreOptions { Capacity = 16L << 20, MaxCapacity = 2 * want });
            var e = Assert.Throws<RegionGrowthException>(() => s.Resize(want));
            Assert.Contains("free on the file system", e.Message);
            Assert.Equal(16L << 20, new FileInfo(path).Length);
            Assert.Equal(16L << 20, s.Usage.Capacity);
            s.Main.Fork("still").WriteAllBytes("works", "yes"u8);
        }
        finally
        {
            Directory.Delete(dir, recursive: true);
        }
    }

    [Fact]
    public void A_full_region_is_cleaned_up_from_inside_and_the_space_freed_is_usable_at_once()
    {
        using var r = new TempRegion(capacity: 48L << 20);
        var a = r.Store.Main.Fork("a");
        // Fill the region with files until a write fails: the failed write leaves nothing of itself.
        int n = 0;
        var e = Assert.Throws<RegionFullException>((Action)(() =>
        {
            for (; n < 1000; n++) a.WriteAllBytes($"f{n}", Filled(4 << 20, (byte)n));
        }));
        Assert.Contains("daxfs gc", e.Message);
        Assert.False(a.Exists($"f{n}"), "a write that failed for space left its file behind");
        Assert.Throws<RegionFullException>(() => a.ReplaceFile("g", Filled(4 << 20, 1)));
        Assert.False(a.Exists("g"));
        Assert.True(n >= 5, $"only {n} files fitted");
        // Removal and truncation still work (the reserve), and what they free is usable at once.
        a.Delete("f0");
        a.Truncate("f1", 0);
        a.WriteAllBytes("again", Filled(4 << 20, 0xAA));
        Assert.Equal(Filled(4 << 20, 0xAA), a.ReadAllBytes("again"));
        Assert.Equal(Filled(4 << 20, 2), a.ReadAllBytes("f2"));
        // An abort of a branch that holds most of the region gives its space back at once too.
        a.Abort();
        r.Store.Main.Fork("b").WriteAllBytes("big", Filled(24 << 20, 1));
        var v = r.Reopen().Verify();
        Assert.Empty(v.Damage);
    }

    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public void In_a_full_region_removing_every_second_file_makes_room_that_cleaning_gives_back_step_by_step(bool automatic)
    {
        using var r = new TempRegion(capacity: 32L << 20);
        r.Store.AutoClean = automatic; // on demand, the cleaning must manage with the little room a full region has
        var b = r.Store.Main.Fork("b");
        int n = 0;
        Assert.Throws<RegionFullException>((Action)(() =>
        {
            for (; n < 100; n++) b.ReplaceFile($"m{n}", Filled(1_000_000, (byte)n));
        }));
        for (int i = 0; i < n; i += 2) b.Delete($"m{i}");
        if (!automatic)
        {
            Assert.Throws<RegionFullException>(() => b.ReplaceFile("big", Filled(3_000_000, 1)));
            var report = r.Store.Clean("b");
            Assert.True(report.Cleaned, "nothing cleaned in a full region");
            Assert.True(report.FreedBytes >= (n / 2 - 2) * 1_000_000L, $"freed {report.FreedBytes} after removing {n / 2} files of 1 MB");
        }
        b.ReplaceFile("big", Filled(3_000_000, 1)); // automatic: the removals made room at once
        for (int i = 1; i < n; i += 2)
            Assert.Equal(Filled(1_000_000, (byte)i), b.ReadAllBytes($"m{i}"));
        Assert.Empty(r.Reopen().Verify().Damage);
    }

    [Fact]
    public void A_capacity_beyond_the_file_system_is_refused_before_anything_is_written()
    {
        string dir = Directory.CreateTempSubdirectory("daxfs-huge-").FullName;
        try
        {
            string path = Path.Combine(dir, "huge.daxfs");
            var e = Assert.Throws<IOException>(() => Store.Create(path, TempRegion.SampleImage(), new StoreOptions { Capacity = 100L << 40 }).Dispose());
            Assert.Contains("is more than the", e.Message);
            var sparse = Assert.Throws<IOException>(() => Store.Create(path, TempRegion.SampleImage(), new StoreOptions { Capacity = 100L << 40, Sparse = true }).Dispose());
            Assert.Contains("whole file system", sparse.Message);
            Assert.Empty(Directory.GetFiles(dir));
        }
        finally
        {
            Directory.Delete(dir, recursive: true);
        }
    }
}
