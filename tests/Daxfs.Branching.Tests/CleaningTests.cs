using System.Text;
using Daxfs.Branching;
using Xunit;

namespace Daxfs.Branching.Tests;

/// <summary>Online cleaning of branch logs: the space a branch takes follows what it still reads.</summary>
public class CleaningTests
{
    private static byte[] Filled(int length, byte value) => TempRegion.Filled(length, value);

    private static string Tree(Store s, bool attributes = true)
    {
        var sb = new StringBuilder();
        foreach (var info in s.ListBranches().Where(i => i.Status != BranchStatus.Invalidated))
        {
            sb.Append("# ").Append(info.Name).Append(' ').Append(info.Parent).Append('\n');
            ReopenAndRecoveryTests.Dump(s.GetBranch(info.Name), "/", sb, attributes);
        }
        return sb.ToString();
    }

    private static long Used(Store s) => TempRegion.ArenaUsed(s);

    [Fact]
    public void Rewriting_one_file_keeps_the_region_near_its_live_size_without_any_user_action()
    {
        using var r = new TempRegion(capacity: 256L << 20);
        var a = r.Store.Main.Fork("a");
        long peak = 0;
        for (int i = 0; i < 30; i++)
        {
            a.WriteAllBytes("out.bin", Filled(10 << 20, (byte)i));
            peak = Math.Max(peak, Used(r.Store));
        }
        Assert.Equal(Filled(10 << 20, 29), a.ReadAllBytes("out.bin"));
        // The bound the design promises: at most twice the live bytes plus 16 MiB, at every step.
        Assert.True(peak <= 2 * (10L << 20) + (16L << 20), $"peak arena use {peak} bytes for 10 MiB live");
        var s = r.Reopen();
        Assert.Equal(Filled(10 << 20, 29), s.GetBranch("a").ReadAllBytes("out.bin"));
        var v = s.Verify();
        Assert.Empty(v.Damage);
        Assert.Equal(v.ReachableBytes, v.ArenaUsedBytes);
    }

    [Fact]
    public void Random_overwrites_of_an_8_MiB_file_never_fill_a_region_eight_times_its_size()
    {
        // What fsx does to a file: 20,000 overwrites of up to 64 KiB (640 MiB written) into a 64 MiB region.
        using var r = new TempRegion(capacity: 64L << 20);
        var a = r.Store.Main.Fork("a");
        var rng = new Random(3);
        var model = new byte[8 << 20];
        a.WriteAllBytes("f", model);
        var buf = new byte[64 << 10];
        long peak = 0;
        for (int i = 0; i < 20_000; i++)
        {
            int len = rng.Next(1, buf.Length);
            int off = rng.Next(0, model.Length - len);
            rng.NextBytes(buf.AsSpan(0, len));
            a.Write("f", off, buf.AsSpan(0, len));
            buf.AsSpan(0, len).CopyTo(model.AsSpan(off));
            peak = Math.Max(peak, Used(r.Store));
        }
        Assert.Equal(model, a.ReadAllBytes("f"));
        Assert.True(peak <= 2 * (8L << 20) + (16L << 20), $"peak arena use {peak} for an 8 MiB file");
        Assert.Equal(model, r.Reopen().GetBranch("a").ReadAllBytes("f"));
    }

