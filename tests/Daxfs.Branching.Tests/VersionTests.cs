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
