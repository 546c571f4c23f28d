using System.Text;
using Daxfs.Branching.Format;
using Daxfs.Branching.Index;
using Xunit;

namespace Daxfs.Branching.Tests;

/// <summary>
/// Checkpoints of main's view: an open reads main from the latest one and replays only the versions after it; a
/// view of an older version reads the history then; a damaged or misplaced checkpoint is never followed.
/// </summary>
public class CheckpointTests
{
    private static string Text(Branch b, string path) => Encoding.UTF8.GetString(b.ReadAllBytes(path));

    private static long Word(Store s) => Volatile.Read(ref s.Region.Word(FormatConstants.ControlOffset + ControlBlock.CheckpointOffset));

    /// <summary>A region with <paramref name="versions"/> commits, each rewriting file-N and adding a link and an attribute, checkpointed every 8 records.</summary>
    private static TempRegion History(int versions)
    {
        var r = new TempRegion();
        r.Store.CheckpointEvery = 8;
        for (int v = 1; v <= versions; v++)
        {
            var b = r.Store.Main.Fork($"v{v}");
            b.WriteAllBytes($"file-{v % 7}", Encoding.UTF8.GetBytes($"version {v}"));
            b.Write("src/big.bin", v * 1000, TempRegion.Filled(500, (byte)v));
            if (v % 5 == 0) b.CreateSymlink($"link-{v}", $"file-{v % 7}");
            if (v % 3 == 0) b.SetExtendedAttribute("README.md", $"user.v{v}", Encoding.UTF8.GetBytes($"{v}"));
            if (v % 11 == 0) b.Delete("src/a.txt");
            if (v % 11 == 1 && v > 1) b.WriteAllBytes("src/a.txt", "back"u8);
            b.Commit($"version {v}");
        }
        r.Store.Dispose();
        return r;
    }

    [Fact]
    public void An_open_reads_main_from_the_checkpoint_and_reads_the_same_as_a_full_replay()
    {
        using var r = History(40);
        string full;
        using (var s = Store.Open(r.RegionPath))
        {
            Assert.NotEqual(0, Word(s));
            Assert.True(s.FirstReadVersion > 30, $"read from version {s.FirstReadVersion}");
            var sb = new StringBuilder();
            ReopenAndRecoveryTests.Dump(s.Main, "/", sb, attributes: true);
            full = sb.ToString();
            foreach (var (name, value) in s.Main.GetExtendedAttributes("README.md"))
                full += name + "=" + Encoding.UTF8.GetString(value) + "\n";
            s.ReadHistory(0); // every version replayed from the base image
            Assert.Equal(0, s.FirstReadVersion);
            var again = new StringBuilder();
            ReopenAndRecoveryTests.Dump(s.Main, "/", again, attributes: true);
            foreach (var (name, value) in s.Main.GetExtendedAttributes("README.md"))
                again.Append(name).Append('=').Append(Encoding.UTF8.GetString(value)).Append('\n');
            Assert.Equal(full, again.ToString());
            Assert.Empty(s.Check().Damage); // the checkpoint holds exactly main's view at its version
        }
    }

    [Fact]
    public void Past_versions_tags_and_forks_of_them_read_the_history_when_asked()
    {
        using var r = History(30);
        using (var s = Store.Open(r.RegionPath))
        {
            s.Tag("early", 4);
            Assert.Equal("version 4", Text(s.AtVersion(4), "file-4"));
            Assert.Equal("version 4", Text(s.Resolve("early"), "file-4"));
            var replay = s.Fork(s.AtVersion(2), "replay");
            replay.WriteAllBytes("new.txt", "n"u8);
            Assert.Equal("version 2", Text(replay, "file-2"));
        }
        using (var s = Store.Open(r.RegionPath))
        {
            // A branch forked from version 2 needs that view: main is read from its base image for it.
            Assert.Equal("version 2", Text(s.GetBranch("replay"), "file-2"));
            Assert.Equal("version 30", Text(s.Main, "file-2"));
            Assert.NotEmpty(s.Main.Diff()); // against version 29
        }
    }