    [Fact]
    public void Cleaning_keeps_every_file_name_attribute_and_byte()
    {
        using var r = new TempRegion(capacity: 128L << 20);
        r.Store.AutoClean = false;
        var a = r.Store.Main.Fork("a");
        var rng = new Random(5);
        a.CreateDirectory("d/e", parents: true);
        for (int round = 0; round < 6; round++)
        {
            for (int f = 0; f < 8; f++)
            {
                var data = new byte[rng.Next(1, 300_000)];
                rng.NextBytes(data);
                a.Write($"d/f{f}", rng.Next(0, 100_000), data);
            }
            a.Truncate("d/f1", rng.Next(0, 200_000));
            a.WriteAllBytes($"d/e/tmp{round}", Filled(50_000, (byte)round));
            if (round % 2 == 0) a.Delete($"d/e/tmp{round}");
            a.Chmod("d/f2", (uint)(0x180 + round));
            a.SetExtendedAttribute("d/f3", "user.round", Encoding.UTF8.GetBytes($"r{round}"));
        }
        a.CreateHardLink("d/f4", "d/e/hard");
        a.CreateSymlink("d/sl", "f0");
        a.Rename("d/f5", "d/e/moved");
        a.Write("src/big.bin", 1000, Filled(5000, 9)); // a file of the base image
        // A child committed into the branch: its log is merged, then inlined by cleaning.
        var c = a.Fork("c");
        c.Write("d/f6", 0, Filled(100_000, 0x66));
        c.Write("d/f6", 0, Filled(100_000, 0x67));
        c.CommitToParent("merge c");
        a.Write("d/f7", 0, Filled(20_000, 0x77));
        string before = Tree(r.Store);
        byte[] f6 = a.ReadAllBytes("d/f6");

        var report = r.Store.Clean("a");
        Assert.True(report.Cleaned);
        Assert.True(report.BytesAfter < report.BytesBefore, $"{report.BytesBefore} -> {report.BytesAfter}");
        Assert.Equal(before, Tree(r.Store));
        Assert.Equal("r5", Encoding.UTF8.GetString(r.Store.GetBranch("a").GetExtendedAttributes("d/f3")["user.round"]));
        // Another open sees the same tree (it replays the cleaned log), and the log still commits.
        using (var other = Store.Open(r.RegionPath))
        {
            Assert.Equal(before, Tree(other));
            // The cleaning store moved its views' extents instead of replaying: its counts match a replay's.
            var mine = r.Store.GetBranch("a").Info;
            var replayed = other.GetBranch("a").Info;
            Assert.Equal((replayed.Records, replayed.LogBytes), (mine.Records, mine.LogBytes));
        }
        var s = r.Reopen();
        Assert.Equal(before, Tree(s));
        var v = s.Verify();
        Assert.Empty(v.Damage);
        Assert.Equal(v.ReachableBytes, v.ArenaUsedBytes);
        s.GetBranch("a").Commit("after cleaning");
        Assert.Equal(f6, s.Main.ReadAllBytes("d/f6"));
        Assert.Equal(Filled(100_000, 0x67), f6[..100_000]);
    }

    [Fact]
    public void A_branch_with_children_is_cleaned_and_its_children_read_through_the_new_log()
    {
        using var r = new TempRegion(capacity: 128L << 20);
        r.Store.AutoClean = false;
        var p = r.Store.Main.Fork("p");
        for (int i = 0; i < 5; i++)
            p.WriteAllBytes("f", Filled(400_000, (byte)(i + 1)));
        var child = p.Fork("child");
        child.Write("g", 0, "child"u8);
        using var other = Store.Open(r.RegionPath); // a second process's picture, built before the cleaning
        Assert.Equal(Filled(400_000, 5), other.GetBranch("child").ReadAllBytes("f"));
        object token = other.GetBranch("child").CurrentViewToken();
        var report = r.Store.Clean("p");
        Assert.True(report.Cleaned, "nothing cleaned");
        // The tree is the same, only its bytes moved: a mount's view token stays, so it keeps the kernel's caches.
        Assert.Same(token, other.GetBranch("child").CurrentViewToken());
        Assert.True(report.FreedBytes >= 3 * 400_000, $"freed {report.FreedBytes}"); // the dead writes outside the tail's block
        // New writes reuse the freed space; both pictures still read the child's file from the parent's copy.
        r.Store.Main.Fork("filler").WriteAllBytes("x", Filled(3_000_000, 0xEE));
        Assert.Equal(Filled(400_000, 5), r.Store.GetBranch("child").ReadAllBytes("f"));
        Assert.Equal(Filled(400_000, 5), other.GetBranch("child").ReadAllBytes("f"));
        Assert.Equal("child", Encoding.UTF8.GetString(other.GetBranch("child").ReadAllBytes("g")));
        r.Store.GetBranch("child").WriteAllBytes("g", "changed"u8);
        Assert.NotSame(token, other.GetBranch("child").CurrentViewToken());
        Assert.Equal("changed", Encoding.UTF8.GetString(other.GetBranch("child").ReadAllBytes("g")));
        other.GetBranch("child").Commit("from the other store");
        Assert.Equal(Filled(400_000, 5), r.Store.Main.ReadAllBytes("f"));
        Assert.Equal("changed", Encoding.UTF8.GetString(r.Store.Main.ReadAllBytes("g")));
    }

