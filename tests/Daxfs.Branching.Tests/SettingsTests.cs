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
