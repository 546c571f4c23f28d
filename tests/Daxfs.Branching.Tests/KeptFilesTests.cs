using System.Text;
using Daxfs.Branching.Format;

namespace Daxfs.Branching.Tests;

/// <summary>
/// Format version 3: a file removed while open stays, nameless with a link count of 0, until its last handle
/// closes (the mount asks for this); renames exchange two names; and version 2 regions still open.
/// </summary>
public class KeptFilesTests
{
    private static long Ino(Branch b, string path) => b.Stat(path).Inode;

    /// <summary>Rewrites the superblock's format version (and its checksum).</summary>
    internal static void SetFormatVersion(string region, uint version)
    {
        using var f = new FileStream(region, FileMode.Open, FileAccess.ReadWrite);
        var head = new byte[256];
        f.ReadExactly(head);
        BitConverter.TryWriteBytes(head.AsSpan(8), version);
        BitConverter.TryWriteBytes(head.AsSpan(252), Crc32C.Compute(head.AsSpan(0, 252)));
        f.Position = 0;
        f.Write(head);
    }

    private static (int Code, string Out, string Err) Bash(string script)
    {
        var psi = new System.Diagnostics.ProcessStartInfo("bash", ["-c", script]) { RedirectStandardOutput = true, RedirectStandardError = true, UseShellExecute = false };
        using var p = System.Diagnostics.Process.Start(psi)!;
        var o = p.StandardOutput.ReadToEndAsync();
        string e = p.StandardError.ReadToEnd();
        p.WaitForExit();
        return (p.ExitCode, o.Result, e);
    }

    [Fact]
    public void A_file_removed_while_open_keeps_its_bytes_and_takes_writes_until_released_and_survives_a_reopen()
    {
        using var r = new TempRegion();
        var b = r.Store.Main.Fork("b");
        b.WriteAllBytes("open.txt", "hello"u8);
        long ino = Ino(b, "open.txt");
        b.RemoveEntry(Branch.RootInode, "open.txt", directory: false, keepOpen: true);

        Assert.False(b.Exists("open.txt"));
        Assert.True(b.IsOrphan(ino));
        var a = b.GetAttributes(ino);
        Assert.Equal(0, a.Nlink);
        Assert.Equal("hello", Encoding.UTF8.GetString(b.ReadInode(ino, 0, 100).ToArray()));
        b.WriteInode(ino, 5, " world"u8);
        Assert.Equal(11, b.GetAttributes(ino).Size);
        Assert.DoesNotContain(b.Diff(), c => c.Path.Contains("open", StringComparison.Ordinal) && c.Kind != ChangeKind.Deleted);

        // Another process (a reopen) replays the same: the nameless file is still there, still nameless.
        var s = r.Reopen();
        var again = s.GetBranch("b");
        Assert.True(again.IsOrphan(ino));
        Assert.Equal("hello world", Encoding.UTF8.GetString(again.ReadInode(ino, 0, 100).ToArray()));
        Assert.DoesNotContain(again.ReadDirectory(Branch.RootInode), e => e.Name == "open.txt");

        // The last handle closes: it goes, and stays gone across a reopen.
        again.ReleaseInode(ino);
        Assert.False(again.IsOrphan(ino));
        Assert.Throws<DaxfsIOException>(() => again.GetAttributes(ino));
        again.ReleaseInode(ino); // a second release finds nothing: no error, no record
        s = r.Reopen();
        Assert.Throws<DaxfsIOException>(() => s.GetBranch("b").GetAttributes(ino));
    }

    [Fact]
    public void A_file_replaced_by_rename_while_open_stays_readable_and_a_commit_carries_no_nameless_file()
    {
        using var r = new TempRegion();
        var b = r.Store.Main.Fork("b");
        b.WriteAllBytes("a.txt", "old"u8);
        b.WriteAllBytes("b.txt", "new"u8);
        long old = Ino(b, "a.txt");
        b.RenameEntry(Branch.RootInode, "b.txt", Branch.RootInode, "a.txt", noReplace: false, keepReplaced: true);
        Assert.Equal("new", Encoding.UTF8.GetString(b.ReadAllBytes("a.txt")));
        Assert.Equal("old", Encoding.UTF8.GetString(b.ReadInode(old, 0, 10).ToArray()));
        Assert.Equal(0, b.GetAttributes(old).Nlink);
        b.Commit("replace");
        // Main has the new file under the name; the nameless one is named nowhere, and export leaves it out.
        Assert.Equal("new", Encoding.UTF8.GetString(r.Store.Main.ReadAllBytes("a.txt")));
        string dest = Path.Combine(r.Directory_, "export");
        r.Store.Main.Export(dest);
        Assert.Equal("new", File.ReadAllText(Path.Combine(dest, "a.txt")));
        Assert.DoesNotContain(Directory.EnumerateFiles(dest, "*", SearchOption.AllDirectories), f => File.ReadAllText(f) == "old");
    }

