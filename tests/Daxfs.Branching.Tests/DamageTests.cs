using System.Security.Cryptography;
using System.Text;
using Daxfs.Branching.Format;
using Daxfs.Branching.Log;
using Xunit.Abstractions;

namespace Daxfs.Branching.Tests;

/// <summary>
/// Damage is reported, never silently cut: a bit flipped anywhere in committed history is a
/// <see cref="CorruptionException"/> naming what depends on it, and verifying never changes the file.
/// </summary>
public class DamageTests(ITestOutputHelper output)
{
    /// <summary>A region on memory with versions 1, 2 and 3 of one file, a tag, and a live branch with a child.</summary>
    private static TempRegion ThreeVersions()
    {
        var r = new TempRegion(capacity: 4L << 20, slots: 16);
        for (int v = 1; v <= 3; v++)
        {
            var b = r.Store.Main.Fork($"v{v}");
            b.WriteAllBytes("file.txt", Encoding.UTF8.GetBytes($"content of version {v}"));
            b.WriteAllBytes($"only-in-{v}.txt", Encoding.UTF8.GetBytes($"{v}"));
            b.Commit($"version {v}");
        }
        r.Store.Tag("first", 1);
        var live = r.Store.Main.Fork("live");
        live.WriteAllBytes("live.txt", "live"u8);
        live.Fork("child").WriteAllBytes("child.txt", "child"u8);
        return r;
    }

    /// <summary>Main's own records: offset, length, kind and (for versions) sequence.</summary>
    private static List<(long Offset, long Length, RecordKind Kind, long Seq)> MainRecords(Store s) => Records(s, s.Main.State);

    /// <summary>A branch's own records: offset, length, kind and (for versions) sequence.</summary>
    private static List<(long Offset, long Length, RecordKind Kind, long Seq)> Records(Store s, Branching.BranchState branch)
    {
        var c = s.Cursor(branch.Log.Ref);
        var list = new List<(long, long, RecordKind, long)>();
        var r = new Rec();
        while (c.MoveNext())
        {
            var kind = (RecordKind)c.Header.Kind;
            RecordCodec.Decode(r, kind, c.Header.TimeNs, c.Offset, c.Body, c.BodyOffset);
            list.Add((c.Offset, c.Header.Length, kind, kind == RecordKind.Version ? r.Seq : 0));
        }
        return list;
    }

    private static string Hash(string path) => Convert.ToHexString(SHA256.HashData(File.ReadAllBytes(path)));

    /// <summary>A hash of the branch slots, the bitmap, the base image and the arena: everything but the header,
    /// control and process-table pages, which any store that opens the region writes to (its entry, the lock).</summary>
    private static string HashOfData(string path)
    {
        var bytes = File.ReadAllBytes(path);
        var sb = System.Runtime.InteropServices.MemoryMarshal.Read<Superblock>(bytes);
        return Convert.ToHexString(SHA256.HashData(bytes.AsSpan((int)sb.SlotTableOffset)));
    }

    private static void Flip(string path, long offset, byte mask) => TempRegion.Flip(path, offset, mask);

    [Fact]
    public void A_region_file_truncated_while_open_fails_the_next_change_naming_the_file_and_closes_cleanly()
    {
        using var r = new TempRegion(capacity: 4L << 20, slots: 16);
        var b = r.Store.Main.Fork("b");
        b.WriteAllBytes("x.txt", "x"u8);
        // Keep the header and control pages (what a change reads before it checks), lose the rest.
        using (var f = new FileStream(r.RegionPath, FileMode.Open, FileAccess.ReadWrite))
            f.SetLength(8192);
        var e = Assert.Throws<CorruptionException>(() => b.WriteAllBytes("y.txt", "y"u8));
        Assert.Equal("region file", e.Structure);
        Assert.Contains($"{r.RegionPath} was truncated to 8192 bytes while open", e.Message);
        Assert.Throws<CorruptionException>(() => r.Store.Main.Fork("c"));
        r.Store.Dispose(); // no SIGBUS: the process table past the end is left alone
        var reopen = Assert.Throws<CorruptionException>(() => Store.Open(r.RegionPath));
        Assert.Contains("it was truncated", reopen.Message);
    }

