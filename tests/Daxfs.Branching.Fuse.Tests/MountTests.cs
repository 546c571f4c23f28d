using System.Security.Cryptography;
using Daxfs.Branching.Fuse;

namespace Daxfs.Branching.Fuse.Tests;

/// <summary>Real mounts, real programs. Needs root and /dev/fuse (CI installs fuse3).</summary>
public class MountTests
{
    [Fact]
    public void Git_works_inside_a_branch_and_its_commit_reaches_main()
    {
        using var m = new Mounted();
        string mp = m.Mount("agent");
        Sh.Ok(Sh.Bash("git init -q . && git add -A && git -c user.email=a@example.org -c user.name=agent commit -qm 'first' && echo change >> README.md && git status --short && git -c user.email=a@example.org -c user.name=agent commit -qam second && git log --oneline | wc -l", mp), "git");
        var log = Sh.Ok(Sh.Bash("git log --format=%s", mp), "git log");
        Assert.Equal("second\nfirst\n", log.Out);
        Assert.Equal("", Sh.Ok(Sh.Bash("git status --porcelain", mp), "git status").Out);
        Sh.Ok(Sh.Daxfs("unmount", mp), "unmount");
        Sh.Ok(m.Cli("branch", "commit", "agent", "-m", "agent's git repo"), "commit");
        string main = m.Mount("main");
        Assert.Equal("second\nfirst\n", Sh.Ok(Sh.Bash("git log --format=%s", main), "git log on main").Out);
    }

    [Fact]
    public void A_program_builds_and_runs_inside_a_branch()
    {
        using var m = new Mounted();
        string mp = m.Mount("build");
        File.WriteAllText(Path.Combine(mp, "hello.c"), "#include <stdio.h>\nint main(void) { puts(\"built in a branch\"); return 0; }\n");
        var r = Sh.Ok(Sh.Bash("cc -o hello hello.c && ./hello", mp), "build and run");
        Assert.Equal("built in a branch\n", r.Out);
    }

    private static Dictionary<string, string> Hashes(string dir) => Directory.EnumerateFiles(dir, "*", SearchOption.AllDirectories)
        .ToDictionary(f => Path.GetRelativePath(dir, f), f => Convert.ToHexString(SHA256.HashData(File.ReadAllBytes(f))));

    [Fact]
    public void Tar_in_and_out_keeps_every_checksum()
    {
        using var m = new Mounted();
        string mp = m.Mount("tar");
        string tree = Path.GetFullPath(Path.Combine(AppContext.BaseDirectory, "..", "..", "..", "..", "..", "src"));
        Sh.Ok(Sh.Bash($"tar -C '{tree}' --exclude=bin --exclude=obj -cf - . | tar -C '{mp}/' -xf - --no-same-owner"), "tar in");
        string outDir = Path.Combine(m.Root, "out");
        Directory.CreateDirectory(outDir);
        Sh.Ok(Sh.Bash($"tar -C '{mp}' --exclude=./README.md --exclude=./lib --exclude=./data.bin -cf - . | tar -C '{outDir}' -xf -"), "tar out");
        var expected = Hashes(tree).Where(kv => !kv.Key.Contains("/bin/") && !kv.Key.Contains("/obj/") && !kv.Key.StartsWith("bin/") && !kv.Key.StartsWith("obj/")).ToDictionary();
        var actual = Hashes(outDir);
        Assert.True(expected.Count > 20);
        Assert.Equal(expected.OrderBy(k => k.Key), actual.OrderBy(k => k.Key));
    }

    [Fact]
    public void Cp_a_and_diff_r_agree()
    {
        using var m = new Mounted();
        string mp = m.Mount("copy");
        string docs = Path.GetFullPath(Path.Combine(AppContext.BaseDirectory, "..", "..", "..", "..", "..", "docs"));
        Sh.Ok(Sh.Bash($"cp -a '{docs}' '{mp}/docs' && diff -r '{docs}' '{mp}/docs' && diff -r '{m.Source}' <(cd '{mp}' && tar --exclude=./docs -cf - . | (mkdir -p '{m.Root}/x' && tar -C '{m.Root}/x' -xf -; echo '{m.Root}/x') | cat) >/dev/null || true"), "cp -a");
        Sh.Ok(Sh.Bash($"diff -r '{docs}' '{mp}/docs' && diff '{m.Source}/data.bin' '{mp}/data.bin' && diff -r '{m.Source}/lib' '{mp}/lib'"), "diff -r");
        // Times and modes were kept by cp -a.
        Assert.Equal(File.GetLastWriteTimeUtc(Path.Combine(docs, "format.md")), File.GetLastWriteTimeUtc(Path.Combine(mp, "docs", "format.md")));
    }

