using System.Text.Json;

namespace Daxfs.Branching.Fuse.Tests;

/// <summary>Space under a mount: rewrites reclaimed without user action, gc and resize while the mount serves.</summary>
public class SpaceMountTests
{
    private static long ArenaUsed(Mounted m)
    {
        var usage = JsonDocument.Parse(Sh.Ok(m.Cli("inspect", "--json"), "inspect").Out).RootElement.GetProperty("usage");
        return usage.GetProperty("arenaBytes").GetInt64() - usage.GetProperty("arenaFreeBytes").GetInt64();
    }

    [Fact]
    public void Rewrites_through_a_mount_keep_the_region_near_its_live_size()
    {
        using var m = new Mounted();
        string mnt = m.Mount("a");
        // A 10 MiB build output written again and again, as a build does.
        Sh.Ok(Sh.Bash($"head -c 10485760 /dev/urandom > {m.Root}/out.bin; for i in $(seq 1 12); do cp {m.Root}/out.bin {mnt}/out.bin; done; cmp {m.Root}/out.bin {mnt}/out.bin"), "rewrite through the mount");
        long used = ArenaUsed(m);
        Assert.True(used <= 2 * (10L << 20) + (16L << 20), $"arena use {used} bytes for a 10 MiB file rewritten 12 times");
    }

    [Fact]
    public async Task A_mount_keeps_serving_while_gc_and_resize_run()
    {
        using var m = new Mounted();
        string mnt = m.Mount("a");
        Sh.Ok(Sh.Bash($"head -c 3000000 /dev/urandom > {m.Root}/want.bin; for i in 1 2 3 4; do head -c 3000000 /dev/urandom > {mnt}/big.bin; done; cp {m.Root}/want.bin {mnt}/big.bin; sync"), "write");
        // A reader compares the file through the mount over and over while gc and resize run from other processes.
        string done = Path.Combine(m.Root, "stop");
        var reader = Task.Run(() => Sh.Bash($"n=0; while [ ! -e {done} ]; do cmp {m.Root}/want.bin {mnt}/big.bin; n=$((n+1)); done; echo $n"));
        var gc = Sh.Ok(m.Cli("gc", "--json"), "gc");
        var a = JsonDocument.Parse(gc.Out).RootElement.EnumerateArray().Single(e => e.GetProperty("branch").GetString() == "a");
        Assert.True(a.GetProperty("cleaned").GetBoolean(), gc.Out);
        Assert.True(a.GetProperty("freedBytes").GetInt64() >= 3 * 3_000_000, gc.Out);
        Sh.Ok(m.Cli("resize", "--capacity", "1G"), "resize");
        // The mount takes the new size: statfs through it shows the larger region.
        Assert.True(Wait.Until(() => long.Parse(Sh.Ok(Sh.Bash($"stat -f -c '%b' {mnt}"), "statfs").Out.Trim(), System.Globalization.CultureInfo.InvariantCulture) * 4096 >= 1L << 30),
            "statfs through the mount still shows the old size");
        // New pages are usable through the mount, by the server's own store.
        Sh.Ok(Sh.Bash($"head -c 700000000 /dev/zero > {mnt}/fills-the-old-size.bin && stat -c %s {mnt}/fills-the-old-size.bin"), "write past the old capacity");
        File.WriteAllText(done, "");
        var read = await reader;
        Assert.True(read.Code == 0, $"a read through the mount saw other bytes while gc and resize ran: {read.Out} {read.Err}");
        Assert.True(int.Parse(read.Out.Trim(), System.Globalization.CultureInfo.InvariantCulture) > 0);
        Sh.Ok(Sh.Bash($"cmp {m.Root}/want.bin {mnt}/big.bin"), "content after gc and resize");
        Sh.Ok(m.Cli("verify"), "verify");
    }
}