    [Fact]
    public void A_damaged_checkpoint_is_never_followed_and_verify_names_it()
    {
        using var r = History(30);
        long at;
        using (var s = Store.Open(r.RegionPath))
            at = Word(s);
        TempRegion.Flip(r.RegionPath, at + ViewCheckpoint.HeaderSize + 20, 0x04);
        using (var s = Store.Open(r.RegionPath))
        {
            Assert.Equal(0, s.FirstReadVersion); // replayed instead
            Assert.Equal("version 30", Text(s.Main, "file-2"));
            var damage = Assert.Single(s.Check().Damage);
            Assert.Equal("checkpoint", damage.Structure);
            Assert.Contains("fails its checksum", damage.Detail);
            var b = s.Main.Fork("next");
            b.WriteAllBytes("x", "x"u8);
            s.CheckpointEvery = 1;
            b.Commit("writes a new checkpoint");
            Assert.Empty(s.Check().Damage);
        }
    }

    [Fact]
    public void A_checkpoint_word_pointing_anywhere_else_is_refused()
    {
        using var r = History(20);
        using var s = Store.Open(r.RegionPath);
        long good = Word(s);
        ref long word = ref s.Region.Word(FormatConstants.ControlOffset + ControlBlock.CheckpointOffset);
        foreach (long hostile in new[] { 4096L, 1L, s.Usage.Capacity - 4096, long.MaxValue & ~4095L, good + 4096, -4096 })
        {
            Volatile.Write(ref word, hostile);
            using var other = Store.Open(r.RegionPath);
            Assert.Equal("version 20", Text(other.Main, "file-6"));
            Assert.Equal(0, other.FirstReadVersion);
        }
        Volatile.Write(ref word, good);
    }

    [Fact]
    public void After_a_compaction_the_old_checkpoint_is_not_used_and_the_next_one_is_of_the_new_image()
    {
        using var r = History(20);
        using (var s = Store.Open(r.RegionPath))
        {
            s.Compact(new CompactOptions { Keep = 2 });
            Assert.Equal("version 20", Text(s.Main, "file-6"));
        }
        using (var s = Store.Open(r.RegionPath))
        {
            Assert.Equal("version 20", Text(s.Main, "file-6"));
            Assert.Equal("version 18", Text(s.AtVersion(18), "file-4"));
            s.CheckpointEvery = 1;
            var b = s.Main.Fork("after");
            b.WriteAllBytes("file-6", "after"u8);
            b.Commit("after compaction");
        }
        using (var s = Store.Open(r.RegionPath))
        {
            Assert.Equal(21, s.FirstReadVersion);
            Assert.Equal("after", Text(s.Main, "file-6"));
            Assert.Empty(s.Check().Damage);
            var report = s.Verify();
            Assert.Equal(report.ReachableBytes, report.ArenaUsedBytes);
        }
    }

    [Fact]
    public void A_store_that_commits_holds_only_the_views_since_its_last_checkpoint_and_reads_older_ones_when_asked()
    {
        using var r = new TempRegion();
        var s = r.Store;
        s.CheckpointEvery = 8;
        for (int v = 1; v <= 30; v++)
        {
            var b = s.Main.Fork($"v{v}");
            b.WriteAllBytes($"file-{v % 4}", Encoding.UTF8.GetBytes($"version {v}"));
            b.Write("src/big.bin", 0, TempRegion.Filled(8000, (byte)v));
            b.Commit($"version {v}");
        }
        Assert.True(s.FirstReadVersion > 20, $"views held from version {s.FirstReadVersion}");
        Assert.Equal("version 3", Text(s.AtVersion(3), "file-3"));
        Assert.Equal(0, s.FirstReadVersion); // asked for: the history was read again, and stays read
        Assert.Equal("version 30", Text(s.Main, "file-2"));
        Assert.Equal(30, s.Versions.Count);
    }