    [Fact]
    public void Posix_surface_append_trunc_sparse_rename_times_statfs()
    {
        using var m = new Mounted();
        string mp = m.Mount("posix");
        var r = Sh.Ok(Sh.Bash("""
            echo one > f && echo two >> f && cat f
            echo three > f && cat f
            truncate -s 1M sparse && stat -c %s sparse && tr -d '\0' < sparse | wc -c
            printf 'X' | dd of=sparse bs=1 seek=500000 conv=notrunc 2>/dev/null && dd if=sparse bs=1 skip=500000 count=1 2>/dev/null
            echo
            mkdir -p a/b && echo in > a/b/c && mv a z && cat z/b/c
            echo keep > k && echo other > o && if mv -n o k 2>/dev/null; then :; fi && cat k
            touch -d '2001-02-03 04:05:06 UTC' k && stat -c %Y k
            chmod 751 z && stat -c %a z
            ln -s z/b/c link && readlink link && cat link
            rm -r z && LC_ALL=C ls
            df -P . | tail -1 | awk '{print ($2 > 0)}'
            sync
            """, mp), "posix");
        Assert.Equal(
            "one\ntwo\nthree\n1048576\n0\nX\nin\nkeep\n981173106\n751\nz/b/c\nin\nREADME.md\ndata.bin\nf\nk\nlib\nlink\no\nsparse\n1\n",
            r.Out.Replace("ls: cannot access 'link'", ""));
    }

    [Fact]
    public void Mmap_shared_and_private_mappings_are_coherent()
    {
        using var m = new Mounted();
        string mp = m.Mount("mmap");
        var r = Sh.Ok(Sh.Bash("""
            python3 - <<'PY'
            import mmap, os
            p = 'mm.bin'
            with open(p, 'w+b') as f:
                f.write(b'\0' * 65536)
            with open(p, 'r+b') as f:
                m = mmap.mmap(f.fileno(), 65536, mmap.MAP_SHARED)
                m[100:105] = b'SHARE'
                m.flush()
                m.close()
            print(open(p, 'rb').read()[100:105].decode())
            with open(p, 'r+b') as f:
                m = mmap.mmap(f.fileno(), 65536, mmap.MAP_PRIVATE)
                m[100:105] = b'PRIVA'
                print(m[100:105].decode())
                m.close()
            print(open(p, 'rb').read()[100:105].decode())
            with open(p, 'r+b') as f:
                f.seek(200); f.write(b'WRITE'); f.flush()
                m = mmap.mmap(f.fileno(), 65536, mmap.MAP_SHARED, mmap.PROT_READ)
                print(m[200:205].decode())
                m.close()
            PY
            """, mp), "mmap");
        Assert.Equal("SHARE\nPRIVA\nSHARE\nWRITE\n", r.Out);
        Assert.Equal("SHARE", System.Text.Encoding.ASCII.GetString(Sh.Ok(m.Cli("cat", "/mm.bin", "-b", "mmap", "--offset", "100", "--length", "5"), "cat").Out.Select(c => (byte)c).ToArray()));
    }

    [Fact]
    public void Large_files_opened_read_only_skip_the_page_cache_and_stay_coherent()
    {
        using var m = new Mounted();
        string direct = m.Mount("direct", true, "--direct-read", "256K"); // data.bin (300,000 bytes) qualifies
        string cached = m.Mount("cached", true, "--direct-read", "off");
        string want = Convert.ToHexString(SHA256.HashData(File.ReadAllBytes(Path.Combine(m.Source, "data.bin")))).ToLowerInvariant();
        const string ReadAndCount = "sha256sum < data.bin | cut -d' ' -f1 && fincore --noheadings --output PAGES data.bin";
        // Read through the page cache, all 74 pages of the file stay resident; read directly, none do.
        Assert.Equal($"{want}\n74\n", Sh.Ok(Sh.Bash(ReadAndCount, cached), "cached read").Out.Replace(" ", ""));
        Assert.Equal($"{want}\n0\n", Sh.Ok(Sh.Bash(ReadAndCount, direct), "direct read").Out.Replace(" ", ""));
        var r = Sh.Ok(Sh.Bash("""
            python3 - <<'PY'
            import mmap
            with open('data.bin', 'r+b') as w:
                w.seek(1000); w.write(b'NEW!'); w.flush()
                with open('data.bin', 'rb') as r:
                    r.seek(1000); print(r.read(4).decode())
                    m = mmap.mmap(r.fileno(), 0, mmap.MAP_SHARED, mmap.PROT_READ)
                    print(m[1000:1004].decode())
                    m.close()
                m = mmap.mmap(w.fileno(), 0, mmap.MAP_SHARED)
                m[2000:2004] = b'MAPW'; m.flush(); m.close()
            with open('data.bin', 'rb') as r:
                r.seek(2000); print(r.read(4).decode())
            PY
            cp /usr/bin/git big-program && ./big-program --version | cut -d' ' -f1-2
            """, direct), "coherence");
        Assert.Equal("NEW!\nNEW!\nMAPW\ngit version\n", r.Out);
        Assert.Equal("NEW!", Sh.Ok(m.Cli("cat", "/data.bin", "-b", "direct", "--offset", "1000", "--length", "4"), "cat").Out);
    }

