using System.Text;
using Daxfs.Branching;
using Daxfs.Branching.Format;

namespace Daxfs.Branching.Tests;

public class ReopenAndRecoveryTests
{
    [Fact]
    public void Reopen_shows_the_same_branches_contents_and_versions()
    {
        using var r = new TempRegion();
        var s = r.Store;
        var a = s.Main.Fork("a");
        a.WriteAllBytes("v1", "one"u8);
        a.Commit("first");
        var p = s.Main.Fork("p");
        p.CreateDirectory("dir");
        var c = p.Fork("c");
        c.Write("dir/f", 5, "five"u8);
        c.Rename("dir", "renamed");
        c.CommitToParent("c into p");
        var q = p.Fork("q");
        q.Chmod("renamed/f", 0x1C0);
        q.CreateSymlink("sl", "renamed/f");
        var loser = s.Main.Fork("loser");
        var l2 = loser.Fork("l2");
        l2.Truncate("src/big.bin", 10);

        var before = Snapshot(s);
        var s2 = r.Reopen();
        Assert.Equal(before, Snapshot(s2));
        Assert.Equal(new[] { "first" }, s2.Versions.Select(v => v.Message));
        Assert.Equal(BranchStatus.Frozen, s2.GetBranch("p").Info.Status);
        Assert.Equal("q", s2.GetBranch("q").Name);
        Assert.Empty(s2.Recovery.TruncatedLogs);
        // The reopened store keeps working: commit q (its chain p -> q) to main.
        s2.GetBranch("q").Commit("q wins");
        Assert.Throws<BranchInvalidatedException>(() => s2.GetBranch("l2"));
        long free2 = s2.Usage.ArenaFreeBytes;
        var s3 = r.Reopen();
        Assert.Equal(2, s3.Versions.Count);
        Assert.Equal("renamed/f", s3.Main.ReadLink("sl"));
        Assert.Equal(0x1C0u, s3.Main.Stat("renamed/f").Mode);
        Assert.Equal("\0\0\0\0\0five", Encoding.UTF8.GetString(s3.Main.ReadAllBytes("renamed/f")));
        Assert.Throws<BranchInvalidatedException>(() => s3.GetBranch("loser"));
        Assert.Throws<BranchNotFoundException>(() => s3.GetBranch("q"));
        Assert.Equal(free2, s3.Usage.ArenaFreeBytes); // nothing leaked, nothing double-counted
    }

    /// <summary>Every live branch's whole tree, as text.</summary>
    internal static string Snapshot(Store s)
    {
        var sb = new StringBuilder();
        foreach (var info in s.ListBranches().Where(i => i.Status != BranchStatus.Invalidated))
        {
            var b = s.GetBranch(info.Name);
            sb.Append("# ").Append(info.Name).Append(' ').Append(info.Parent).Append(' ').Append(info.Status).Append('\n');
            Dump(b, "/", sb);
        }
        return sb.ToString();
    }

    /// <summary>A tree as text; with <paramref name="attributes"/>, inode numbers, owners, times and link counts too.</summary>
    internal static void Dump(Branch b, string dir, StringBuilder sb, bool attributes = false)
    {
        foreach (var e in b.List(dir))
        {
            string p = dir == "/" ? "/" + e.Name : dir + "/" + e.Name;
            var st = b.Stat(p);
            sb.Append(p).Append(' ').Append(e.Kind).Append(' ').Append(st.Mode).Append(' ').Append(st.Size);
            if (attributes)
                sb.Append(" ino=").Append(st.Inode).Append(" uid=").Append(st.Uid).Append(" gid=").Append(st.Gid)
                    .Append(" mtime=").Append(st.ModifiedTimeNs).Append(" ctime=").Append(st.ChangedTime.UtcTicks).Append(" nlink=").Append(st.LinkCount);
            if (e.Kind == Index.NodeKind.File)
                sb.Append(' ').Append(Convert.ToHexString(System.Security.Cryptography.SHA256.HashData(b.ReadAllBytes(p))));
            if (e.Kind == Index.NodeKind.Symlink)
                sb.Append(" -> ").Append(b.ReadLink(p));
            sb.Append('\n');
            if (e.Kind == Index.NodeKind.Directory)
                Dump(b, p, sb, attributes);
        }
    }