    [Fact]
    public void A_fencing_open_serves_what_is_intact_and_fences_the_damaged_branch_and_its_children()
    {
        using var r = ThreeVersions();
        var liveRecord = Records(r.Store, r.Store.GetBranch("live").State)[0];
        r.Store.Dispose();
        Flip(r.RegionPath, liveRecord.Offset + liveRecord.Length / 2, 0x10);
        string damaged = HashOfData(r.RegionPath);
        using (var partial = Store.Open(r.RegionPath))
        {
            // An open reads main alone: main is served, and the damage is found when the branch is first read.
            Assert.Equal("content of version 3", Encoding.UTF8.GetString(partial.Main.ReadAllBytes("file.txt")));
            var found = Assert.Throws<CorruptionException>(() => partial.GetBranch("live"));
            Assert.Equal(liveRecord.Offset, found.Offset);
            Assert.Throws<StorePoisonedException>(() => partial.Main.ReadAllBytes("file.txt")); // half-read: refused from then on
        }
        using (var next = Store.Open(r.RegionPath))
            Assert.Contains("branch 'live'", next.Recovery.SpaceNotRebuilt); // the store that failed left space to rebuild: the damage stops that, not the open

        using (var s = Store.OpenFenced(r.RegionPath))
        {
            var found = Assert.Single(s.Fenced);
            Assert.Equal(liveRecord.Offset, found.Offset);
            Assert.Contains("the log of branch 'live'", found.Detail);
            // Main, its versions and its tags read as usual.
            Assert.Equal("content of version 3", Encoding.UTF8.GetString(s.Main.ReadAllBytes("file.txt")));
            Assert.Equal("content of version 2", Encoding.UTF8.GetString(s.AtVersion(2).ReadAllBytes("file.txt")));
            Assert.Equal(1, s.Tags["first"]);
            // The damaged branch and the child forked from it answer with the damage, for reads and listings alike.
            var live = Assert.Throws<CorruptionException>(() => s.GetBranch("live").ReadAllBytes("live.txt"));
            Assert.Equal(liveRecord.Offset, live.Offset);
            var child = Assert.Throws<CorruptionException>(() => s.GetBranch("child").ReadAllBytes("child.txt"));
            Assert.Contains("forked from 'live'", child.Consequences);
            Assert.Throws<CorruptionException>(() => s.GetBranch("child").Exists("README.md"));
            // No change while anything is fenced: a commit or fork could drop or overwrite what is still salvageable.
            var change = Assert.Throws<CorruptionException>(() => s.Main.Fork("new"));
            Assert.Contains("refuses every change", change.Message);
        }
        // Nothing was cut, freed or rewritten.
        Assert.Equal(damaged, HashOfData(r.RegionPath));
    }

    [Fact]
    public void Damage_in_mains_log_fences_main_and_its_branches_while_intact_versions_stay_readable()
    {
        using var r = ThreeVersions();
        var v3 = MainRecords(r.Store).Single(x => x.Kind == RecordKind.Version && x.Seq == 3);
        r.Store.Dispose();
        Flip(r.RegionPath, v3.Offset + v3.Length / 2, 0x01);
        string damaged = HashOfData(r.RegionPath);
        using (var s = Store.OpenFenced(r.RegionPath))
        {
            Assert.Contains("main's log", Assert.Single(s.Fenced).Detail);
            Assert.Throws<CorruptionException>(() => s.Main.ReadAllBytes("file.txt"));
            Assert.Throws<CorruptionException>(() => s.GetBranch("live").ReadAllBytes("live.txt"));
            Assert.Equal("content of version 2", Encoding.UTF8.GetString(s.AtVersion(2).ReadAllBytes("file.txt")));
        }
        Assert.Equal(damaged, HashOfData(r.RegionPath));
    }

