using System.Diagnostics;
using System.Text;
using Daxfs.Branching;
using Daxfs.Branching.Branching;
using Daxfs.Branching.Coordination;
using Xunit.Abstractions;

namespace Daxfs.Branching.Tests;

/// <summary>Several stores on one region, child processes killed at named fault points, and a stress run.</summary>
public class MultiProcessTests(ITestOutputHelper output)
{
    private static readonly string s_worker = Path.Combine(AppContext.BaseDirectory, "Daxfs.Branching.Worker.dll");

    internal static (int Code, string Out, string Err) Worker(IDictionary<string, string>? env, params string[] args)
    {
        var psi = new ProcessStartInfo("dotnet") { RedirectStandardOutput = true, RedirectStandardError = true, UseShellExecute = false };
        psi.ArgumentList.Add(s_worker);
        foreach (var a in args) psi.ArgumentList.Add(a);
        psi.Environment.Remove("DAXFS_FAULT_POINT");
        if (env is not null)
            foreach (var kv in env) psi.Environment[kv.Key] = kv.Value;
        using var p = Process.Start(psi)!;
        var o = p.StandardOutput.ReadToEndAsync();
        var e = p.StandardError.ReadToEndAsync();
        if (!p.WaitForExit(180_000))
        {
            p.Kill(true);
            throw new TimeoutException("worker did not finish");
        }
        return (p.ExitCode, o.Result, e.Result);
    }

    private static string Text(Branch b, string path) => Encoding.UTF8.GetString(b.ReadAllBytes(path));

    [Fact]
    public void Two_stores_on_one_region_see_each_others_changes()
    {
        using var r = new TempRegion();
        using var other = Store.Open(r.RegionPath);
        var a = r.Store.Main.Fork("a");
        a.WriteAllBytes("x", "1"u8);
        var aThere = other.GetBranch("a");
        Assert.Equal("1", Text(aThere, "x"));
        aThere.Append("x", "2"u8);          // the other store appends to the same branch
        Assert.Equal("12", Text(a, "x"));   // and this one sees it on its next read
        a.Append("x", "3"u8);
        Assert.Equal("123", Text(aThere, "x"));
        var sibling = other.Main.Fork("sibling");
        Assert.Equal(BranchStatus.Live, r.Store.GetBranch("sibling").Info.Status);
        a.Commit("from the first store");
        Assert.Throws<BranchInvalidatedException>(() => sibling.List());
        Assert.Equal("123", Text(other.Main, "x"));
        Assert.Single(other.Versions);
        var v = other.Main.Fork("b");
        v.WriteAllBytes("y", "from the second store"u8);
        v.CommitToParent("second");
        Assert.Equal(2, r.Store.Versions.Count);
        Assert.Equal("from the second store", Text(r.Store.Main, "y"));
        var rep = r.Store.Verify();
        Assert.Equal(rep.ReachableBytes, rep.ArenaUsedBytes);

        // Nested commits seen from the other store: c into p here, then p into main there.
        var p = r.Store.Main.Fork("p");
        p.WriteAllBytes("p.txt", "P"u8);
        var c = p.Fork("c");
        c.WriteAllBytes("c.txt", "C"u8);
        c.CommitToParent("c into p");
        Assert.Equal("C", Text(other.GetBranch("p"), "c.txt")); // the other store replays the merge
        other.GetBranch("p").Commit("p into main");
        Assert.Equal("C", Text(r.Store.Main, "c.txt"));       // and this one replays p's log, merge included
        Assert.Equal(3, r.Store.Versions.Count);
        Assert.Equal(r.Store.Usage.ArenaFreeBytes, other.Usage.ArenaFreeBytes);
    }

    [Fact]
    public void A_lease_in_one_process_keeps_spans_valid_while_another_process_ends_the_branch()
    {
        using var r = new TempRegion();
        var x = r.Store.Main.Fork("other");
        var payload = TempRegion.Pattern(300_000, 11);
        x.Write("data", 0, payload);
        using (r.Store.BeginRead())
        {
            var range = x.Read("data");
            // Another process discards the branch, then forks and writes enough to reuse freed space.
            var w = Worker(null, "op", r.RegionPath, "reclaim");
            Assert.True(w.Code == 0, w.Err);
            using (var third = Store.Open(r.RegionPath))
            {
                var filler = third.GetBranch("after");
                for (int i = 0; i < 8; i++) filler.Write($"f{i}", 0, new byte[100_000]);
            }
            Assert.Equal(payload, range.ToArray());
            Assert.Throws<BranchInvalidatedException>(() => x.List());
        }
    }

