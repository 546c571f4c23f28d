using System.Text;
using Daxfs.Branching;

namespace Daxfs.Branching.Tests;

/// <summary>History, time travel, forks of past versions, tags and diffs between refs.</summary>
public class VersionTests
{
    private static string Text(Branch b, string path) => Encoding.UTF8.GetString(b.ReadAllBytes(path));

    private static void Commit(Store s, string name, string content)
    {
        var b = s.Main.Fork(name);
        b.WriteAllBytes("x", Encoding.UTF8.GetBytes(content));
        b.Commit(name);
    }

    [Fact]
    public void Every_version_of_main_can_be_read_and_survives_reopen()
    {
        using var r = new TempRegion();
        Commit(r.Store, "one", "1");
        Commit(r.Store, "two", "2");
        Commit(r.Store, "three", "3");
        for (int round = 0; round < 2; round++)
        {
            var s = round == 0 ? r.Store : r.Reopen();
            Assert.False(s.AtVersion(0).Exists("x"));
            Assert.Equal("1", Text(s.AtVersion(1), "x"));
            Assert.Equal("2", Text(s.AtVersion(2), "x"));
            Assert.Equal("3", Text(s.AtVersion(3), "x"));
            Assert.Equal("3", Text(s.Main, "x"));
            Assert.Equal(BranchStatus.Version, s.AtVersion(2).Info.Status);
            Assert.Throws<ArgumentOutOfRangeException>(() => s.AtVersion(4));
            Assert.Throws<BranchReadOnlyException>(() => s.AtVersion(2).WriteAllBytes("y", "no"u8));
            Assert.Throws<InvalidOperationException>(() => s.AtVersion(2).Commit());
        }
    }

    [Fact]
    public void A_fork_of_a_past_version_outlives_later_commits_but_cannot_commit_over_them()
    {
        using var r = new TempRegion();
        var s = r.Store;
        Commit(s, "one", "1");
        Commit(s, "two", "2");
        var replay = s.AtVersion(1).Fork("replay");
        Assert.Equal("1", Text(replay, "x"));
        replay.WriteAllBytes("test-output", "ran against v1"u8);
        var sibling = s.Main.Fork("sibling");
        Commit(s, "three", "3");                      // invalidates sibling, not the replay of version 1
        Assert.Throws<BranchInvalidatedException>(() => sibling.List());
        Assert.Equal("ran against v1", Text(replay, "test-output"));
        var ex = Assert.Throws<BranchStaleBaseException>(() => replay.Commit("replay"));
        Assert.Equal(1, ex.BaseVersion);
        Assert.Equal(3, ex.MainVersion);
        Assert.Contains("rebase", ex.Message);
        var nested = replay.Fork("nested");
        nested.WriteAllBytes("n", "n"u8);
        Assert.Throws<BranchStaleBaseException>(() => nested.Commit());

        var s2 = r.Reopen();
        var replayed = s2.GetBranch("replay");
        Assert.Equal("1", Text(replayed, "x"));
        Assert.Equal("ran against v1", Text(replayed, "test-output"));
        Assert.Equal(BranchStatus.Frozen, replayed.Info.Status);
        Assert.Equal("n", Text(s2.GetBranch("nested"), "n"));

        // A fork of the current version is an ordinary branch of main and commits.
        var current = s2.AtVersion(3).Fork("current");
        current.WriteAllBytes("y", "y"u8);
        Assert.Equal(4, current.Commit("from the current version").Sequence);
        // That commit left the fork of version 1 alone too.
        Assert.Equal("1", Text(s2.GetBranch("replay"), "x"));
    }

    [Fact]
    public void Tags_name_versions_and_survive_reopen()
    {
        using var r = new TempRegion();
        var s = r.Store;
        Commit(s, "one", "1");
        Commit(s, "two", "2");
        s.Tag("v1.0", 1);
        s.Tag("base", 0);
        Assert.Throws<DaxfsException>(() => s.Tag("v1.0", 2));
        Assert.Throws<ArgumentException>(() => s.Tag("bad/name", 1));
        Assert.Throws<ArgumentOutOfRangeException>(() => s.Tag("future", 9));
        var s2 = r.Reopen();
        Assert.Equal(new Dictionary<string, long> { ["base"] = 0, ["v1.0"] = 1 }, s2.Tags);
        Assert.Equal("1", Text(s2.Resolve("v1.0"), "x"));
        Assert.False(s2.Resolve("base").Exists("x"));
        Assert.Equal("2", Text(s2.Resolve("@2"), "x"));
        Assert.Equal("2", Text(s2.Resolve("main"), "x"));
        s2.DeleteTag("v1.0");
        Assert.Throws<DaxfsException>(() => s2.DeleteTag("v1.0"));
        Assert.Equal(new[] { "base" }, r.Reopen().Tags.Keys);
    }