    /// <summary>
    /// What a crash of the machine leaves: the region file was last opened by a boot of the kernel that is gone
    /// (the control block's boot tag names another kernel), so its unflushed bytes may be torn.
    /// </summary>
    internal static void AsAfterAReboot(byte[] region) => BitConverter.GetBytes(0x5EB007L).CopyTo(region, 4096 + 16);

    [Fact]
    public void A_torn_last_record_is_cut_back_to_the_valid_prefix_at_every_byte()
    {
        // Write two records, then tear the second one at each of its bytes: after a reboot, recovery keeps exactly the first.
        using var r = new TempRegion(capacity: 4L << 20, onDisk: true);
        var a = r.Store.Main.Fork("a");
        a.Write("f", 0, "first"u8);
        var info = SlotInfo(r, "a");
        long firstEnd = info.Tail;
        a.Write("f", 5, Encoding.UTF8.GetBytes(new string('s', 40)));
        long secondEnd = SlotInfo(r, "a").Tail;
        r.Store.Dispose();
        var original = File.ReadAllBytes(r.RegionPath);
        for (long cut = firstEnd; cut < secondEnd; cut++)
        {
            var damaged = (byte[])original.Clone();
            // A torn write: the bytes of the record from `cut` on never arrived (they read as garbage).
            for (long i = cut; i < secondEnd; i++) damaged[i] ^= 0x5A;
            // Without a reboot the same bytes cannot be a torn write: they are damage, reported and not cut.
            File.WriteAllBytes(r.RegionPath, damaged);
            CorruptionException e;
            using (var partial = Store.Open(r.RegionPath))
                e = Assert.Throws<CorruptionException>(() => partial.GetBranch("a")); // found when the branch is read
            Assert.Contains("branch 'a'", e.Message);
            const int slotTable = 8192 + 1024 * 64; // past the control block and the process table, which an open and a close change
            Assert.Equal(damaged.AsSpan(slotTable).ToArray(), File.ReadAllBytes(r.RegionPath).AsSpan(slotTable).ToArray()); // nothing was cut
            AsAfterAReboot(damaged);
            File.WriteAllBytes(r.RegionPath, damaged);
            using var s = Store.Open(r.RegionPath);
            Assert.Equal(new[] { "a" }, s.Recovery.TruncatedLogs);
            Assert.Equal("first", Encoding.UTF8.GetString(s.GetBranch("a").ReadAllBytes("f")));
        }
        File.WriteAllBytes(r.RegionPath, original);
        r.Reopen();
        Assert.Equal("first" + new string('s', 40), Encoding.UTF8.GetString(r.Store.GetBranch("a").ReadAllBytes("f")));
    }

    /// <summary>
    /// A region file whose branch <paramref name="name"/> wrote <paramref name="first"/> then <paramref name="second"/>
    /// to file f (two records), then ran <paramref name="more"/>; closed. Returns where the first record ends.
    /// </summary>
    private static (TempRegion Region, long FirstEnd) TwoRecords(string name, string first, string second, Action<Branch>? more = null)
    {
        var r = new TempRegion(capacity: 4L << 20, onDisk: true);
        var b = r.Store.Main.Fork(name);
        b.Write("f", 0, Encoding.UTF8.GetBytes(first));
        long end = SlotInfo(r, name).Tail;
        b.Write("f", first.Length, Encoding.UTF8.GetBytes(second));
        more?.Invoke(b);
        r.Store.Dispose();
        return (r, end);
    }

    [Fact]
    public void A_branch_cut_back_after_a_reboot_takes_the_branches_forked_from_it_along()
    {
        var (r, end) = TwoRecords("b", "kept", "torn", b => b.Fork("c").WriteAllBytes("c.txt", "built on all of b"u8));
        using var _ = r;
        var bytes = File.ReadAllBytes(r.RegionPath);
        bytes[end + 40] ^= 0xFF; // b's last record, torn by the crash
        AsAfterAReboot(bytes);
        File.WriteAllBytes(r.RegionPath, bytes);
        var s = r.Reopen();
        Assert.Equal("kept", Encoding.UTF8.GetString(s.GetBranch("b").ReadAllBytes("f")));
        Assert.Throws<BranchInvalidatedException>(() => s.GetBranch("c")); // never rebuilt on the shorter b
    }