    [Fact]
    public void Rename_exchange_swaps_two_names_of_any_kind_and_refuses_a_cycle()
    {
        using var r = new TempRegion();
        var b = r.Store.Main.Fork("b");
        b.WriteAllBytes("f.txt", "file"u8);
        b.CreateDirectory("d/inner", parents: true);
        long f = Ino(b, "f.txt"), d = Ino(b, "d");
        b.RenameEntry(Branch.RootInode, "f.txt", Branch.RootInode, "d", noReplace: false, exchange: true);
        Assert.Equal(f, Ino(b, "d"));
        Assert.Equal(d, Ino(b, "f.txt"));
        Assert.True(b.Exists("f.txt/inner"));
        Assert.Equal("file", Encoding.UTF8.GetString(b.ReadAllBytes("d")));

        // Across directories, link counts follow the directories that moved.
        b.CreateDirectory("x");
        b.WriteAllBytes("x/plain", "p"u8);
        long x = Ino(b, "x");
        int rootLinks = b.GetAttributes(Branch.RootInode).Nlink, xLinks = b.GetAttributes(x).Nlink;
        b.RenameEntry(Branch.RootInode, "f.txt", x, "plain", noReplace: false, exchange: true); // a directory into x, a file out
        Assert.Equal(rootLinks - 1, b.GetAttributes(Branch.RootInode).Nlink);
        Assert.Equal(xLinks + 1, b.GetAttributes(x).Nlink);
        Assert.True(b.Exists("x/plain/inner"));
        Assert.Equal("p", Encoding.UTF8.GetString(b.ReadAllBytes("f.txt")));

        // A directory cannot trade places with something inside itself; both names must exist.
        var cycle = Assert.Throws<DaxfsIOException>(() => b.RenameEntry(x, "plain", Ino(b, "x/plain"), "inner", noReplace: false, exchange: true));
        Assert.Equal(FileSystemError.InvalidArgument, cycle.Error);
        Assert.Equal(FileSystemError.NotFound, Assert.Throws<DaxfsIOException>(() => b.RenameEntry(Branch.RootInode, "f.txt", Branch.RootInode, "nope", noReplace: false, exchange: true)).Error);
        Assert.Equal(FileSystemError.InvalidArgument, Assert.Throws<DaxfsIOException>(() => b.RenameEntry(Branch.RootInode, "f.txt", x, "plain", noReplace: true, exchange: true)).Error);

        // Replay agrees with the live operations.
        var s = r.Reopen();
        var again = s.GetBranch("b");
        Assert.True(again.Exists("x/plain/inner"));
        Assert.Equal("p", Encoding.UTF8.GetString(again.ReadAllBytes("f.txt")));
        Assert.Equal(xLinks + 1, again.GetAttributes(x).Nlink);
    }

    [Fact]
    public void A_version_2_region_opens_and_works_without_the_version_3_records()
    {
        using var r = new TempRegion();
        r.Store.Main.Fork("b").WriteAllBytes("a.txt", "a"u8);
        r.Store.Dispose();
        SetFormatVersion(r.RegionPath, 2); // a version 2 region, as an earlier build wrote it (the layout is the same)
        var s = r.Reopen();
        Assert.False(s.WritesVersion3);
        var b = s.GetBranch("b");
        long ino = Ino(b, "a.txt");
        b.RemoveEntry(Branch.RootInode, "a.txt", directory: false, keepOpen: true); // goes at once, as version 2 did
        Assert.Throws<DaxfsIOException>(() => b.GetAttributes(ino));
        b.WriteAllBytes("x", "x"u8);
        b.WriteAllBytes("y", "y"u8);
        var e = Assert.Throws<DaxfsIOException>(() => b.RenameEntry(Branch.RootInode, "x", Branch.RootInode, "y", noReplace: false, exchange: true));
        Assert.Contains("format version 3", e.Message);
        s = r.Reopen();
        Assert.Equal("y", Encoding.UTF8.GetString(s.GetBranch("b").ReadAllBytes("y")));

        // A version this build does not know is refused by number.
        s.Dispose();
        SetFormatVersion(r.RegionPath, 9);
        var refused = Assert.Throws<FormatVersionException>(() => Store.Open(r.RegionPath).Dispose());
        Assert.Contains("format version 9 is not supported (this library reads versions 2 to 5)", refused.Message);
    }