    [Fact]
    public void Diffs_between_any_two_refs()
    {
        using var r = new TempRegion();
        var s = r.Store;
        Commit(s, "one", "1");
        var b = s.Main.Fork("two");
        b.WriteAllBytes("x", "22"u8);
        b.Rename("src/a.txt", "moved.txt");
        b.Commit("two");
        s.Tag("first", 1);
        var changes = s.Resolve("first").DiffTo(s.Resolve("2"));
        Assert.Contains(changes, c => c is { Kind: ChangeKind.Modified, Path: "/x" });
        Assert.Contains(changes, c => c is { Kind: ChangeKind.Renamed, Path: "/moved.txt", OldPath: "/src/a.txt" });
        Assert.Equal(2, changes.Count);
        // A version against the one before it.
        Assert.Equal(changes.Select(c => c.Path), s.AtVersion(2).Diff().Select(c => c.Path));
        Assert.Single(s.AtVersion(1).Diff(), c => c is { Kind: ChangeKind.Added, Path: "/x" });
        Assert.Equal(changes.Select(c => c.Path), s.Main.Diff().Select(c => c.Path));
    }
}

/// <summary>Rebase of a branch forked from a past version onto main as it is now.</summary>
public class RebaseTests
{
    private static string Text(Branch b, string path) => Encoding.UTF8.GetString(b.ReadAllBytes(path));

    [Fact]
    public void Non_colliding_changes_are_re_applied_onto_current_main()
    {
        using var r = new TempRegion();
        var s = r.Store;
        var m = s.Main.Fork("m1");
        m.WriteAllBytes("main-only.txt", "main"u8);
        m.Write("src/big.bin", 0, "MAIN"u8);          // main changes the head of the big file
        m.Commit("v1");
        var old = s.AtVersion(0).Fork("feature");      // the feature started from the base image
        old.Write("src/big.bin", 100_000, "FEATURE"u8); // other bytes of the same file
        old.CreateDirectory("new/dir", parents: true);
        old.WriteAllBytes("new/dir/f.txt", "f"u8);
        old.Rename("src/a.txt", "src/renamed.txt");
        old.Chmod("src/b.txt", 0x180);
        old.Delete("empty");
        Assert.Throws<BranchStaleBaseException>(() => old.Commit());

        var rebased = s.Rebase(old, "feature-rebased");
        Assert.Equal("main", Text(rebased, "main-only.txt"));
        var big = rebased.ReadAllBytes("src/big.bin");
        Assert.Equal("MAIN", Encoding.ASCII.GetString(big, 0, 4));
        Assert.Equal("FEATURE", Encoding.ASCII.GetString(big, 100_000, 7));
        Assert.Equal("f", Text(rebased, "new/dir/f.txt"));
        Assert.Equal("alpha\n", Text(rebased, "src/renamed.txt"));
        Assert.False(rebased.Exists("src/a.txt"));
        Assert.Equal(0x180u, rebased.Stat("src/b.txt").Mode);
        Assert.False(rebased.Exists("empty"));
        Assert.True(old.IsLive); // the original is left as it was
        Assert.Equal(2, rebased.Commit("rebased feature").Sequence);
    }

    [Fact]
    public void Colliding_changes_are_reported_with_paths_and_ranges_and_nothing_is_created()
    {
        using var r = new TempRegion();
        var s = r.Store;
        var m = s.Main.Fork("m1");
        m.Write("src/big.bin", 1000, new byte[100]);
        m.Delete("README.md");
        m.Commit("v1");
        var old = s.AtVersion(0).Fork("feature");
        old.Write("src/big.bin", 1050, new byte[10]);    // overlaps main's [1000, 1100)
        old.Append("README.md", "more"u8);               // main deleted it
        old.WriteAllBytes("ok.txt", "fine"u8);
        var ex = Assert.Throws<RebaseConflictException>(() => s.Rebase(old, "feature-rebased"));
        var big = Assert.Single(ex.Conflicts, c => c.Path == "/src/big.bin");
        Assert.Equal(new[] { new ByteRange(1050, 10) }, big.Ours);
        Assert.Equal(new[] { new ByteRange(1000, 100) }, big.Theirs);
        Assert.Contains(ex.Conflicts, c => c.Path == "/README.md" && c.Reason.Contains("deleted", StringComparison.Ordinal));
        Assert.Equal(2, ex.Conflicts.Count);
        Assert.False(s.BranchExists("feature-rebased"));
        Assert.True(old.IsLive);
    }
}