    [Fact]
    public void A_bit_flipped_in_a_committed_version_is_reported_and_nothing_is_cut()
    {
        using var r = ThreeVersions();
        var v2 = MainRecords(r.Store).Single(x => x.Kind == RecordKind.Version && x.Seq == 2);
        long mainTail = r.Store.Main.State.Log.Tail;
        r.Store.Dispose();
        Flip(r.RegionPath, v2.Offset + v2.Length / 2, 0x08);
        string damaged = Hash(r.RegionPath);

        // Verifying, through a read-only snapshot, reports it and changes no byte of the file.
        var e = Assert.Throws<CorruptionException>(() => Store.OpenSnapshot(r.RegionPath, TimeSpan.FromSeconds(5)).Dispose());
        output.WriteLine(e.Message);
        Assert.Equal(v2.Offset, e.Offset);
        Assert.Contains("main's log", e.Message);
        Assert.Contains("versions up to 1 are intact", e.Consequences);
        Assert.Equal(damaged, Hash(r.RegionPath));

        // Opening for writing reports it too: version 3 (intact, after it) is not dropped, nor anything else.
        e = Assert.Throws<CorruptionException>(() => Store.Open(r.RegionPath).Dispose());
        Assert.Contains("not cut back", e.Message);
        var after = File.ReadAllBytes(r.RegionPath);
        var sb = System.Runtime.InteropServices.MemoryMarshal.Read<Superblock>(after);
        Assert.Equal(mainTail, BitConverter.ToInt64(after, (int)(sb.SlotTableOffset + BranchSlot.TailOffset))); // main's tail still covers every version

        // Put the bit back: every version is there, as it was.
        Flip(r.RegionPath, v2.Offset + v2.Length / 2, 0x08);
        var s = r.Reopen();
        Assert.Equal([1L, 2L, 3L], s.Versions.Select(v => v.Sequence));
        Assert.Equal("content of version 3", Encoding.UTF8.GetString(s.Main.ReadAllBytes("file.txt")));
        Assert.Equal(1, s.Tags["first"]);
        Assert.Equal("child", Encoding.UTF8.GetString(s.GetBranch("child").ReadAllBytes("child.txt")));
    }

    [Fact]
    public void On_a_file_even_after_a_reboot_a_flip_in_flushed_history_is_damage_not_a_torn_write()
    {
        using var r = new TempRegion(capacity: 4L << 20, slots: 16, onDisk: true);
        for (int v = 1; v <= 3; v++)
        {
            var b = r.Store.Main.Fork($"v{v}");
            b.WriteAllBytes("file.txt", Encoding.UTF8.GetBytes($"version {v}"));
            b.Commit($"version {v}");
        }
        var v2 = MainRecords(r.Store).Single(x => x.Kind == RecordKind.Version && x.Seq == 2);
        r.Store.Dispose();
        var bytes = File.ReadAllBytes(r.RegionPath);
        bytes[v2.Offset + v2.Length / 2] ^= 0x10;
        ReopenAndRecoveryTests.AsAfterAReboot(bytes); // a torn write is possible on this file now, but only past what was flushed
        File.WriteAllBytes(r.RegionPath, bytes);
        var e = Assert.Throws<CorruptionException>(() => Store.Open(r.RegionPath).Dispose());
        Assert.Contains("already flushed to the file", e.Message);
        Assert.Equal(bytes.Length, new FileInfo(r.RegionPath).Length);
        bytes[v2.Offset + v2.Length / 2] ^= 0x10;
        File.WriteAllBytes(r.RegionPath, bytes);
        Assert.Equal(3, r.Reopen().Versions.Count);
    }

    [Fact]
    public void A_snapshot_and_a_change_exclude_each_other()
    {
        using var r = ThreeVersions();
        r.Store.EnterChange(); // a change under way: a snapshot waits for it
        try
        {
            Assert.Throws<StoreBusyException>(() => Store.OpenSnapshot(r.RegionPath, TimeSpan.FromMilliseconds(300)).Dispose());
        }
        finally
        {
            r.Store.ExitChange(changed: false);
        }
        using (var snap = Store.OpenSnapshot(r.RegionPath, TimeSpan.FromSeconds(5)))
        {
            using var second = Store.OpenSnapshot(r.RegionPath, TimeSpan.FromSeconds(5)); // snapshots share
            r.Store.LockTimeout = TimeSpan.FromMilliseconds(300);
            Assert.Throws<StoreBusyException>(() => r.Store.Main.Fork("while-checking")); // no change under a picture being checked
            Assert.Throws<InvalidOperationException>(() => snap.Main.Fork("through-a-snapshot"));
        }
        r.Store.Main.Fork("after");
        Assert.True(r.Store.BranchExists("after"));
    }

    [Fact]
    public void A_check_lists_every_damaged_log_in_one_pass()
    {
        using var r = ThreeVersions();
        var other = r.Store.Main.Fork("other");
        other.WriteAllBytes("o.txt", "o"u8);
        long live = r.Store.GetBranch("live").State.OwnBlocks[0].Offset, second = other.State.OwnBlocks[0].Offset;
        r.Store.Dispose();
        Flip(r.RegionPath, live + 4, 0x01);
        Flip(r.RegionPath, second + 4, 0x01);
        string before = Hash(r.RegionPath);
        using (var s = Store.OpenSnapshot(r.RegionPath, TimeSpan.FromSeconds(5), repair: true))
        {
            var damage = s.Recovery.RepairedDamage;
            Assert.Equal(2, damage.Count);
            Assert.Contains(damage, d => d.Detail.Contains("branch 'live'", StringComparison.Ordinal));
            Assert.Contains(damage, d => d.Detail.Contains("branch 'other'", StringComparison.Ordinal));
            Assert.Equal([1L, 2L, 3L], s.Versions.Select(v => v.Sequence)); // main is whole
        }
        Assert.Equal(before, Hash(r.RegionPath));
    }