    [Fact]
    public void Access_times_are_stored_replayed_compacted_and_exported()
    {
        using var r = new TempRegion();
        var b = r.Store.Main.Fork("b");
        b.WriteAllBytes("a.txt", "a"u8);
        long ino = Ino(b, "a.txt");
        const long At = 1_234_567_890_123_456_789;
        var before = b.GetAttributes(ino);
        b.SetInodeAttributes(ino, null, null, null, null, null, At);
        var after = b.GetAttributes(ino);
        Assert.Equal(At, after.AtimeNs);
        Assert.Equal(before.MtimeNs, after.MtimeNs); // only the access time moved
        Assert.Equal(At, b.Stat("a.txt").AccessedTimeNs);
        b.Commit("atime");
        r.Store.Compact();
        var s = r.Reopen();
        Assert.Equal(At, s.Main.Stat("a.txt").AccessedTimeNs);
        string dest = Path.Combine(r.Directory_, "out");
        s.Main.Export(dest);
        Assert.Equal(At / 100, (File.GetLastAccessTimeUtc(Path.Combine(dest, "a.txt")) - DateTime.UnixEpoch).Ticks);
    }

    [Fact]
    public void Every_file_kind_survives_mkfs_export_compaction_and_rebase()
    {
        string src = Path.Combine("/dev/shm", $"daxfs-kinds-{Guid.NewGuid():N}");
        Directory.CreateDirectory(src);
        try
        {
            var made = Bash($"""
                set -e; cd {src}; echo data > file; mkdir -p dir/sub; ln -s file link; mkfifo -m 600 fifo
                mknod chr c 1 3; mknod blk b 7 200; python3 -c "import socket; socket.socket(socket.AF_UNIX).bind('sock')"
                ln file file-link; ln fifo fifo-link
                python3 -c "
                import os, struct
                os.setxattr('file', 'user.note', b'n'); os.setxattr('dir', 'trusted.t', b'\x00\x01')
                acl = struct.pack('<I', 2) + b''.join(struct.pack('<HHI', t, p, i) for t, p, i in [(1, 6, 0xFFFFFFFF), (2, 4, 1234), (4, 4, 0xFFFFFFFF), (0x10, 4, 0xFFFFFFFF), (0x20, 0, 0xFFFFFFFF)])
                os.setxattr('dir/sub', 'system.posix_acl_access', acl); os.setxattr('dir/sub', 'system.posix_acl_default', acl)
                "
                touch -a -d @1000.5 file; touch -h -m -d @2000.25 fifo chr
                """);
            Assert.True(made.Code == 0, made.Err);
            // stat (kind, mode, owner, link count, device number, times, size), then every extended attribute.
            string Stat(string root) => Bash($"cd {root} && find . -mindepth 1 | sort | xargs stat -c '%n %F %a %u %g %h %t:%T %X.%x %Y %s'").Out
                + Bash($"cd {root} && python3 -c \"import os\nfor p in sorted(os.popen('find . -mindepth 1').read().split()):\n  print(p, sorted((n, os.getxattr(p, n, follow_symlinks=False).hex()) for n in os.listxattr(p, follow_symlinks=False)))\"").Out;
            string before = Strip(Stat(src)); // before mkfs reads the files (a read moves an atime older than the mtime)
            using var r = new TempRegion(BaseImageBuilder.FromDirectory(src));
            string out1 = Path.Combine(r.Directory_, "export1");
            r.Store.Main.Export(out1);
            Assert.Equal(before, Strip(Stat(out1)));
            Assert.Contains("./file regular file 644 0 0 2 0:0", before); // the comparison covers links, ...
            Assert.Contains("./chr character special file 644 0 0 1 1:3", before); // device numbers, ...
            Assert.Contains("./dir/sub [('system.posix_acl_access'", before); // ACLs and other attributes

            // Made in a branch, carried by a commit, a compaction and a rebase.
            var b = r.Store.Main.Fork("b", new ForkOptions { KeepForRebase = true });
            b.CreateSpecialFile("dir/made-fifo", Index.NodeKind.Fifo, 0x1A0);
            b.CreateSpecialFile("dir/made-dev", Index.NodeKind.CharDevice, 0x1B0, device: 0x0103);
            var other = r.Store.Main.Fork("other");
            other.WriteAllBytes("other.txt", "o"u8);
            other.Commit("other first");
            var rebased = r.Store.Rebase(b.Name, "b-rebased");
            Assert.Equal(Index.NodeKind.CharDevice, rebased.Stat("dir/made-dev").Kind);
            Assert.Equal(0x0103, rebased.Stat("dir/made-dev").Device);
            Assert.Contains(rebased.Diff(), c => c.Path == "/dir/made-fifo" && c.Kind == ChangeKind.Added && c.NodeKind == Index.NodeKind.Fifo);
            rebased.Commit("specials");
            r.Store.Compact();
            var s = r.Reopen();
            Assert.Equal(Index.NodeKind.Fifo, s.Main.Stat("dir/made-fifo").Kind);
            Assert.Equal(0x1A0u, s.Main.Stat("dir/made-fifo").Mode);
            Assert.Equal(0x0103, s.Main.Stat("dir/made-dev").Device);
            string out2 = Path.Combine(r.Directory_, "export2");
            s.Main.Export(out2);
            var again = Stat(out2);
            Assert.Contains("./dir/made-fifo fifo 640", again);
            Assert.Contains("./dir/made-dev character special file 660 0 0 1 1:3", again);
            Assert.Contains("./chr character special file", again);
        }
        finally
        {
            Directory.Delete(src, recursive: true);
        }

        // Size and times of directories differ by file system, and a symlink's access time moves whenever a walk
        // follows it (listing a directory does, in .NET, to tell directories from files); everything else must match.
        static string Strip(string stat) => string.Join('\n', stat.Split('\n').Select(l =>
            l.Contains(" directory ", StringComparison.Ordinal) ? string.Join(' ', l.Split(' ').Take(7))
            : l.Contains(" symbolic link ", StringComparison.Ordinal) ? string.Join(' ', l.Split(' ').Take(8)) : l));
    }

