using System.Text;
using Daxfs.Branching;

namespace Daxfs.Branching.Tests;

/// <summary>One test (at least) per row of the semantics table in docs/semantics.md.</summary>
public class BranchSemanticsTests
{
    private static string Text(Branch b, string path) => Encoding.UTF8.GetString(b.ReadAllBytes(path));

    [Fact]
    public void Fork_sees_the_parent_view_and_changes_stay_private()
    {
        using var r = new TempRegion();
        var a = r.Store.Main.Fork("a");
        Assert.Equal("alpha\n", Text(a, "src/a.txt"));
        a.WriteAllBytes("src/a.txt", "changed"u8);
        a.CreateFile("new.txt");
        Assert.Equal("changed", Text(a, "src/a.txt"));
        Assert.Equal("alpha\n", Text(r.Store.Main, "src/a.txt"));
        Assert.False(r.Store.Main.Exists("new.txt"));
        var b = r.Store.Main.Fork("b");
        Assert.Equal("alpha\n", Text(b, "src/a.txt"));
    }

    [Fact]
    public void Child_sees_parent_changes_made_before_the_fork_only()
    {
        using var r = new TempRegion();
        var a = r.Store.Main.Fork("a");
        a.WriteAllBytes("x", "1"u8);
        var c = a.Fork("c");
        Assert.Equal("1", Text(c, "x"));
        c.WriteAllBytes("x", "2"u8);
        Assert.Equal("1", Text(a, "x"));
    }

    [Fact]
    public void Main_is_read_only()
    {
        using var r = new TempRegion();
        var ex = Assert.Throws<BranchReadOnlyException>(() => r.Store.Main.WriteAllBytes("x", "1"u8));
        Assert.Contains("main", ex.Message);
        Assert.Throws<BranchReadOnlyException>(() => r.Store.Main.CreateDirectory("d"));
        Assert.Throws<BranchReadOnlyException>(() => r.Store.Main.Delete("README.md"));
    }

    [Fact]
    public void Parent_with_live_children_is_frozen_until_they_end()
    {
        using var r = new TempRegion();
        var a = r.Store.Main.Fork("a");
        var c = a.Fork("c");
        var ex = Assert.Throws<BranchFrozenException>(() => a.WriteAllBytes("x", "1"u8));
        Assert.Equal(1, ex.LiveChildren);
        Assert.Equal(BranchStatus.Frozen, a.Info.Status);
        c.Discard();
        a.WriteAllBytes("x", "1"u8);
        Assert.Equal("1", Text(a, "x"));
    }

    [Fact]
    public void Commit_merges_the_whole_chain_into_main_as_one_version_and_invalidates_all_others()
    {
        using var r = new TempRegion();
        var s = r.Store;
        var a = s.Main.Fork("a");
        a.WriteAllBytes("from-a", "A"u8);
        var b = a.Fork("b");
        b.WriteAllBytes("from-b", "B"u8);
        var sibling = a.Fork("sibling");          // sibling at the same level as b
        var other = s.Main.Fork("other");          // a branch elsewhere
        var otherChild = other.Fork("other-child"); // and its descendant
        sibling.Discard();
        var v = b.Commit("b wins");
        Assert.Equal(1, v.Sequence);
        Assert.Equal("b wins", v.Message);
        Assert.Equal("b", v.SourceBranch);
        Assert.Equal(4, v.Records); // create + write, twice
        Assert.Equal("A", Text(s.Main, "from-a"));
        Assert.Equal("B", Text(s.Main, "from-b"));
        Assert.Single(s.Versions);
        Assert.Throws<BranchInvalidatedException>(() => other.List());
        Assert.Throws<BranchInvalidatedException>(() => otherChild.Stat("/"));
        Assert.Throws<BranchInvalidatedException>(() => s.GetBranch("other"));
        // The committed chain is gone.
        Assert.Throws<BranchInvalidatedException>(() => b.List());
        Assert.Throws<BranchInvalidatedException>(() => a.List());
        Assert.Throws<BranchNotFoundException>(() => s.GetBranch("a"));
        Assert.Single(s.ListBranches(), i => i.Status != BranchStatus.Invalidated);
    }

    [Fact]
    public void Commit_requires_a_leaf()
    {
        using var r = new TempRegion();
        var a = r.Store.Main.Fork("a");
        a.Fork("c");
        Assert.Throws<BranchNotLeafException>(() => a.Commit());
        Assert.Throws<BranchNotLeafException>(() => a.CommitToParent());
        Assert.Throws<BranchNotLeafException>(() => a.Discard());
    }