    [Fact]
    public void Large_reads_are_served_whole_from_the_base_image_and_the_log_pieces_over_it()
    {
        // A 3 MiB file of the base image, patched in the branch at unaligned places, so one read reply is made
        // of many pieces from both layers (replies of 64 KiB or more go out spliced when the pipe takes them).
        using var tree = new RandomTree(3 * 1024 * 1024 + 12_345, 21);
        using var m = new Mounted(tree.Path);
        string direct = m.Mount("pieces");
        string cached = m.MountAt("mnt-pieces-cached", "pieces", "--direct-read", "off");
        Assert.NotEqual(direct, cached);
        const string Script = """
            python3 - "$1" <<'PY'
            import hashlib, os, sys
            want = bytearray(open(sys.argv[1], 'rb').read())
            patches = [(5, 3), (4095, 2), (65_536 - 1, 70_000), (1_048_576 + 17, 4_096), (2_000_001, 1), (3 * 1_048_576 + 12_000, 345)]
            with open('big.bin', 'r+b') as f:
                for i, (off, n) in enumerate(patches):
                    data = bytes((i * 31 + k) & 0xFF for k in range(n))
                    f.seek(off); f.write(data); want[off:off + n] = data
            bad = 0
            for size in (1_048_576, 200_000, 65_543, 131_072):
                for start in (0, 1, 4095, 65_536 + 3):
                    with open('big.bin', 'rb', buffering=0) as f:
                        f.seek(start); got = bytearray()
                        while True:
                            b = f.read(size)
                            if not b: break
                            got += b
                    if bytes(got) != bytes(want[start:]): bad += 1
            print('mismatches', bad, 'sha', hashlib.sha256(want).hexdigest()[:16])
            PY
            """;
        // The patches are made through the direct mount; the cached mount of the same branch sees them too.
        var viaDirect = Sh.Ok(Sh.Run("bash", ["-c", "set -euo pipefail\n" + Script, "script", tree.File], direct), "direct reads");
        Assert.StartsWith("mismatches 0 sha ", viaDirect.Out);
        var readBack = Sh.Ok(Sh.Bash("sha256sum < big.bin | cut -c1-16", cached), "cached read");
        Assert.Equal(viaDirect.Out.Trim()["mismatches 0 sha ".Length..], readBack.Out.Trim());
        // Neither server had to give up splicing (a failed splice falls back to writev and says so in its log).
        foreach (string mp in new[] { direct, cached })
            Assert.DoesNotContain("spliced reply failed", File.ReadAllText(m.Logs[mp]));
    }

    [Fact]
    public void Reads_and_writes_with_several_requests_in_flight_reach_the_right_bytes()
    {
        // The server accepts asynchronous direct I/O: a large O_DIRECT read or write is sent as several requests
        // at once (one per 1 MiB), and io_uring keeps several reads of a file opened for direct reads in flight.
        // The two server threads then answer them side by side, each piece at its own offset.
        using var tree = new RandomTree(6 * 1024 * 1024 + 12_345, 23);
        string want = Convert.ToHexString(SHA256.HashData(tree.Bytes)).ToLowerInvariant();
        using var m = new Mounted(tree.Path);
        string direct = m.Mount("inflight");
        string cached = m.MountAt("mnt-inflight-cached", "inflight", "--direct-read", "off");
        // O_DIRECT through the mount that caches: 4 MiB reads and writes, four requests each, the last short.
        var dd = Sh.Ok(Sh.Bash($"""
            dd if=big.bin iflag=direct bs=4M status=none | sha256sum | cut -d' ' -f1
            dd if='{tree.File}' of=copy.bin oflag=direct bs=4M status=none
            """, cached), "O_DIRECT dd");
        Assert.Equal($"{want}\n", dd.Out);
        Assert.Equal($"{want}\n", Sh.Ok(Sh.Bash("sha256sum copy.bin | cut -d' ' -f1", direct), "read the copy back").Out);
        // fio writes 16 MiB with eight 1 MiB O_DIRECT writes in flight, each block carrying its own checksum,
        // then reads it back eight at a time and checks every block: through the mount that reads large files
        // directly (buffered io_uring reads of a file opened read-only) and through the one that caches
        // (O_DIRECT). A block served from the wrong offset or layer fails the check and fio's exit code.
        const string Job = "--name=inflight --filename=fio.bin --bs=1M --size=16M --ioengine=io_uring --iodepth=8 --verify=crc32c";
        Sh.Ok(Sh.Bash($"fio {Job} --rw=write --direct=1 --do_verify=0 --output-format=terse >/dev/null", cached), "fio write");
        Sh.Ok(Sh.Bash($"fio {Job} --rw=read --direct=0 --readonly --output-format=terse >/dev/null", direct), "fio read, direct mount");
        Sh.Ok(Sh.Bash($"fio {Job} --rw=read --direct=1 --readonly --output-format=terse >/dev/null", cached), "fio read, O_DIRECT");
        // And a block changed through the mount is caught by the same check: the check can fail.
        Sh.Ok(Sh.Bash("printf X | dd of=fio.bin bs=1 seek=5000000 conv=notrunc status=none", direct), "damage one block");
        var bad = Sh.Bash($"fio {Job} --rw=read --direct=0 --readonly --output-format=terse", direct);
        Assert.NotEqual(0, bad.Code);
        Assert.Contains("verify failed", bad.Err + bad.Out);
        foreach (string mp in new[] { direct, cached })
            Assert.DoesNotContain(" on node ", File.ReadAllText(m.Logs[mp]));
    }