    public static IEnumerable<object[]> FaultCases()
    {
        foreach (var (point, op) in new[]
        {
            ("fork.slot-filled", "fork"), ("fork.published", "fork"),
            ("append.reserved", "write"), ("append.linked", "write"), ("append.reserved", "write-small"),
            ("commit.before-publish", "commit"), ("commit.published", "commit"), ("commit.epoch-stored", "commit"), ("commit.invalidating", "commit"),
            ("commit-parent.published", "commit-parent"), ("commit-parent.invalidating", "commit-parent"),
            ("abort.top-ended", "abort"), ("discard.ended", "discard"), ("reclaim.freeing", "reclaim"),
            ("compact.written", "compact"), ("compact.published", "compact"), ("discard-kept.freed", "discard-kept"),
            ("clean.written", "clean"), ("clean.published", "clean"), ("resize.extended", "resize"),
            ("checkpoint.written", "checkpoint"), ("checkpoint.published", "checkpoint"),
        })
            yield return [point, op];
    }

    /// <summary>
    /// The state every crash test starts from: main, a branch a, a chain p → c with a sibling c2 (forked to be kept
    /// for a rebase if a commit invalidates them), and other.
    /// </summary>
    private static TempRegion Prepared()
    {
        var r = new TempRegion();
        var a = r.Store.Main.Fork("a");
        a.WriteAllBytes("a.txt", "A"u8);
        a.Write("big.bin", 0, new byte[50_000]);
        var p = r.Store.Main.Fork("p", new ForkOptions { KeepForRebase = true });
        p.WriteAllBytes("p.txt", "P"u8);
        var c = p.Fork("c");
        c.WriteAllBytes("c.txt", "C"u8);
        p.Fork("c2").WriteAllBytes("c2.txt", "C2"u8);
        r.Store.Main.Fork("other").Write("o.bin", 0, new byte[100_000]);
        r.Store.Dispose();
        return r;
    }