    [Fact]
    public void Commit_to_parent_merges_into_the_parent_only_and_invalidates_siblings()
    {
        using var r = new TempRegion();
        var s = r.Store;
        var p = s.Main.Fork("p");
        p.WriteAllBytes("p", "P"u8);
        var c1 = p.Fork("c1");
        var c2 = p.Fork("c2");
        var c2child = c2.Fork("c2child");
        var elsewhere = s.Main.Fork("elsewhere");
        c1.WriteAllBytes("c1", "C1"u8);
        Assert.Null(c1.CommitToParent("merge c1"));
        Assert.Equal("C1", Text(p, "c1"));
        Assert.False(s.Main.Exists("c1"));
        Assert.Empty(s.Versions);
        Assert.Throws<BranchInvalidatedException>(() => c2.List());
        Assert.Throws<BranchInvalidatedException>(() => c2child.List());
        Assert.Throws<BranchInvalidatedException>(() => c1.List());
        // The parent goes on, writable again; other lineages are untouched.
        p.WriteAllBytes("after", "1"u8);
        elsewhere.WriteAllBytes("e", "E"u8);
        // Committing the parent later carries the merged child too.
        p.Commit("p");
        Assert.Equal("C1", Text(s.Main, "c1"));
        Assert.Equal("1", Text(s.Main, "after"));
    }

    [Fact]
    public void Commit_to_parent_when_the_parent_is_main_makes_a_version()
    {
        using var r = new TempRegion();
        var a = r.Store.Main.Fork("a");
        a.WriteAllBytes("x", "1"u8);
        var v = a.CommitToParent("to main");
        Assert.NotNull(v);
        Assert.Equal(1, v!.Value.Sequence);
        Assert.Equal("1", Text(r.Store.Main, "x"));
    }

    [Fact]
    public void Abort_discards_the_chain_back_to_main_and_its_descendants_only()
    {
        using var r = new TempRegion();
        var s = r.Store;
        var a = s.Main.Fork("a");
        var b = a.Fork("b");
        var c = b.Fork("c");
        var side = b.Fork("side");
        var other = s.Main.Fork("other");
        other.WriteAllBytes("o", "O"u8);
        c.Abort();
        foreach (var gone in new[] { a, b, c, side })
            Assert.Throws<BranchInvalidatedException>(() => gone.List());
        Assert.Throws<BranchNotFoundException>(() => s.GetBranch("a"));
        Assert.Equal("O", Text(other, "o"));
        Assert.Empty(s.Versions);
        // The names are free again.
        s.Main.Fork("a").WriteAllBytes("again", "1"u8);
    }

    [Fact]
    public void Discard_removes_one_leaf_and_the_parent_goes_on()
    {
        using var r = new TempRegion();
        var a = r.Store.Main.Fork("a");
        var c = a.Fork("c");
        c.WriteAllBytes("x", "1"u8);
        c.Discard();
        Assert.Throws<BranchInvalidatedException>(() => c.List());
        Assert.False(a.Exists("x"));
        a.WriteAllBytes("y", "2"u8);
        Assert.Equal("2", Text(a, "y"));
    }

    [Fact]
    public void Branch_names_are_validated()
    {
        using var r = new TempRegion();
        foreach (var bad in new[] { "", "main", "a/b", "-x", ".x", "has space", new string('x', 65), "a\0b" })
            Assert.Throws<ArgumentException>(() => r.Store.Main.Fork(bad));
        r.Store.Main.Fork("ok-1_2.3");
        Assert.Throws<BranchExistsException>(() => r.Store.Main.Fork("ok-1_2.3"));
        Assert.Throws<BranchNotFoundException>(() => r.Store.GetBranch("nope"));
    }

    [Fact]
    public void A_thousand_live_branches_and_slots_are_reused_without_a_lifetime_cap()
    {
        using var r = new TempRegion(slots: 1100, capacity: 256L << 20);
        var s = r.Store;
        var branches = new List<Branch>();
        for (int i = 0; i < 1000; i++)
        {
            var b = s.Main.Fork($"b{i}");
            b.WriteAllBytes("f", BitConverter.GetBytes(i));
            branches.Add(b);
        }
        Assert.Equal(1001, s.Usage.LiveBranches);
        for (int i = 0; i < 1000; i += 97)
            Assert.Equal(i, BitConverter.ToInt32(branches[i].ReadAllBytes("f")));
        long freeBefore = s.Usage.ArenaFreeBytes;
        foreach (var b in branches) b.Discard();
        Assert.True(s.Usage.ArenaFreeBytes > freeBefore);
        // Many more lifetimes than slots.
        for (int round = 0; round < 5; round++)
            for (int i = 0; i < 1000; i++)
                s.Main.Fork($"r{round}-{i}").Discard();
        Assert.Equal(1, s.Usage.LiveBranches);
        // Space of ended branches came back.
        Assert.Equal(s.Usage.ArenaBytes, s.Usage.ArenaFreeBytes);
    }