    [Fact]
    public void A_damaged_chunk_of_base_data_reads_as_EIO_and_the_bytes_before_it_stay_readable()
    {
        // The server checks base data ahead of large reads in the background; a damaged chunk found there
        // must still fail the reader's own request (EIO), never be served, and never stop the server.
        using var tree = new RandomTree(4 << 20, 22);
        var original = tree.Bytes;
        using var m = new Mounted(tree.Path);
        // Find the file's bytes at 2.5 MiB in the region and flip one of them.
        const int At = (5 << 20) / 2;
        var needle = original.AsSpan(At, 64).ToArray();
        var head = new byte[32 << 20];
        int got;
        using (var f = File.OpenRead(m.Region)) got = f.ReadAtLeast(head, head.Length, throwOnEndOfStream: false);
        int where = head.AsSpan(0, got).IndexOf(needle);
        Assert.True(where > 0, "the file's bytes were not found in the region");
        using (var f = new FileStream(m.Region, FileMode.Open, FileAccess.ReadWrite))
        {
            f.Position = where + 10;
            f.WriteByte((byte)(original[At + 10] ^ 0x5A));
        }
        string mp = m.Mount("main", false);
        var r = Sh.Bash("dd if=big.bin of=/dev/null bs=1M 2>&1 || echo failed", mp);
        Assert.Contains("Input/output error", r.Out);
        Assert.Contains("failed", r.Out);
        string firstTwo = Convert.ToHexString(SHA256.HashData(original.AsSpan(0, 2 << 20))).ToLowerInvariant();
        var again = Sh.Ok(Sh.Bash("head -c 2097152 big.bin | sha256sum | cut -d' ' -f1 && ls", mp), "read before the damage");
        Assert.Equal($"{firstTwo}\nbig.bin\n", again.Out);
        Assert.True(BranchMount.IsMounted(mp));
    }

    [Fact]
    public void A_damaged_branch_is_fenced_and_the_rest_of_the_region_is_served()
    {
        using var m = new Mounted();
        Sh.Ok(m.Cli("branch", "create", "good"), "create good");
        Sh.Ok(m.Cli("branch", "create", "bad"), "create bad");
        Sh.Ok(Sh.Bash($"echo note | dotnet {Path.Combine(AppContext.BaseDirectory, "daxfs.dll")} put /note.txt -b bad -r {m.Region}"), "write to bad");
        Sh.Ok(m.Cli("branch", "create", "badchild", "--parent", "bad"), "fork from bad");
        long record;
        using (var s = Store.Open(m.Region))
        {
            var c = s.Cursor(s.GetBranch("bad").State.Log.Ref);
            Assert.True(c.MoveNext());
            record = c.Offset + 24;
        }
        using (var f = new FileStream(m.Region, FileMode.Open, FileAccess.ReadWrite))
        {
            f.Position = record;
            int b = f.ReadByte();
            f.Position = record;
            f.WriteByte((byte)(b ^ 0x40));
        }

        // The healthy branch mounts and reads; the damage makes the mount read-only, and the server says why.
        string good = m.MountAt("mnt-good", "good");
        Assert.Equal("# project\n", File.ReadAllText(Path.Combine(good, "README.md")));
        var write = Sh.Bash($"echo x > {good}/new.txt");
        Assert.NotEqual(0, write.Code);
        Assert.Contains("Read-only file system", write.Err);
        Assert.Contains("is damaged (1 damaged log(s)", File.ReadAllText(m.Logs[good]));

        // The damaged branch and its child are refused with the damage named, not served as EIO everywhere.
        foreach (string branch in new[] { "bad", "badchild" })
        {
            string mp = Path.Combine(m.Root, "mnt-" + branch);
            Directory.CreateDirectory(mp);
            var r = Sh.Daxfs("mount", mp, "-r", m.Region, "-b", branch, "--background");
            Assert.Equal(3, r.Code);
            Assert.Contains($"offset {record - 24}", r.Err);
            Assert.False(BranchMount.IsMounted(mp));
        }
        // Verification still reports it, and the good mount is still serving.
        Assert.Equal(3, m.Cli("verify").Code);
        Assert.Equal("# project\n", File.ReadAllText(Path.Combine(good, "README.md")));
    }

    [Fact]
    public void A_region_truncated_under_the_mount_answers_EIO_and_the_server_stays_up()
    {
        using var m = new Mounted();
        string mp = m.Mount("t");
        Sh.Ok(Sh.Bash("echo written > new.txt && cat README.md lib/util.sh > /dev/null", mp), "use the branch");
        string Pids() => Sh.Bash($"pgrep -f '[d]axfs.dll mount {mp}' || true").Out.Trim();
        string pid = Pids();
        Assert.NotEqual("", pid);

        // Cut the file to its first two pages: the mapping now runs far past the file's end.
        Sh.Ok(Sh.Run("truncate", ["-s", "8192", m.Region]), "truncate");
        Assert.True(Wait.Until(() =>
        {
            var r = Sh.Bash($"cat {mp}/README.md {mp}/new.txt {mp}/data.bin > /dev/null");
            return r.Code != 0 && r.Err.Contains("Input/output error");
        }), "reads after the truncation should fail with EIO");
        var list = Sh.Bash($"ls {mp}; stat {mp}/lib/util.sh; echo more > {mp}/other.txt");
        Assert.NotEqual(0, list.Code);
        Assert.Contains("Input/output error", list.Err);
        // The same server, still answering (with errors), not killed by SIGBUS.
        Assert.Equal(pid, Pids());
        Assert.True(BranchMount.IsMounted(mp));
        string log = File.ReadAllText(m.Logs[mp]);
        Assert.Contains("was truncated to 8192 bytes while open", log);
        Assert.Single(System.Text.RegularExpressions.Regex.Matches(log, "every request is answered EIO"));
        Sh.Ok(Sh.Daxfs("unmount", mp), "unmount");
        Assert.True(Wait.Until(() => Pids() == ""));
        // The CLI names the damage too, with the damage exit code.
        var open = m.Cli("ls", "/");
        Assert.Equal(3, open.Code);
        Assert.Contains("the file holds 8192 bytes but its superblock records a capacity of 536870912: it was truncated", open.Err);
    }