    [Fact]
    public void A_dead_run_in_the_middle_of_a_log_is_cut_out_and_the_live_blocks_around_it_stay_where_they_are()
    {
        using var r = new TempRegion(capacity: 128L << 20);
        r.Store.AutoClean = false;
        var a = r.Store.Main.Fork("a");
        a.WriteAllBytes("front", Filled(2 << 20, 1));                      // live, at the head
        for (int i = 0; i < 4; i++) a.WriteAllBytes("churn", Filled(2 << 20, (byte)(10 + i)));
        a.Delete("churn");                                                  // a dead run in the middle
        a.WriteAllBytes("back", Filled(2 << 20, 2));                       // live, before the tail
        a.WriteAllBytes("tail", "t"u8);
        using var other = Store.Open(r.RegionPath);
        string before = Tree(other);
        var report = r.Store.Clean("a");
        Assert.True(report.Cleaned);
        Assert.True(report.FreedBytes >= 4L * (2 << 20), $"freed {report.FreedBytes}");
        Assert.True(report.CopiedBytes < 1 << 20, $"copied {report.CopiedBytes}: the live blocks around the dead run were copied too");
        Assert.Equal(before, Tree(r.Store));
        Assert.Equal(before, Tree(other)); // the other store walks the log again (the slot's cleaning count moved)
        r.Store.Main.Fork("filler").WriteAllBytes("x", Filled(8 << 20, 0xEE)); // reuse what was freed
        Assert.Equal(Filled(2 << 20, 1), other.GetBranch("a").ReadAllBytes("front"));
        Assert.Equal(Filled(2 << 20, 2), other.GetBranch("a").ReadAllBytes("back"));
        var v = r.Reopen().Verify();
        Assert.Empty(v.Damage);
    }

    [Fact]
    public void A_kept_branch_is_cleaned_and_still_rebases()
    {
        using var r = new TempRegion(capacity: 128L << 20);
        r.Store.AutoClean = false;
        var k = r.Store.Main.Fork("k", new ForkOptions { KeepForRebase = true });
        for (int i = 0; i < 5; i++)
            k.WriteAllBytes("mine", Filled(300_000, (byte)(i + 1)));
        var w = r.Store.Main.Fork("winner");
        w.WriteAllBytes("theirs", "T"u8);
        w.Commit("wins");
        Assert.True(Assert.Throws<BranchInvalidatedException>(() => r.Store.GetBranch("k")).Kept);
        var report = r.Store.Clean("k");
        Assert.True(report.Kept);
        Assert.True(report.Cleaned);
        var rebased = r.Reopen().Rebase("k", "k2");
        Assert.Equal(Filled(300_000, 5), rebased.ReadAllBytes("mine"));
        Assert.Equal("T", Encoding.UTF8.GetString(rebased.ReadAllBytes("theirs")));
    }

    [Fact]
    public void A_read_lease_keeps_its_spans_intact_across_a_cleaning_and_reuse()
    {
        using var r = new TempRegion(capacity: 64L << 20);
        r.Store.AutoClean = false;
        var a = r.Store.Main.Fork("a");
        a.WriteAllBytes("f", Filled(1_000_000, 1));
        a.WriteAllBytes("g", Filled(1_000_000, 2));
        a.WriteAllBytes("f", Filled(1_000_000, 3)); // f's first content is now dead
        byte[] seen;
        using (r.Store.BeginRead())
        {
            var span = a.Read("g"); // g's bytes lie in the prefix cleaning copies away
            var report = r.Store.Clean("a");
            Assert.True(report.Cleaned);
            // Fill the arena: the parked prefix must not be handed out while the lease is open.
            var filler = r.Store.Main.Fork("filler");
            for (int i = 0; ; i++)
            {
                try { filler.WriteAllBytes($"x{i}", Filled(1_000_000, 0xEE)); }
                catch (RegionFullException) { break; }
            }
            seen = new byte[span.Length];
            span.CopyTo(seen);
        }
        Assert.Equal(Filled(1_000_000, 2), seen);
        // Once the lease is over, the parked space comes back.
        long free = r.Store.Usage.ArenaFreeBytes;
        r.Store.Main.Fork("after");
        Assert.True(r.Store.Usage.ArenaFreeBytes > free, "parked space did not come back after the lease");
        Assert.Equal(Filled(1_000_000, 2), a.ReadAllBytes("g"));
    }

    [Fact]
    public void Cleaning_all_reports_each_branch_and_skips_logs_with_nothing_dead()
    {
        using var r = new TempRegion(capacity: 64L << 20);
        r.Store.AutoClean = false;
        var a = r.Store.Main.Fork("a");
        for (int i = 0; i < 4; i++) a.WriteAllBytes("f", Filled(500_000, (byte)i));
        var b = r.Store.Main.Fork("b");
        b.WriteAllBytes("only", "once"u8);
        var reports = r.Store.CleanAll();
        Assert.Equal(["a", "b"], reports.Select(x => x.Branch));
        Assert.True(reports[0].Cleaned);
        Assert.False(reports[1].Cleaned);
        Assert.Equal(reports[1].BytesBefore, reports[1].BytesAfter);
        Assert.Throws<BranchNotFoundException>(() => r.Store.Clean("nope"));
        Assert.Throws<ArgumentException>(() => r.Store.Clean("main"));
    }
}