    [Fact]
    public void A_tail_word_moved_back_before_flushed_history_is_damage()
    {
        using var r = new TempRegion(capacity: 4L << 20, onDisk: true);
        for (int v = 1; v <= 2; v++)
        {
            var b = r.Store.Main.Fork($"v{v}");
            b.WriteAllBytes("f", Encoding.UTF8.GetBytes($"v{v}"));
            b.Commit($"v{v}");
        }
        long afterV1 = r.Store.Versions.Count == 2 ? FirstVersionEnd(r.Store) : throw new InvalidOperationException();
        r.Store.Dispose();
        var bytes = File.ReadAllBytes(r.RegionPath);
        var sb = System.Runtime.InteropServices.MemoryMarshal.Read<Format.Superblock>(bytes);
        BitConverter.GetBytes(afterV1).CopyTo(bytes, (int)(sb.SlotTableOffset + Format.BranchSlot.TailOffset)); // main's Tail, one version back
        File.WriteAllBytes(r.RegionPath, bytes);
        var e = Assert.Throws<CorruptionException>(() => Store.Open(r.RegionPath).Dispose());
        Assert.Contains("Tail word is damaged", e.Message);
    }

    private static long FirstVersionEnd(Store s)
    {
        var c = s.Cursor(s.Main.State.Log.Ref);
        while (c.MoveNext())
            if ((Format.RecordKind)c.Header.Kind == Format.RecordKind.Version)
                return c.Offset + c.Header.Length;
        throw new InvalidOperationException("no version record");
    }

    [Fact]
    public void After_truncation_the_branch_keeps_working_and_reopens_clean()
    {
        var (r, end) = TwoRecords("a", "keep", "lost");
        using var _ = r;
        var bytes = File.ReadAllBytes(r.RegionPath);
        bytes[end + 40] ^= 0xFF; // damage the second record's body
        AsAfterAReboot(bytes);    // as a crash of the machine would leave it: a torn write is possible
        File.WriteAllBytes(r.RegionPath, bytes);
        var s = Store.Open(r.RegionPath);
        s.GetBranch("a").Append("f", "+more"u8);
        s.Dispose();
        using var s2 = Store.Open(r.RegionPath);
        Assert.Empty(s2.Recovery.TruncatedLogs);
        Assert.Single(s.Recovery.TruncatedLogs);
        Assert.Equal("keep+more", Encoding.UTF8.GetString(s2.GetBranch("a").ReadAllBytes("f")));
    }

    [Fact]
    public void Commits_on_a_regular_file_region_flush_and_reopen_whole()
    {
        // On a regular file a commit msyncs the chain, then the version record and the tail (docs/concurrency.md).
        using var r = new TempRegion(capacity: 8L << 20, onDisk: true);
        Assert.Equal(Daxfs.Branching.Media.RegionKind.File, r.Store.Kind);
        var a = r.Store.Main.Fork("a");
        a.Write("big", 0, TempRegion.Pattern(300_000, 4));
        var c = a.Fork("c");
        c.WriteAllBytes("c", "C"u8);
        c.CommitToParent("into a");
        a.Commit("durable");
        var bytes = File.ReadAllBytes(r.RegionPath); // what the file holds now, read through the page cache
        string copy = r.RegionPath + ".copy";
        File.WriteAllBytes(copy, bytes);
        using var s = Store.Open(copy);
        Assert.Single(s.Versions);
        Assert.Equal(TempRegion.Pattern(300_000, 4), s.Main.ReadAllBytes("big"));
        Assert.Equal("C", Encoding.UTF8.GetString(s.Main.ReadAllBytes("c")));
        s.Dispose();
        File.Delete(copy);
    }

    internal static BranchSlot SlotInfo(TempRegion r, string name)
    {
        var s = r.Store;
        for (int i = 0; ; i++)
        {
            var slot = s.SlotAt(i);
            unsafe
            {
                if (slot.State == 1 && Encoding.ASCII.GetString(slot.Name, (int)slot.NameLength) == name)
                    return slot;
            }
        }
    }
}