    [Fact]
    public void Permissions_are_enforced_for_other_users()
    {
        using var m = new Mounted();
        string mp = m.Mount("perm");
        Sh.Ok(Sh.Bash("chmod 600 README.md && mkdir shared && chmod 777 shared && chmod 755 .", mp), "chmod");
        string asNobody = "setpriv --reuid=nobody --regid=nogroup --clear-groups";
        var denied = Sh.Bash($"{asNobody} cat README.md", mp);
        Assert.NotEqual(0, denied.Code);
        Assert.Contains("Permission denied", denied.Err);
        Assert.NotEqual(0, Sh.Bash($"{asNobody} touch new.txt", mp).Code);
        Sh.Ok(Sh.Bash($"{asNobody} cat lib/util.sh && {asNobody} sh -c 'echo mine > shared/n.txt' && stat -c %U shared/n.txt", mp), "allowed");
        Assert.Contains("nobody", Sh.Bash("stat -c %U shared/n.txt", mp).Out);
    }

    [Fact]
    public void A_user_other_than_root_mounts_through_fusermount3()
    {
        using var m = new Mounted();
        Sh.Ok(m.Cli("branch", "create", "user"), "branch create");
        Sh.Ok(m.Cli("mkdir", "/shared", "-b", "user"), "mkdir");
        Sh.Ok(m.Cli("chmod", "777", "/shared", "-b", "user"), "chmod"); // the image's root is root's: nobody writes here
        string mp = Path.Combine(m.Root, "mnt-user");
        Directory.CreateDirectory(mp);
        Sh.Ok(Sh.Bash($"chmod 755 '{m.Root}' && chmod 666 '{m.Region}' && chown nobody:nogroup '{mp}'"), "permissions");
        string asNobody = $"setpriv --reuid=nobody --regid=nogroup --clear-groups env HOME=/tmp dotnet '{Path.Combine(AppContext.BaseDirectory, "daxfs.dll")}'";
        // Distributions make /dev/fuse 0666 (fusermount3 opens it as the user); some containers leave it 0600.
        var fuseMode = File.GetUnixFileMode("/dev/fuse");
        const UnixFileMode Open = UnixFileMode.UserRead | UnixFileMode.UserWrite | UnixFileMode.GroupRead | UnixFileMode.GroupWrite | UnixFileMode.OtherRead | UnixFileMode.OtherWrite;
        if (fuseMode != Open)
        {
            var refused = Sh.Bash($"{asNobody} mount '{mp}' -r '{m.Region}' -b user");
            Assert.Equal(1, refused.Code);
            Assert.Contains("chmod 666 /dev/fuse", refused.Err, StringComparison.Ordinal); // the error says what to do
            File.SetUnixFileMode("/dev/fuse", Open);
        }
        try
        {
            Sh.Ok(Sh.Bash($"{asNobody} mount '{mp}' -r '{m.Region}' -b user --background"), "mount as nobody");
            var mount = File.ReadLines("/proc/self/mountinfo").Single(l => l.Split(' ')[4] == mp);
            Assert.Contains("fuse.daxfs", mount, StringComparison.Ordinal);
            Assert.Contains("nosuid", mount, StringComparison.Ordinal);
            var r = Sh.Ok(Sh.Bash($"setpriv --reuid=nobody --regid=nogroup --clear-groups sh -c 'echo hi > {mp}/shared/f.txt && cat {mp}/shared/f.txt && stat -c %U {mp}/shared/f.txt'"), "write as nobody");
            Assert.Equal("hi\nnobody\n", r.Out);
            var denied = Sh.Bash($"setpriv --reuid=nobody --regid=nogroup --clear-groups touch '{mp}/g.txt'");
            Assert.NotEqual(0, denied.Code); // permissions are enforced: the root directory is root's
            Assert.Contains("Permission denied", denied.Err, StringComparison.Ordinal);
            Sh.Ok(Sh.Bash($"{asNobody} unmount '{mp}'"), "unmount as nobody");
            Assert.False(BranchMount.IsMounted(mp));
        }
        finally
        {
            if (BranchMount.IsMounted(mp)) BranchMount.Unmount(mp);
            File.SetUnixFileMode("/dev/fuse", fuseMode);
        }
        Assert.Equal("hi\n", Sh.Ok(m.Cli("cat", "/shared/f.txt", "-b", "user"), "cat").Out);
        for (int i = 0; i < 50 && Sh.Bash($"pgrep -f '[d]axfs.dll mount {mp}' || true").Out.Trim() != ""; i++) Thread.Sleep(100);
        Assert.Equal("", Sh.Bash($"pgrep -f '[d]axfs.dll mount {mp}' || true").Out.Trim());
    }