    [Fact]
    public void Hard_links_share_one_inode_through_changes_removal_replay_commit_compaction_rebase_and_export()
    {
        using var r = new TempRegion();
        var b = r.Store.Main.Fork("b", new ForkOptions { KeepForRebase = true });
        b.WriteAllBytes("f.txt", "one"u8);
        b.CreateDirectory("d");
        b.CreateHardLink("f.txt", "d/g.txt");
        Assert.Equal(Ino(b, "f.txt"), Ino(b, "d/g.txt"));
        Assert.Equal(2, b.Stat("f.txt").LinkCount);
        b.Write("d/g.txt", 3, " two"u8);
        Assert.Equal("one two", Encoding.UTF8.GetString(b.ReadAllBytes("f.txt")));
        Assert.Equal(FileSystemError.NotPermitted, Assert.Throws<DaxfsIOException>(() => b.CreateHardLink("d", "d2")).Error);
        Assert.Equal(FileSystemError.Exists, Assert.Throws<DaxfsIOException>(() => b.CreateHardLink("f.txt", "d/g.txt")).Error);

        // Removing one name keeps the other; renaming a name onto another name of the same file changes nothing.
        b.CreateHardLink("f.txt", "h.txt");
        Assert.Equal(3, b.Stat("h.txt").LinkCount);
        b.Delete("f.txt");
        Assert.Equal(2, b.Stat("h.txt").LinkCount);
        b.Rename("h.txt", "d/g.txt");
        Assert.True(b.Exists("h.txt"));
        Assert.Equal("one two", Encoding.UTF8.GetString(b.ReadAllBytes("h.txt")));
        var diff = b.Diff();
        Assert.Contains(diff, c => c.Kind == ChangeKind.Added && c.LinkTo is not null && (c.Path == "/h.txt" || c.Path == "/d/g.txt"));

        // Another process replays the same; the branch commits; compaction writes one inode with two names.
        var s = r.Reopen();
        b = s.GetBranch("b");
        Assert.Equal(Ino(b, "h.txt"), Ino(b, "d/g.txt"));
        var other = s.Main.Fork("other");
        other.WriteAllBytes("x.txt", "x"u8);
        other.Commit("first");
        var rebased = s.Rebase("b", "b2"); // re-applied by path: the second name is linked again, not copied
        Assert.Equal(Ino(rebased, "h.txt"), Ino(rebased, "d/g.txt"));
        rebased.Commit("links");
        s.Compact();
        s = r.Reopen();
        Assert.Equal(Ino(s.Main, "h.txt"), Ino(s.Main, "d/g.txt"));
        Assert.Equal(2, s.Main.Stat("h.txt").LinkCount);
        string dest = Path.Combine(r.Directory_, "out");
        s.Main.Export(dest);
        var exported = Bash($"stat -c '%i %h' {dest}/h.txt {dest}/d/g.txt").Out.Split('\n', StringSplitOptions.RemoveEmptyEntries);
        Assert.Equal(2, exported.Length);
        Assert.Equal(exported[0], exported[1]);
        Assert.EndsWith(" 2", exported[0]);
    }