    [Fact]
    public void A_bit_flipped_in_a_live_branchs_first_block_header_names_the_branch_and_its_child()
    {
        using var r = ThreeVersions();
        long block = r.Store.GetBranch("live").State.OwnBlocks[0].Offset;
        r.Store.Dispose();
        Flip(r.RegionPath, block + 4, 0x01);
        string damaged = Hash(r.RegionPath);
        CorruptionException e;
        using (var s = Store.Open(r.RegionPath))
            e = Assert.Throws<CorruptionException>(() => s.GetBranch("child")); // read with its ancestors
        output.WriteLine(e.Message);
        Assert.Contains("branch 'live'", e.Message);
        Assert.Contains("'child'", e.Consequences);
        Assert.Contains("main and the other branches are intact", e.Consequences);
        Flip(r.RegionPath, block + 4, 0x01);
        Assert.Equal("live", Encoding.UTF8.GetString(r.Reopen().GetBranch("live").ReadAllBytes("live.txt"))); // nothing was dropped
        Assert.NotEqual(damaged, Hash(r.RegionPath));
    }

    /// <summary>
    /// Every byte of main's log, flipped one at a time: each flip either reads back identical (a byte no record
    /// covers, or one no check depends on) or gives <see cref="CorruptionException"/>, found by the read-only
    /// check; no version is ever silently missing, and the check never changes a byte of the file.
    /// </summary>
    [Fact]
    [Trait("Category", "Slow")]
    public void Every_byte_of_mains_log_flipped_reads_back_whole_or_is_reported()
    {
        using var r = ThreeVersions();
        var main = r.Store.Main.State;
        var blocks = main.OwnBlocks.ToList();
        long end = MainRecords(r.Store).Max(x => x.Offset + x.Length);
        string expected = Picture(r.Store);
        r.Store.Dispose();
        int identical = 0, reported = 0;
        foreach (var (offset, pages) in blocks)
        {
            long blockEnd = offset + pages * 4096;
            long stop = end > offset && end <= blockEnd ? Math.Min(blockEnd, end + 64) : blockEnd; // past the tail only unused bytes
            for (long at = offset; at < stop; at++)
            {
                Flip(r.RegionPath, at, 0xFF);
                string before = Hash(r.RegionPath);
                try
                {
                    using var s = Store.OpenSnapshot(r.RegionPath, TimeSpan.FromSeconds(5));
                    var report = s.Check();
                    if (report.Damage.Count > 0)
                        reported++;
                    else
                    {
                        Assert.True(expected == Picture(s), $"flipping byte {at} changed what reads back, silently");
                        identical++;
                    }
                }
                catch (CorruptionException)
                {
                    reported++;
                }
                Assert.True(before == Hash(r.RegionPath), $"checking with byte {at} flipped changed the file");
                Flip(r.RegionPath, at, 0xFF);
            }
        }
        output.WriteLine($"{identical} flips read back identical, {reported} were reported as damage");
        Assert.True(reported > 0 && identical > 0);
    }

    /// <summary>Every version of main, every tag and every live branch's files, as text.</summary>
    private static string Picture(Store s)
    {
        var sb = new StringBuilder();
        foreach (var v in s.Versions)
        {
            sb.Append($"v{v.Sequence} {v.Message}\n");
            var at = s.AtVersion(v.Sequence);
            foreach (var e in at.List("/"))
                if (e.Kind == Index.NodeKind.File)
                    sb.Append($"  {e.Name}={Encoding.UTF8.GetString(at.ReadAllBytes(e.Name))}\n");
        }
        foreach (var (tag, v) in s.Tags) sb.Append($"tag {tag}={v}\n");
        foreach (var b in s.ListBranches().Where(b => b.Status is not (BranchStatus.Main or BranchStatus.Invalidated)).Select(b => b.Name))
            foreach (var e in s.GetBranch(b).List("/"))
                if (e.Kind == Index.NodeKind.File)
                    sb.Append($"{b}: {e.Name}={Encoding.UTF8.GetString(s.GetBranch(b).ReadAllBytes(e.Name))}\n");
        return sb.ToString();
    }
}
