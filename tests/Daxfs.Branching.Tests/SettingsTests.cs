namespace Daxfs.Branching.Tests;

public class SettingsTests
{
    [Fact]
    public void Settings_are_kept_in_main_s_log_seen_by_other_stores_and_survive_reopening_and_compaction()
    {
        using var r = new TempRegion();
        r.Store.SetSetting("remote.origin.url", "s3://bucket/prefix");
        r.Store.SetSettings([new("a.b", "1"), new("a.c", "2 with spaces\nand a line")]);
        using (var other = Store.Open(r.RegionPath))
        {
            Assert.Equal("s3://bucket/prefix", other.Settings["remote.origin.url"]);
            other.SetSetting("a.b", null); // removed by another process
        }
        Assert.False(r.Store.Settings.ContainsKey("a.b"));
        Assert.Equal("2 with spaces\nand a line", r.Store.Settings["a.c"]);
        r.Store.SetSetting("missing", null); // removing what is not there does nothing
        var w = r.Store.Main.Fork("w");
        w.WriteAllBytes("/x", "x"u8);
        w.Commit();
        r.Store.Compact();
        var s = r.Reopen();
        Assert.Equal(["a.c", "remote.origin.url"], s.Settings.Keys);
        Assert.Empty(s.Verify().Damage);
    }

    [Fact]
    public void Bad_names_and_values_are_refused_and_a_version_4_region_cannot_hold_settings()
    {
        using var r = new TempRegion();
        Assert.Throws<ArgumentException>(() => r.Store.SetSetting("", "x"));
        Assert.Throws<ArgumentException>(() => r.Store.SetSetting("has space", "x"));
        Assert.Throws<ArgumentException>(() => r.Store.SetSetting(new string('k', 256), "x"));
        Assert.Throws<ArgumentException>(() => r.Store.SetSetting("k", new string('v', 16 * 1024 + 1)));
        Assert.Throws<ArgumentException>(() => r.Store.SetSetting("k", "nul\0"));
        Assert.Empty(r.Store.Settings);
        r.Store.Dispose();
        KeptFilesTests.SetFormatVersion(r.RegionPath, 4);
        var s = r.Reopen();
        var e = Assert.Throws<NotSupportedException>(() => s.SetSetting("k", "v"));
        Assert.Contains("format version 4 regions cannot hold settings", e.Message);
        Assert.Empty(s.Settings);
    }
}

public class SettingRecordVersionTests
{
    [Fact]
    public void A_setting_record_in_a_version_4_region_is_damage_named_as_such()
    {
        using var r = new TempRegion();
        r.Store.SetSetting("k", "v");
        r.Store.Dispose();
        KeptFilesTests.SetFormatVersion(r.RegionPath, 4); // a region whose format never had settings, holding one
        var e = Assert.Throws<CorruptionException>(() => r.Reopen());
        Assert.Contains("a setting record in a format version 4 region", e.Message);
        KeptFilesTests.SetFormatVersion(r.RegionPath, 5);
        Assert.Equal("v", r.Reopen().Settings["k"]);
    }
}

public class UnpublishedRegionTests
{
    [Fact]
    public void A_region_built_unpublished_shows_at_its_path_only_once_published_and_a_dropped_one_leaves_nothing()
    {
        string dir = Directory.CreateTempSubdirectory("daxfs-unpublished-").FullName;
        try
        {
            string path = Path.Combine(dir, "r.daxfs");
            using (var first = Store.CreateUnpublished(path, new BaseImageBuilder().AddFile("/a.txt", "a"u8), new StoreOptions { Capacity = 16L << 20 }))
            {
                Assert.False(File.Exists(path));
                Assert.StartsWith($".r.daxfs.building-", Path.GetFileName(first.BuildingPath));
                using (var s = Store.Open(first.BuildingPath))
                {
                    var w = s.Main.Fork("w");
                    w.WriteAllBytes("/b.txt", "b"u8);
                    w.Commit("filled before it shows");
                }
                // Another build of the same path meanwhile: the held one is not taken for abandoned.
                using (var second = Store.CreateUnpublished(path, new BaseImageBuilder(), new StoreOptions { Capacity = 16L << 20 }))
                    Assert.True(File.Exists(first.BuildingPath));
                Assert.Single(Directory.GetFiles(dir, ".r.daxfs.building-*")); // the second, dropped, left nothing
                first.Publish();
            }
            Assert.Empty(Directory.GetFiles(dir, ".r.daxfs.building-*"));
            using (var s = Store.Open(path))
                Assert.Equal("b", System.Text.Encoding.UTF8.GetString(s.Main.ReadAllBytes("/b.txt")));
            // Publishing over a region that appeared meanwhile is refused, and the unpublished one goes.
            using (var late = Store.CreateUnpublished(Path.Combine(dir, "s.daxfs"), new BaseImageBuilder(), new StoreOptions { Capacity = 16L << 20 }))
            {
                File.WriteAllText(Path.Combine(dir, "s.daxfs"), "someone else's");
                Assert.Throws<IOException>(late.Publish);
            }
            Assert.Equal("someone else's", File.ReadAllText(Path.Combine(dir, "s.daxfs")));
            Assert.Empty(Directory.GetFiles(dir, ".s.daxfs.building-*"));
        }
        finally
        {
            Directory.Delete(dir, recursive: true);
        }
    }
}