    [Fact]
    public void Main_is_mounted_read_only()
    {
        using var m = new Mounted();
        string mp = m.Mount("main");
        var r = Sh.Bash("echo x > new.txt", mp);
        Assert.NotEqual(0, r.Code);
        Assert.Contains("Read-only file system", r.Err);
        Assert.Equal("# project\n", File.ReadAllText(Path.Combine(mp, "README.md")));
    }

    [Fact]
    public void A_commit_elsewhere_makes_the_sibling_mount_stale()
    {
        using var m = new Mounted();
        string a = m.Mount("a");
        string b = m.Mount("b");
        File.WriteAllText(Path.Combine(a, "a.txt"), "from a");
        Assert.Equal("# project\n", File.ReadAllText(Path.Combine(b, "README.md"))); // cached in b's page cache
        Sh.Ok(m.Cli("branch", "commit", "a", "-m", "a wins"), "commit a");
        Thread.Sleep(500); // the server notices within 100 ms and drops the kernel's cache
        var r = Sh.Bash($"cat '{b}/README.md'");
        Assert.NotEqual(0, r.Code);
        Assert.Contains("Stale file handle", r.Err);
        var w = Sh.Bash($"echo x > '{b}/x.txt'");
        Assert.NotEqual(0, w.Code);
        Assert.Contains("Stale file handle", w.Err);
        string main = m.Mount("main");
        Assert.Equal("from a", File.ReadAllText(Path.Combine(main, "a.txt")));
    }

    [Fact]
    public void A_child_forked_from_another_shell_freezes_the_mounted_branch()
    {
        using var m = new Mounted();
        string mp = m.Mount("parent");
        File.WriteAllText(Path.Combine(mp, "before.txt"), "ok");
        Sh.Ok(m.Cli("branch", "create", "child", "--parent", "parent"), "fork a child");
        var r = Sh.Bash($"echo x > '{mp}/after.txt'");
        Assert.NotEqual(0, r.Code);
        Assert.Contains("Device or resource busy", r.Err); // EBUSY: frozen by a live child
        Assert.Equal("ok", File.ReadAllText(Path.Combine(mp, "before.txt")));
        Sh.Ok(m.Cli("branch", "discard", "child"), "discard the child");
        Sh.Ok(Sh.Bash($"echo x > '{mp}/after.txt'"), "write after the child ended");
        // Another process writing into the mounted branch is seen through the mount.
        Sh.Ok(Sh.Run("bash", ["-c", $"echo from-cli | dotnet '{Path.Combine(AppContext.BaseDirectory, "daxfs.dll")}' put /cli.txt -r '{m.Region}' -b parent"]), "put from another process");
        Thread.Sleep(500);
        Assert.Equal("from-cli\n", File.ReadAllText(Path.Combine(mp, "cli.txt")));
    }

    [Fact]
    public void Directory_listings_cached_by_the_kernel_follow_every_change()
    {
        // The kernel keeps directory listings in its cache; changes made through the mount and changes made
        // by another process must both show in the next listing.
        using var m = new Mounted();
        string mp = m.Mount("lists");
        string Ls() => Sh.Ok(Sh.Bash("ls -a lib | tr '\\n' ' '", mp), "ls").Out.Trim();
        Assert.Equal(". .. util.sh", Ls());
        Assert.Equal(". .. util.sh", Ls()); // now from the cache
        Sh.Ok(Sh.Bash("touch lib/new && mkdir lib/sub", mp), "create");
        Assert.Equal(". .. new sub util.sh", Ls());
        Sh.Ok(Sh.Bash("mv lib/util.sh lib/u2.sh && rm lib/new && rmdir lib/sub", mp), "rename and remove");
        Assert.Equal(". .. u2.sh", Ls());
        // Another process adds a file to the mounted branch, then removes one.
        string daxfs = Path.Combine(AppContext.BaseDirectory, "daxfs.dll");
        Sh.Ok(Sh.Run("bash", ["-c", $"echo x | dotnet '{daxfs}' put /lib/ext.txt -r '{m.Region}' -b lists"]), "put from another process");
        Assert.True(Wait.Until(() => Ls() == ". .. ext.txt u2.sh"), $"listing after an outside put: {Ls()}");
        Sh.Ok(m.Cli("rm", "/lib/u2.sh", "-b", "lists"), "rm from another process");
        Assert.True(Wait.Until(() => Ls() == ". .. ext.txt"), $"listing after an outside rm: {Ls()}");
    }

    /// <summary>
    /// Starts `daxfs mount MP ARGS` in the foreground, with the signals' default dispositions: a runner that started the
    /// tests in the background (SIGINT and SIGQUIT ignored) or under nohup (SIGHUP ignored) would pass the ignoring on,
    /// and an ignored signal stays ignored. Returns the server and its output, read to the end.
    /// </summary>
    private static (System.Diagnostics.Process Server, Task<string> Stdout, Task<string> Stderr) ForegroundMount(string mp, params string[] args)
    {
        var psi = new System.Diagnostics.ProcessStartInfo("env") { RedirectStandardOutput = true, RedirectStandardError = true };
        foreach (var a in new[] { "--default-signal=HUP,QUIT,INT,TERM", "dotnet", Path.Combine(AppContext.BaseDirectory, "daxfs.dll"), "mount", mp }.Concat(args))
            psi.ArgumentList.Add(a);
        var server = System.Diagnostics.Process.Start(psi)!;
        return (server, server.StandardOutput.ReadToEndAsync(), server.StandardError.ReadToEndAsync());
    }