/// <summary>Branches that lost a race (a commit invalidated them) and were forked to keep their changes for a rebase.</summary>
public class KeptRebaseTests
{
    private static string Text(Branch b, string path) => Encoding.UTF8.GetString(b.ReadAllBytes(path));

    private static readonly ForkOptions Keep = new() { KeepForRebase = true };

    private static long Used(Store s) => s.Usage.ArenaBytes - s.Usage.ArenaFreeBytes;

    private static void AssertNoLeak(Store s)
    {
        var v = s.Verify();
        Assert.Equal(v.ReachableBytes, v.ArenaUsedBytes);
    }

    [Fact]
    public void A_kept_loser_is_invalidated_but_rebases_onto_the_winner_and_its_space_comes_back_on_discard()
    {
        using var r = new TempRegion();
        var s = r.Store;
        var loser = s.Main.Fork("loser", Keep);
        loser.WriteAllBytes("loser.txt", "mine"u8);
        loser.Write("src/big.bin", 150_000, Enumerable.Repeat((byte)'L', 20_000).ToArray());
        var plain = s.Main.Fork("plain");
        plain.WriteAllBytes("plain.txt", "lost"u8);
        var winner = s.Main.Fork("winner");
        winner.WriteAllBytes("winner.txt", "won"u8);
        winner.Write("src/big.bin", 0, "WIN"u8);
        winner.Commit("winner");

        // Invalidated as ever: every operation fails, the mount would see ESTALE.
        Assert.True(Assert.Throws<BranchInvalidatedException>(() => loser.ReadAllBytes("loser.txt")).Kept);
        Assert.Throws<BranchInvalidatedException>(() => loser.WriteAllBytes("x", "x"u8));
        Assert.False(Assert.Throws<BranchInvalidatedException>(() => plain.ReadAllBytes("plain.txt")).Kept);
        Assert.True(Assert.Throws<BranchInvalidatedException>(() => s.GetBranch("loser")).Kept);
        Assert.False(Assert.Throws<BranchInvalidatedException>(() => s.GetBranch("plain")).Kept);
        var info = Assert.Single(s.ListBranches(), b => b.Name == "loser");
        Assert.True(info.Kept);
        Assert.Equal(BranchStatus.Invalidated, info.Status);
        Assert.Equal(3, info.Records); // create and write loser.txt, write big.bin: the log is still there
        Assert.False(Assert.Single(s.ListBranches(), b => b.Name == "plain").Kept);
        AssertNoLeak(s);

        // The plain loser's changes are gone; the kept one's are re-applied onto the new main.
        Assert.Contains("not kept", Assert.Throws<BranchInvalidatedException>(() => s.Rebase("plain", "plain-2")).Message, StringComparison.Ordinal);
        var rebased = s.Rebase(loser, "loser-2"); // an old handle works, as does the name
        Assert.Equal("mine", Text(rebased, "loser.txt"));
        Assert.Equal("won", Text(rebased, "winner.txt"));
        var big = rebased.ReadAllBytes("src/big.bin");
        Assert.Equal("WIN", Encoding.ASCII.GetString(big, 0, 3));
        Assert.All(big.AsSpan(150_000, 20_000).ToArray(), b => Assert.Equal((byte)'L', b));
        Assert.Equal(TempRegion.Pattern(200_000, 7).AsSpan(3, 149_997).ToArray(), big.AsSpan(3, 149_997).ToArray());

        // The name stays taken until the kept log is discarded; then its space is reused.
        var ex = Assert.Throws<BranchExistsException>(() => s.Main.Fork("loser"));
        Assert.Contains("kept", ex.Message, StringComparison.Ordinal);
        Assert.Equal(2, rebased.Commit("loser, rebased").Sequence);
        long usedKept = Used(s);
        s.DiscardInvalidated("loser");
        s.DiscardInvalidated("plain"); // an invalidated name that was not kept: only the name goes
        Assert.Throws<BranchNotFoundException>(() => s.GetBranch("loser"));
        Assert.Throws<BranchNotFoundException>(() => s.DiscardInvalidated("loser"));
        Assert.DoesNotContain(s.ListBranches(), b => b.Status == BranchStatus.Invalidated);
        s.Main.Fork("loser").WriteAllBytes("again", "1"u8); // the name is free; the fork's first write reclaims parked space
        Assert.True(Used(s) < usedKept, $"{Used(s)} bytes used after discarding, {usedKept} before");
        AssertNoLeak(s);
    }