    [Fact]
    public void Mkfs_keeps_a_source_trees_hard_links()
    {
        string src = Path.Combine("/dev/shm", $"daxfs-links-{Guid.NewGuid():N}");
        Directory.CreateDirectory(src);
        try
        {
            Assert.Equal(0, Bash($"cd {src} && echo shared > a && mkdir sub && ln a sub/b && ln a c && echo alone > d").Code);
            var builder = BaseImageBuilder.FromDirectory(src);
            Assert.DoesNotContain(builder.Warnings, w => w.Contains("hard link", StringComparison.Ordinal));
            using var r = new TempRegion(builder);
            var m = r.Store.Main;
            Assert.Equal(Ino(m, "a"), Ino(m, "sub/b"));
            Assert.Equal(Ino(m, "a"), Ino(m, "c"));
            Assert.Equal(3, m.Stat("c").LinkCount);
            Assert.Equal(1, m.Stat("d").LinkCount);
            var b = m.Fork("b");
            b.Write("sub/b", 0, "SHARED"u8);
            Assert.Equal("SHARED\n", Encoding.UTF8.GetString(b.ReadAllBytes("c")));
            b.Delete("a");
            Assert.Equal(2, b.Stat("c").LinkCount);
        }
        finally
        {
            Directory.Delete(src, recursive: true);
        }
    }

    [Fact]
    public void Extended_attributes_go_through_replay_diff_rebase_commit_compaction_and_export()
    {
        using var r = new TempRegion();
        var b = r.Store.Main.Fork("b", new ForkOptions { KeepForRebase = true });
        b.WriteAllBytes("f.txt", "f"u8);
        b.SetExtendedAttribute("f.txt", "user.color", "blue"u8);
        b.SetExtendedAttribute("src", "trusted.bin", new byte[] { 0, 1, 2 });
        Assert.Equal(FileSystemError.NotSupported, Assert.Throws<DaxfsIOException>(() => b.SetExtendedAttribute("f.txt", "bogus.x", "v"u8)).Error);
        Assert.Equal(FileSystemError.NoData, Assert.Throws<DaxfsIOException>(() => b.RemoveExtendedAttribute("f.txt", "user.none")).Error);
        Assert.Contains(b.Diff(), c => c.Path == "/src" && c.Kind == ChangeKind.AttributesChanged && c.Detail!.Contains("trusted.bin", StringComparison.Ordinal));

        var s = r.Reopen();
        b = s.GetBranch("b");
        Assert.Equal("blue"u8.ToArray(), b.GetExtendedAttributes("f.txt")["user.color"]);
        var other = s.Main.Fork("other");
        other.WriteAllBytes("o.txt", "o"u8);
        other.Commit("first");
        var rebased = s.Rebase("b", "b2");
        Assert.Equal("blue"u8.ToArray(), rebased.GetExtendedAttributes("f.txt")["user.color"]);
        Assert.Equal(new byte[] { 0, 1, 2 }, rebased.GetExtendedAttributes("src")["trusted.bin"]);
        rebased.Commit("xattrs");
        s.Compact();
        s = r.Reopen();
        Assert.Equal("blue"u8.ToArray(), s.Main.GetExtendedAttributes("f.txt")["user.color"]);
        string dest = Path.Combine(r.Directory_, "out");
        s.Main.Export(dest);
        var shown = Bash($"python3 -c \"import os; print(os.getxattr('{dest}/f.txt', 'user.color'), os.getxattr('{dest}/src', 'trusted.bin'))\"");
        Assert.Equal("b'blue' b'\\x00\\x01\\x02'\n", shown.Out);
    }
}