    [Fact]
    public void Branch_table_full_is_a_clear_error()
    {
        using var r = new TempRegion(slots: 4);
        r.Store.Main.Fork("a");
        r.Store.Main.Fork("b");
        r.Store.Main.Fork("c");
        Assert.Throws<BranchTableFullException>(() => r.Store.Main.Fork("d"));
    }

    /// <summary>
    /// A log whose next preferred block (up to 1 MiB) has no free run takes a smaller one: the region is full
    /// only when the record itself cannot be placed (a 1-byte write failed with 958,464 bytes free before).
    /// </summary>
    [Fact]
    public void A_log_takes_a_smaller_block_when_no_large_run_is_free()
    {
        using var r = new TempRegion(capacity: 8L << 20);
        var hog = r.Store.Main.Fork("hog");
        var chunk = new byte[64 * 1024];
        int written = 0;
        Assert.Throws<RegionFullException>(() =>
        {
            for (; written < 10_000; written++)
                hog.Write($"f{written}", 0, chunk);
        });
        long free = r.Store.Usage.ArenaFreeBytes - r.Store.Usage.ReserveBytes; // the reserve is for what frees space
        Assert.True(free < chunk.Length + 2 * 4096, $"region full with {free} bytes free: a smaller block would have held the next record");
        Assert.Equal(chunk.Length, hog.Stat($"f{written - 1}").Size);

        // Small writes still fit in what is left, block by block, down to the last pages.
        var small = r.Store.Main.Fork("small");
        int smallWrites = 0;
        var ex = Record.Exception(() =>
        {
            for (; smallWrites < 10_000; smallWrites++)
                small.Write($"s{smallWrites}", 0, "x"u8);
        });
        Assert.IsType<RegionFullException>(ex);
        Assert.True(smallWrites > 0 || free < 4096, $"{free} bytes free, yet not one 1-byte write fitted");
    }

    [Fact]
    public void Region_full_is_a_clear_error_that_changes_nothing()
    {
        using var r = new TempRegion(capacity: 4L << 20);
        var a = r.Store.Main.Fork("a");
        a.WriteAllBytes("keep", "kept"u8);
        var big = new byte[512 * 1024];
        var ex = Record.Exception(() => { for (int i = 0; i < 100; i++) a.Write($"f{i}", 0, big); });
        Assert.IsType<RegionFullException>(ex);
        Assert.Equal("kept", Text(a, "keep"));
        // Every file that exists reads whole: nothing half-written is visible.
        foreach (var e in a.List())
            if (e.Name.StartsWith('f'))
                Assert.True(a.Stat(e.Name).Size is 0 or 512 * 1024);
        a.Discard();
        // Space comes back once the branch is gone.
        var b = r.Store.Main.Fork("b");
        b.Write("again", 0, big);
        var reopened = r.Reopen();
        Assert.Equal(512 * 1024, reopened.GetBranch("b").Stat("again").Size);
    }

    [Fact]
    public void Fork_depth_64_reads_the_same_bytes_as_depth_1()
    {
        using var r = new TempRegion();
        var b = r.Store.Main.Fork("d1");
        b.Write("src/big.bin", 1000, "X"u8);
        for (int d = 2; d <= 64; d++)
            b = b.Fork($"d{d}");
        var data = b.ReadAllBytes("src/big.bin");
        var expect = TempRegion.Pattern(200_000, 7);
        expect[1000] = (byte)'X';
        Assert.Equal(expect, data);
        Assert.Equal(64, b.Depth);
    }

    [Fact]
    public void Read_lease_keeps_spans_of_an_aborted_branch_readable()
    {
        using var r = new TempRegion();
        var a = r.Store.Main.Fork("a");
        var payload = TempRegion.Pattern(100_000, 3);
        a.Write("f", 0, payload);
        using (var lease = r.Store.BeginRead())
        {
            var range = a.Read("f");
            a.Abort();
            // The space is parked, not reused, while the lease is held.
            var b = r.Store.Main.Fork("b");
            b.Write("g", 0, new byte[100_000]);
            Assert.True(r.Store.Usage.ParkedBytes > 0);
            Assert.Equal(payload, range.ToArray());
        }
        // After the lease, the next change reclaims the parked space.
        r.Store.Main.Fork("c");
        Assert.Equal(0, r.Store.Usage.ParkedBytes);
    }
}