    [Fact]
    public void Kept_branches_survive_reopen_and_are_seen_by_another_store_on_the_region()
    {
        using var r = new TempRegion();
        var a = r.Store.Main.Fork("a", Keep);
        a.WriteAllBytes("a.txt", "A"u8);
        var child = a.Fork("a-child"); // inherits keeping
        child.WriteAllBytes("child.txt", "C"u8);
        child.Delete("src/b.txt");
        using var other = Store.Open(r.RegionPath);
        var b = other.Main.Fork("b");
        b.WriteAllBytes("b.txt", "B"u8);
        b.Commit("b wins"); // in the other store
        Assert.True(Assert.Throws<BranchInvalidatedException>(() => r.Store.GetBranch("a-child")).Kept);
        var info = Assert.Single(r.Store.ListBranches(), x => x.Name == "a-child");
        Assert.Equal(("a", 2, 3L), (info.Parent, info.Depth, info.Records)); // create, write, delete
        AssertNoLeak(other);

        other.Dispose();
        var s = r.Reopen();
        Assert.Equal(["a", "a-child"], s.ListBranches().Where(x => x.Kept).Select(x => x.Name).Order(StringComparer.Ordinal));
        var rebased = s.Rebase("a-child", "child-2");
        Assert.Equal("A", Text(rebased, "a.txt"));
        Assert.Equal("C", Text(rebased, "child.txt"));
        Assert.Equal("B", Text(rebased, "b.txt"));
        Assert.False(rebased.Exists("src/b.txt"));
        s.DiscardInvalidated("a"); // with its kept child
        Assert.DoesNotContain(s.ListBranches(), x => x.Kept);
        AssertNoLeak(s);
        Assert.DoesNotContain(r.Reopen().ListBranches(), x => x.Kept);
    }

    [Fact]
    public void A_kept_loser_that_collides_with_the_winner_gets_a_conflict_report()
    {
        using var r = new TempRegion();
        var s = r.Store;
        var loser = s.Main.Fork("loser", Keep);
        loser.Write("src/big.bin", 500, new byte[100]);
        loser.WriteAllBytes("fine.txt", "ok"u8);
        var winner = s.Main.Fork("winner");
        winner.Write("src/big.bin", 550, new byte[10]);
        winner.Commit("winner");
        var ex = Assert.Throws<RebaseConflictException>(() => s.Rebase("loser", "loser-2"));
        var c = Assert.Single(ex.Conflicts);
        Assert.Equal("/src/big.bin", c.Path);
        Assert.Equal(new[] { new ByteRange(500, 100) }, c.Ours);
        Assert.Equal(new[] { new ByteRange(550, 10) }, c.Theirs);
        Assert.False(s.BranchExists("loser-2"));
        Assert.True(Assert.Single(s.ListBranches(), b => b.Name == "loser").Kept); // still there to look at or discard
    }

    [Fact]
    public void Compaction_keeps_the_version_a_kept_branch_needs_until_it_is_discarded()
    {
        using var r = new TempRegion();
        var s = r.Store;
        var first = s.Main.Fork("first");
        first.WriteAllBytes("v1.txt", "1"u8);
        first.Commit("v1");
        var kept = s.Main.Fork("kept", Keep); // based on version 1
        kept.WriteAllBytes("kept.txt", "K"u8);
        for (int v = 2; v <= 4; v++)
        {
            var w = s.Main.Fork($"w{v}");
            w.WriteAllBytes($"v{v}.txt", "x"u8);
            w.Commit($"v{v}");
        }
        Assert.Equal(1, s.Compact().FoldedVersion); // not 4: the kept branch's base stays readable
        Assert.Equal(1, s.OldestVersion);
        var rebased = s.Rebase("kept", "kept-2");
        Assert.Equal("K", Text(rebased, "kept.txt"));
        Assert.Equal("x", Text(rebased, "v4.txt"));
        rebased.Discard();
        s.DiscardInvalidated("kept");
        Assert.Equal(4, s.Compact().FoldedVersion);
        AssertNoLeak(s);
    }

    [Fact]
    public void Only_a_fork_of_main_or_of_a_kept_branch_can_be_kept()
    {
        using var r = new TempRegion();
        var s = r.Store;
        var plain = s.Main.Fork("plain");
        var ex = Assert.Throws<ArgumentException>(() => plain.Fork("child", Keep));
        Assert.Contains("parent 'plain'", ex.Message, StringComparison.Ordinal);
        Assert.False(s.BranchExists("child"));
        // A commit into a parent other than main invalidates the siblings without keeping them.
        var top = s.Main.Fork("top", Keep);
        var x = top.Fork("x");
        x.WriteAllBytes("x.txt", "x"u8);
        var y = top.Fork("y");
        y.WriteAllBytes("y.txt", "y"u8);
        y.CommitToParent();
        Assert.False(Assert.Throws<BranchInvalidatedException>(() => s.GetBranch("x")).Kept);
        Assert.Equal("y", Text(top, "y.txt"));
    }
}