    [Theory]
    [MemberData(nameof(FaultCases))]
    public void Kill_at_a_fault_point_then_reopen_finds_a_consistent_region(string point, string op)
    {
        Assert.Contains(point, FaultPoints.All);
        using var r = Prepared();
        var before = Store.Open(r.RegionPath);
        string snapshotBefore = ReopenAndRecoveryTests.Snapshot(before);
        before.Dispose();

        var w = Worker(new Dictionary<string, string> { ["DAXFS_FAULT_POINT"] = point }, "op", r.RegionPath, op);
        Assert.True(w.Code == 137, $"worker was not killed at {point}: exit {w.Code}\n{w.Out}\n{w.Err}");
        Assert.Contains($"fault point {point}", w.Err);

        var s = r.Reopen();
        var report = s.Verify();
        Assert.Equal(report.ReachableBytes, report.ArenaUsedBytes); // leaked space came back
        string after = ReopenAndRecoveryTests.Snapshot(s);
        int versions = s.Versions.Count;
        switch (op)
        {
            case "commit":
                if (versions == 0)
                {
                    Assert.Equal(snapshotBefore, after); // not committed: nothing changed
                }
                else
                {
                    // Committed whole: main has a's changes, every other branch is invalidated.
                    Assert.Equal(1, versions);
                    Assert.Equal("A", Text(s.Main, "a.txt"));
                    Assert.Equal(50_000, s.Main.Stat("big.bin").Size);
                    Assert.Single(s.ListBranches(), b => b.Status != BranchStatus.Invalidated);
                    Assert.False(Assert.Throws<BranchInvalidatedException>(() => s.GetBranch("other")).Kept);
                    // The chain forked to be kept is invalidated with its logs, whether the commit marked it or recovery did.
                    Assert.Equal(["c", "c2", "p"], s.ListBranches().Where(b => b.Kept).Select(b => b.Name).Order(StringComparer.Ordinal));
                    var rebased = s.Rebase("c", "c-rebased");
                    Assert.Equal(("P", "C", "A"), (Text(rebased, "p.txt"), Text(rebased, "c.txt"), Text(rebased, "a.txt")));
                }
                Assert.True(point == "commit.before-publish" ? versions == 0 : versions == 1, $"{point}: {versions} versions");
                break;
            case "commit-parent":
                var p = s.GetBranch("p");
                if (point == "commit-parent.published" || point == "commit-parent.invalidating")
                {
                    Assert.Equal("C", Text(p, "c.txt"));
                    Assert.Throws<BranchInvalidatedException>(() => s.GetBranch("c2"));
                    Assert.Throws<BranchNotFoundException>(() => s.GetBranch("c"));
                    Assert.Equal(BranchStatus.Live, p.Info.Status);
                }
                Assert.Equal(0, versions);
                break;
            case "abort":
                Assert.Throws<BranchNotFoundException>(() => s.GetBranch("p"));
                Assert.Throws<BranchNotFoundException>(() => s.GetBranch("c"));
                Assert.Throws<BranchNotFoundException>(() => s.GetBranch("c2"));
                Assert.Equal("A", Text(s.GetBranch("a"), "a.txt"));
                break;
            case "discard":
            case "reclaim":
                Assert.Throws<BranchNotFoundException>(() => s.GetBranch("other"));
                Assert.Equal("A", Text(s.GetBranch("a"), "a.txt"));
                break;
            case "fork":
                Assert.Equal(point == "fork.published", s.BranchExists("forked"));
                break;
            case "discard-kept":
                // Killed after freeing the kept top p: recovery releases its kept children too (they cannot be rebuilt).
                Assert.Equal(1, versions);
                Assert.DoesNotContain(s.ListBranches(), b => b.Kept);
                Assert.Throws<BranchNotFoundException>(() => s.GetBranch("p"));
                Assert.Throws<BranchNotFoundException>(() => s.GetBranch("c2"));
                break;
            case "compact":
                // The commit before it stands; the compaction is whole (version 1 is the base) or absent.
                Assert.Equal(1, versions);
                Assert.Equal(point == "compact.published" ? 1 : 0, s.OldestVersion);
                Assert.Equal("A", Text(s.Main, "a.txt"));
                Assert.Equal("A", Text(s.AtVersion(1), "a.txt"));
                Assert.Equal(50_000, s.Main.Stat("big.bin").Size);
                break;
            case "resize":
                // Killed after the file grew and the new pages were freed, before the capacity word: the old size stands.
                Assert.Equal(64L << 20, s.Usage.Capacity);
                Assert.True(new FileInfo(r.RegionPath).Length >= 64L << 20);
                Assert.Equal("A", Text(s.GetBranch("a"), "a.txt"));
                Assert.Equal(128L << 20, s.Resize(128L << 20).NewCapacity); // and growing again works
                break;
            case "checkpoint":
                // The commit stands whole; the checkpoint is used when it was published, and either way main reads the same.
                Assert.Equal(1, versions);
                Assert.Equal("A", Text(s.Main, "a.txt"));
                Assert.Equal(50_000, s.Main.Stat("big.bin").Size);
                using (var partial = Store.Open(r.RegionPath))
                    Assert.Equal("A", Text(partial.Main, "a.txt"));
                break;
            case "clean":
                // The writes before it stand; the cleaning is whole or absent, and either way the branch reads the same.
                var cleaned = s.GetBranch("a");
                Assert.Equal("A", Text(cleaned, "a.txt"));
                Assert.Equal(200_000, cleaned.Stat("big.bin").Size);
                Assert.All(cleaned.ReadAllBytes("big.bin"), x => Assert.Equal(5, x));
                break;
            default: // writes: the record is either whole or absent
                var a = s.GetBranch("a");
                Assert.True(Text(a, "a.txt") is "A" or "A+");
                Assert.Equal(50_000, a.Stat("big.bin").Size is 50_000 or 200_000 ? 50_000 : -1);
                break;
        }
        // The region keeps working: the survivors can still be committed.
        var next = s.Main.Fork("after-crash");
        next.WriteAllBytes("z", "z"u8);
        next.Commit("after the crash");
        var s2 = r.Reopen();
        Assert.Equal(versions + 1, s2.Versions.Count);
        var final = s2.Verify();
        Assert.Equal(final.ReachableBytes, final.ArenaUsedBytes);
    }

    /// <summary>A replace killed part way (its new content half written) leaves the old content; the next replace cleans up.</summary>
    [Fact]
    public void A_replace_killed_part_way_leaves_the_old_content()
    {
        using var r = Prepared();
        var w = Worker(new Dictionary<string, string> { ["DAXFS_FAULT_POINT"] = "append.linked" }, "op", r.RegionPath, "replace");
        Assert.True(w.Code == 137, $"the worker was not killed: {w.Err}");
        var s = r.Reopen();
        var a = s.GetBranch("a");
        Assert.Equal("A", Text(a, "a.txt"));
        Assert.Single(a.List(), e => e.Name.StartsWith(".daxfs-put-", StringComparison.Ordinal)); // the half-written temporary is there under its own name; the file itself is whole
        a.Chmod("a.txt", 0x180);
        a.ReplaceFile("a.txt", "new"u8);
        Assert.Equal("new", Text(a, "a.txt"));
        Assert.Equal(0x180u, a.Stat("a.txt").Mode); // the old file's mode carries over
        Assert.DoesNotContain(a.List(), e => e.Name.StartsWith(".daxfs-put-", StringComparison.Ordinal));
    }