    [Fact]
    public void A_whole_checkpoint_that_does_not_fit_main_s_log_is_dropped_and_verify_names_it()
    {
        using var r = History(30);
        using var s = Store.Open(r.RegionPath);
        long at = Word(s);
        var header = ViewCheckpoint.ReadHeader(s.Region.Span(at, ViewCheckpoint.HeaderSize), long.MaxValue)!.Value;
        s.ReadHistory(0);
        var view = s.AtVersion(header.Version).State.View;
        foreach (var wrong in new[] { header with { ResumePosition = header.ResumePosition + 8 }, header with { ResumeBlock = header.ResumeBlock + 4096 }, header with { Version = 31 } })
        {
            // A checkpoint with a right checksum whose version is placed elsewhere in main's log (or not there at all).
            byte[] bytes = ViewCheckpoint.Encode(view, wrong);
            bytes.CopyTo(s.Region.WritableSpan(at, bytes.Length));
            using var other = Store.Open(r.RegionPath);
            Assert.Equal(0, other.FirstReadVersion);
            Assert.Equal("version 30", Text(other.Main, "file-2"));
            Assert.Equal("version 29", Text(other.AtVersion(29), "file-1"));
            Assert.Equal("checkpoint", Assert.Single(other.Check().Damage).Structure);
        }
    }

    [Fact]
    public void A_checkpoint_whose_header_is_damaged_is_never_freed_by_its_length_and_repair_drops_it()
    {
        using var r = History(30);
        long at;
        using (var s = Store.Open(r.RegionPath))
            at = Word(s);
        // BodyLength (offset 48) made larger: were the old run freed by it, the logs after it would be freed too.
        TempRegion.Flip(r.RegionPath, at + 49, 0x40);
        using (var s = Store.Open(r.RegionPath))
        {
            Assert.Equal("checkpoint", Assert.Single(s.Check().Damage).Structure);
            s.CheckpointEvery = 1;
            var b = s.Main.Fork("next");
            b.WriteAllBytes("x", "x"u8);
            b.Commit("writes a new checkpoint; the old one is left to a rebuild");
            Assert.Equal(1, Volatile.Read(ref s.Region.Word(FormatConstants.ControlOffset + ControlBlock.SpaceAuditOffset)));
            for (int i = 0; i < 4; i++)
                s.Main.Fork($"junk{i}").Write("junk", 0, TempRegion.Pattern(200_000, i)); // takes free pages
            Assert.Empty(s.Check().Damage); // nothing reachable was freed
        }
        using (var s = Store.Open(r.RegionPath)) // alone, with the audit word set: free space rebuilt
        {
            Assert.Equal("version 30", Text(s.Main, "file-2"));
            var report = s.Verify();
            Assert.Equal(report.ReachableBytes, report.ArenaUsedBytes);
        }
    }

    [Fact]
    public void Repair_drops_a_damaged_checkpoint_and_the_region_verifies_clean()
    {
        using var r = History(30);
        long at;
        using (var s = Store.Open(r.RegionPath))
            at = Word(s);
        TempRegion.Flip(r.RegionPath, at + ViewCheckpoint.HeaderSize + 3, 0xEE);
        using (var s = Store.OpenRepairing(r.RegionPath))
            Assert.Equal(0, Word(s));
        using (var s = Store.Open(r.RegionPath))
        {
            Assert.Empty(s.Check().Damage);
            var report = s.Verify();
            Assert.Equal(report.ReachableBytes, report.ArenaUsedBytes);
            Assert.Equal("version 30", Text(s.Main, "file-2"));
        }
    }

    [Fact]
    public void Damaged_history_bytes_read_through_a_checkpoint_are_an_error_naming_the_record_never_wrong_bytes()
    {
        using var r = History(30);
        long source, record;
        using (var s = Store.Open(r.RegionPath))
        {
            Assert.True(s.FirstReadVersion >= 25, $"read from version {s.FirstReadVersion}");
            var view = s.Main.State.View;
            long ino = view.Lookup(View.RootIno, "file-3"); // last written by version 24, before the checkpoint
            Assert.True(view.TryGetNode(ino, out var node));
            var extent = LongMap.InOrder(node.Extents).Single().Value;
            (source, record) = (extent.Source, extent.Record);
            Assert.True(record > 0 && record < source);
        }
        TempRegion.Flip(r.RegionPath, source + 2, 0x20);
        using (var s = Store.Open(r.RegionPath))
        {
            Assert.True(s.FirstReadVersion >= 25); // main from the checkpoint: the damaged record was not replayed
            Assert.Equal("version 30", Text(s.Main, "file-2"));
            var e = Assert.Throws<CorruptionException>(() => s.Main.ReadAllBytes("file-3"));
            Assert.Equal(record, e.Offset);
            Assert.Contains("checksum mismatch", e.Message);
        }
    }
}