    [Fact]
    public async Task Names_the_kernel_caches_found_or_missing_follow_changes_made_elsewhere()
    {
        // A mount whose names stay cached for a minute: a change made by another process must still show at
        // once (the watcher pushes it), and a name probed again and again while missing costs one request.
        using var m = new Mounted();
        Sh.Ok(m.Cli("branch", "create", "names"), "branch create");
        string mp = Path.Combine(m.Root, "mnt-names");
        Directory.CreateDirectory(mp);
        var (server, stdout, stderr) = ForegroundMount(mp, "-r", m.Region, "-b", "names", "--cache-timeout", "60");
        using var _ = server;
        try
        {
            Assert.True(Wait.Until(() => BranchMount.IsMounted(mp)), "the foreground mount did not come up");
            Sh.Ok(Sh.Bash("for i in $(seq 50); do [ ! -e missing.txt ]; done; cat README.md >/dev/null", mp), "probe a missing name 50 times");
            Sh.Ok(Sh.Run("bash", ["-c", $"echo made-elsewhere | dotnet '{Path.Combine(AppContext.BaseDirectory, "daxfs.dll")}' put /missing.txt -r '{m.Region}' -b names"]), "put from another process");
            Sh.Ok(m.Cli("mv", "/README.md", "/README2.md", "-b", "names"), "rename from another process");
            Assert.True(Wait.Until(() => File.Exists(Path.Combine(mp, "missing.txt")) && !File.Exists(Path.Combine(mp, "README.md"))
                && File.Exists(Path.Combine(mp, "README2.md"))), "names cached for 60 s did not follow the changes made elsewhere");
            Assert.Equal("made-elsewhere\n", File.ReadAllText(Path.Combine(mp, "missing.txt")));
        }
        finally
        {
            if (BranchMount.IsMounted(mp)) Sh.Daxfs("unmount", mp);
            Assert.True(server.WaitForExit(30_000), "the server did not exit after unmount");
        }
        // The server reports what it served when it stops.
        string report = await stderr + await stdout;
        var lookups = System.Text.RegularExpressions.Regex.Match(report, @"served \d+ requests \(\d+ of them over io_uring\) through [^:]*: .*\bLOOKUP (\d+)");
        Assert.True(lookups.Success, $"no request summary in: {report}");
        // The suite runs once per transport: over io_uring (DAXFS_URING=on), requests must really have come through the rings.
        if (Environment.GetEnvironmentVariable("DAXFS_URING") == "on")
            Assert.Matches(@"\([1-9]\d* of them over io_uring\) through io_uring \(", report);
        else if (Environment.GetEnvironmentVariable("DAXFS_URING") == "off")
            Assert.Contains("(0 of them over io_uring) through /dev/fuse", report);
        int n = int.Parse(lookups.Groups[1].Value);
        // Missing names are cached (the watcher drops each one that appears elsewhere): 50 probes, a few lookups.
        Assert.True(n < 20, $"50 probes of a missing name cost {n} lookups: {report}");
    }

    [Theory]
    [InlineData("HUP")]
    [InlineData("QUIT")]
    [InlineData("TERM")]
    public async Task A_foreground_server_sent_a_hangup_or_quit_unmounts_and_reports(string signal)
    {
        // A closed terminal sends SIGHUP: the server unmounts and reports, rather than dying and leaving a dead mount.
        using var m = new Mounted();
        string mp = Path.Combine(m.Root, $"mnt-{signal}");
        Directory.CreateDirectory(mp);
        var (server, stdout, stderr) = ForegroundMount(mp, "-r", m.Region);
        using var _ = server;
        try
        {
            Assert.True(Wait.Until(() => BranchMount.IsMounted(mp)), "the foreground mount did not come up");
            Assert.True(File.Exists(Path.Combine(mp, "README.md")), "the mount serves nothing");
            Sh.Ok(Sh.Run("kill", [$"-{signal}", server.Id.ToString(System.Globalization.CultureInfo.InvariantCulture)]), "kill");
            Assert.True(server.WaitForExit(30_000), $"the server did not exit on SIG{signal}");
            Assert.False(BranchMount.IsMounted(mp), $"SIG{signal} left the mount behind");
            Assert.Equal(0, server.ExitCode);
        }
        finally
        {
            if (BranchMount.IsMounted(mp)) Sh.Daxfs("unmount", mp);
            if (!server.HasExited) server.Kill();
        }
        Assert.Matches(@"served \d+ requests", await stderr + await stdout);
    }