    [Fact]
    public void A_lock_held_by_a_dead_process_is_taken_over_and_its_finished_commit_counts()
    {
        using var r = Prepared();
        using var live = Store.Open(r.RegionPath);
        live.LockTimeout = TimeSpan.FromSeconds(20);
        // The worker dies holding the region lock, half way through a commit.
        var w = Worker(new Dictionary<string, string> { ["DAXFS_FAULT_POINT"] = "commit.epoch-stored" }, "op", r.RegionPath, "commit");
        Assert.Equal(137, w.Code);
        var sw = Stopwatch.StartNew();
        live.Main.Fork("next");                 // takes the lock over from the dead process
        double ms = sw.Elapsed.TotalMilliseconds;
        output.WriteLine($"took the lock over from a dead holder and re-derived the region in {ms:0.0} ms");
        Assert.Single(live.Versions);           // the commit it died in counts: its commit point had passed
        Assert.Throws<BranchInvalidatedException>(() => live.GetBranch("other"));
        Assert.Equal("A", Text(live.Main, "a.txt"));
    }

    [Fact]
    [Trait("Category", "Stress")]
    public Task Four_processes_at_once_lose_no_committed_write() => Stress(output, null, null, null, null);

    /// <summary>
    /// Four workers fork, write, read back, commit, abort and rebase at once for a bounded time (worker 0 also
    /// compacts), each inside the launcher given for it (a namespace sandbox, or none); then every committed
    /// write is checked, and <c>Verify</c> must be clean.
    /// </summary>
    internal static async Task Stress(ITestOutputHelper output, params string[]?[] launchers)
    {
        double seconds = double.TryParse(Environment.GetEnvironmentVariable("DAXFS_STRESS_SECONDS"), out double s) ? s : 8;
        using var r = new TempRegion(capacity: 1L << 30, slots: 64);
        r.Store.Dispose();
        var journals = Enumerable.Range(0, 4).Select(i => Path.Combine(r.Directory_, $"journal-{i}.txt")).ToArray();
        var workers = Enumerable.Range(0, 4).Select(i => Task.Run(() =>
        {
            string[] args = ["stress", r.RegionPath, i.ToString(System.Globalization.CultureInfo.InvariantCulture),
                seconds.ToString(System.Globalization.CultureInfo.InvariantCulture), journals[i], (100 + i).ToString(System.Globalization.CultureInfo.InvariantCulture)];
            using var child = Sandbox.Start(launchers[i], null, args);
            int code = child.WaitForExit(180 + seconds);
            return (Code: code, Out: child.Output, Err: child.Errors, Where: launchers[i] is { } l ? string.Join(' ', l) : "no sandbox");
        })).ToArray();
        foreach (var result in await Task.WhenAll(workers))
        {
            Assert.True(result.Code == 0, $"{result.Where}: exit {result.Code}\n{result.Err}");
            output.WriteLine($"{result.Out.Trim()} ({result.Where})");
        }
        var store = r.Reopen();
        var lines = journals.Where(File.Exists).SelectMany(File.ReadAllLines).Select(l => l.Split('\t')).ToList();
        var committedVersions = lines.Select(l => long.Parse(l[0], System.Globalization.CultureInfo.InvariantCulture)).Distinct().Count();
        output.WriteLine($"{store.Versions.Count} versions, {lines.Count} committed files, oldest readable version {store.OldestVersion}");
        Assert.True(store.Versions.Count > 0);
        Assert.True(store.OldestVersion > 0, "worker 0 never compacted");
        Assert.Equal(store.Versions.Count, committedVersions); // every version was reported by exactly one worker
        Assert.Equal(Enumerable.Range(1, store.Versions.Count).Select(i => (long)i), store.Versions.Select(v => v.Sequence));
        foreach (var l in lines)
            Assert.Equal(l[2], Text(store.Main, l[1]));
        var rep = store.Verify();
        Assert.Equal(rep.ReachableBytes, rep.ArenaUsedBytes);
    }

    [Fact]
    public void Used_space_reaches_a_steady_state_under_a_long_workload()
    {
        using var r = new TempRegion(capacity: 128L << 20);
        var s = r.Store;
        var rng = new Random(5);
        var used = new List<long>();
        for (int round = 0; round < 300; round++)
        {
            var b = s.Main.Fork($"r{round}");
            var c = b.Fork("child");
            c.Write("f", 0, new byte[rng.Next(1000, 200_000)]);
            switch (round % 3)
            {
                case 0: c.Abort(); break;
                case 1: c.Discard(); b.Discard(); break;
                default: c.CommitToParent(); b.Abort(); break;
            }
            if (round % 30 == 29)
                used.Add(s.Usage.ArenaBytes - s.Usage.ArenaFreeBytes);
        }
        output.WriteLine("arena used every 30 rounds: " + string.Join(", ", used));
        Assert.All(used, u => Assert.Equal(0, u)); // nothing survives these rounds, so nothing stays in use
    }
}