    [Fact]
    public void Unmount_of_a_busy_mount_lets_its_readers_finish_and_of_a_frozen_server_releases_them()
    {
        using var m = new Mounted();
        string mp = m.Mount("busy");
        Sh.Ok(Sh.Bash($"head -c 67108864 /dev/zero > '{mp}/big.bin'"), "a 64 MiB file");
        // Busy: small reads in a loop while the unmount detaches the tree. The server is alive and working: it is
        // never aborted, and the reader (which opened the file before) reads to the end.
        var reader = Sh.Start("bash", ["-c", $"cd '{mp}' && for i in 1 2 3; do dd if=big.bin of=/dev/null bs=4k status=none || exit 1; done"]);
        Thread.Sleep(300);
        Sh.Ok(Sh.Daxfs("unmount", mp), "unmount while busy");
        Assert.True(reader.WaitForExit(120_000), "the reader did not finish");
        Assert.Equal(0, reader.ExitCode);

        // Frozen: a stopped server with readers waiting on it. The unmount finds it stuck and ends it: the readers
        // get an error within seconds, whatever the transport.
        string frozen = m.Mount("frozen");
        string pid = Sh.Bash($"pgrep -f '[d]axfs.dll mount {frozen}'").Out.Trim().Split('\n')[0];
        Sh.Ok(Sh.Bash($"kill -STOP {pid}"), "stop the server");
        var waiting = Sh.Start("bash", ["-c", $"cat '{frozen}/README.md'"]);
        Thread.Sleep(500);
        Sh.Ok(Sh.Daxfs("unmount", frozen), "unmount of a frozen server");
        Assert.True(waiting.WaitForExit(120_000), "a reader of the frozen server was never released"); // a guard against a hang, not a timing
        Assert.NotEqual(0, waiting.ExitCode);
        Assert.False(BranchMount.IsMounted(frozen));
    }

    [Fact]
    public void Unmount_leaves_no_server_and_clears_a_crashed_one()
    {
        using var m = new Mounted();
        string mp = m.Mount("x");
        // The bracket keeps the pattern from matching the shell that runs pgrep.
        string Pids() => Sh.Bash($"pgrep -f '[d]axfs.dll mount {mp}' || true").Out.Trim();
        Assert.NotEqual("", Pids());
        Sh.Ok(Sh.Daxfs("unmount", mp), "unmount");
        for (int i = 0; i < 50 && Pids() != ""; i++) Thread.Sleep(100);
        Assert.Equal("", Pids());
        Assert.False(BranchMount.IsMounted(mp));

        string crashed = m.Mount("y");
        Sh.Bash($"pkill -9 -f '[d]axfs.dll mount {crashed}'");
        Thread.Sleep(300);
        var dead = Sh.Bash($"ls '{crashed}'");
        Assert.NotEqual(0, dead.Code);
        Assert.Contains("Transport endpoint is not connected", dead.Err);
        var again1 = Sh.Daxfs("mount", crashed, "-r", m.Region, "-b", "y", "--background");
        Assert.Equal(1, again1.Code);
        Assert.Contains($"not connected: a mount whose server is gone is still there (run daxfs unmount {crashed})", again1.Err);
        Sh.Ok(Sh.Daxfs("unmount", crashed), "unmount of a crashed mount");
        Assert.False(BranchMount.IsMounted(crashed));
        Assert.Equal(0, Sh.Bash($"ls '{crashed}'").Code);
        // The branch is still there and can be mounted again.
        string again = m.Mount("y", create: false);
        Assert.True(File.Exists(Path.Combine(again, "README.md")));
    }

    [Fact]
    public void Mount_errors_are_clear()
    {
        using var m = new Mounted();
        var r = Sh.Daxfs("mount", "/nonexistent-dir", "-r", m.Region, "-b", "main");
        Assert.Equal(1, r.Code);
        Assert.Contains("mount point does not exist", r.Err);
        string file = Path.Combine(m.Root, "a-file");
        File.WriteAllText(file, "x");
        r = Sh.Daxfs("mount", file, "-r", m.Region, "-b", "main");
        Assert.Equal(2, r.Code);
        Assert.Contains("not a directory", r.Err);
        Directory.CreateDirectory(Path.Combine(m.Root, "mp"));
        r = Sh.Daxfs("mount", Path.Combine(m.Root, "mp"), "-r", m.Region, "-b", "nope");
        Assert.Equal(1, r.Code);
        Assert.Contains("branch 'nope' not found", r.Err);
        r = Sh.Daxfs("mount", Path.Combine(m.Root, "mp"), "-r", m.Region, "-b", "main", "--cache-timeout", "soon");
        Assert.Equal(2, r.Code);
        Assert.Contains("--cache-timeout: 'soon' is not a number of seconds", r.Err);
        r = Sh.Daxfs("mount", Path.Combine(m.Root, "mp"), "-r", m.Region, "-b", "main", "--cache-timeout", "NaN");
        Assert.Equal(2, r.Code);
        Assert.Contains("--cache-timeout: 'NaN' is not a number of seconds", r.Err);
        r = Sh.Daxfs("unmount", Path.Combine(m.Root, "mp"));
        Assert.Equal(1, r.Code);
        Assert.Contains("not mounted", r.Err);
        // A second mount at a mount point in use is refused, in the background too, and the first stays.
        string mp = m.Mount("main", false);
        r = Sh.Daxfs("mount", mp, "-r", m.Region, "-b", "main", "--background");
        Assert.Equal(1, r.Code);
        Assert.Contains("already mounted there", r.Err);
        Assert.True(BranchMount.IsMounted(mp));
        Assert.Equal("# project\n", File.ReadAllText(Path.Combine(mp, "README.md")));
    }
}
