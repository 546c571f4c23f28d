using System.Text.RegularExpressions;
using Daxfs.Branching.Fuse;
using Xunit.Abstractions;

namespace Daxfs.Branching.Fuse.Tests;

/// <summary>One server for the whole region: branches as @NAME directories, their lifecycle by file operations alone.</summary>
public class RegionMountTests(ITestOutputHelper output)
{
    [Fact]
    public void Fork_edit_nest_commit_and_end_by_file_operations_alone()
    {
        using var m = new Mounted();
        string mnt = m.MountRegion();
        // Main at the root, read-only; no branch yet.
        Assert.Equal("# project\n", File.ReadAllText(Path.Combine(mnt, "README.md")));
        Assert.Contains("Read-only file system", Sh.Bash($"echo x > {mnt}/new.txt").Err);

        Sh.Ok(Sh.Bash($"mkdir {mnt}/@a {mnt}/@loser && echo edited > {mnt}/@a/README.md"), "fork two branches and edit one");
        Assert.Equal("@a\n@loser\nREADME.md\ndata.bin\nlib\n", Sh.Ok(Sh.Bash($"LC_ALL=C ls {mnt}"), "ls").Out);
        Assert.Equal("edited\n", File.ReadAllText(Path.Combine(mnt, "@a", "README.md")));
        Assert.Equal("# project\n", File.ReadAllText(Path.Combine(mnt, "README.md")));

        // The control entry is hidden from ls, find and git status, but there by name.
        Assert.DoesNotContain(".daxfs", Sh.Ok(Sh.Bash($"ls -a {mnt}/@a; find {mnt}/@a"), "list").Out);
        var status = Sh.Ok(Sh.Bash($"cat {mnt}/@a/.daxfs/ctl"), "read ctl").Out;
        Assert.Contains("branch: a\nparent: main\nstatus: live\n", status);
        Assert.Contains("last-failure: none", status);
        Sh.Ok(Sh.Bash($"cd {mnt}/@a && git init -q && git add -A && git -c user.email=t@t -c user.name=t commit -qm init && test -z \"$(git status --porcelain)\""), "git sees no control entry");
        Sh.Ok(Sh.Bash($"rm -rf {mnt}/@a/.git"), "drop the repository");

        // A child of @a by mkdir in its control entry; @a is frozen (EBUSY) while it lives.
        Sh.Ok(Sh.Bash($"mkdir {mnt}/@a/.daxfs/branches/a-child"), "fork a child of a");
        Assert.Equal("a-child\n", Sh.Ok(Sh.Bash($"ls {mnt}/@a/.daxfs/branches"), "children").Out);
        Assert.Contains("Device or resource busy", Sh.Bash($"echo x > {mnt}/@a/frozen.txt").Err);
        Sh.Ok(Sh.Bash($"echo nested > {mnt}/@a/.daxfs/branches/a-child/nested.txt"), "write in the child through its parent's entry");
        Assert.Equal("nested\n", File.ReadAllText(Path.Combine(mnt, "@a-child", "nested.txt"))); // the same branch, reached at the root too
        Assert.Contains("Device or resource busy", Sh.Bash($"echo commit > {mnt}/@a/.daxfs/ctl").Err); // a branch with a live child
        Assert.Contains("last-failure: ", Sh.Ok(Sh.Bash($"cat {mnt}/@a/.daxfs/ctl"), "ctl").Out);
        Assert.DoesNotContain("last-failure: none", Sh.Ok(Sh.Bash($"cat {mnt}/@a/.daxfs/ctl"), "ctl").Out);

        // Fold the child into @a, then commit @a: main gets both, the sibling answers ESTALE.
        Sh.Ok(Sh.Bash($"echo 'commit-parent child work' > {mnt}/@a-child/.daxfs/ctl"), "commit to parent");
        Assert.Equal("nested\n", File.ReadAllText(Path.Combine(mnt, "@a", "nested.txt")));
        var loser = Sh.Bash($"cd {mnt}/@loser && echo commit > {mnt}/@a/.daxfs/ctl && sleep 0.3 && ls .");
        Assert.NotEqual(0, loser.Code);
        Assert.Contains("Stale file handle", loser.Err);
        Assert.Equal("edited\n", File.ReadAllText(Path.Combine(mnt, "README.md")));
        Assert.Equal("nested\n", File.ReadAllText(Path.Combine(mnt, "nested.txt")));
        Assert.True(Wait.Until(() => !Directory.EnumerateFileSystemEntries(mnt, "@*").Any()), "committed and invalidated branches leave the root");

        // Abort and discard.
        Sh.Ok(Sh.Bash($"mkdir {mnt}/@b && mkdir {mnt}/@b/.daxfs/branches/b2 && echo abort > {mnt}/@b2/.daxfs/ctl"), "abort a chain");
        Assert.True(Wait.Until(() => !Directory.Exists(Path.Combine(mnt, "@b")) && !Directory.Exists(Path.Combine(mnt, "@b2"))), "abort ends the whole chain");
        Sh.Ok(Sh.Bash($"mkdir {mnt}/@c && echo discard > {mnt}/@c/.daxfs/ctl"), "discard");
        Sh.Ok(Sh.Bash($"mkdir {mnt}/@d && rmdir {mnt}/@d"), "rmdir discards");
        Assert.True(Wait.Until(() => !Directory.EnumerateFileSystemEntries(mnt, "@*").Any()));
        Assert.DoesNotContain(m.Cli("branch", "list").Out.Split('\n'), l => Regex.IsMatch(l, @"^\s+[bcd]2?\s+main\s+live"));
    }

    [Fact]
    public void Every_failure_is_an_errno_and_the_server_keeps_serving()
    {
        using var m = new Mounted();
        string mnt = m.MountRegion();
        Sh.Ok(Sh.Bash($"mkdir {mnt}/@x"), "fork");
        string Err(string script) => Sh.Bash(script).Err;
        Assert.Contains("File exists", Err($"mkdir {mnt}/@x"));
        Assert.Contains("Invalid argument", Err($"mkdir {mnt}/@bad@name"));
        Assert.Contains("Invalid argument", Err($"mkdir {mnt}/@{new string('n', 250)}"));
        Assert.Contains("File name too long", Err($"mkdir {mnt}/@{new string('n', 255)}"));
        Assert.Contains("No such file or directory", Err($"rmdir {mnt}/@missing"));
        Assert.Contains("Read-only file system", Err($"echo commit > {mnt}/.daxfs/ctl")); // main
        Assert.Contains("Invalid argument", Err($"echo frobnicate > {mnt}/@x/.daxfs/ctl"));
        Assert.Contains("Invalid argument", Err($"head -c 300 /dev/urandom > {mnt}/@x/.daxfs/ctl"));
        Assert.Contains("Invalid argument", Err($"echo 'fork ../up' > {mnt}/@x/.daxfs/ctl"));
        Assert.Contains("Invalid argument", Err($"echo 'abort now' > {mnt}/@x/.daxfs/ctl"));
        // A command written in pieces is refused piece by piece, never pieced together.
        var pieces = Sh.Bash($"python3 -c \"import os; fd=os.open('{mnt}/@x/.daxfs/ctl', os.O_WRONLY)\n" +
            "for p in (b'com', b'mit'):\n  try: os.write(fd, p); print('accepted')\n  except OSError as e: print(e.strerror)\"");
        Assert.Equal("Invalid argument\nInvalid argument\n", pieces.Out);
        Assert.True(Directory.Exists(Path.Combine(mnt, "@x")), "nothing was committed");
        Assert.Contains("last-failure: unknown command 'mit'", Sh.Ok(Sh.Bash($"cat {mnt}/@x/.daxfs/ctl"), "ctl").Out);
        // The control entry and branches are not files: EPERM, EXDEV and EEXIST, not damage.
        Assert.Contains("Operation not permitted", Err($"rm {mnt}/@x/.daxfs/ctl"));
        Assert.Contains("File exists", Err($"mkdir {mnt}/@x/.daxfs"));
        Sh.Ok(Sh.Bash($"mkdir {mnt}/@y && echo hi > {mnt}/@x/f.txt"), "another branch");
        Assert.Contains("Invalid cross-device link", Sh.Bash($"python3 -c \"import os; os.rename('{mnt}/@x/f.txt', '{mnt}/@y/f.txt')\"").Err);
        Sh.Ok(Sh.Bash($"mv {mnt}/@x/f.txt {mnt}/@y/f.txt && cat {mnt}/@y/f.txt"), "mv copies across branches");
        // An invalidated branch answers ESTALE through its control file too.
        Sh.Ok(m.Cli("branch", "commit", "y"), "commit y elsewhere");
        Assert.True(Wait.Until(() => Sh.Bash($"cat {mnt}/@x/.daxfs/ctl").Code != 0));
        Assert.Equal("hi\n", File.ReadAllText(Path.Combine(mnt, "f.txt")));
        Assert.True(BranchMount.IsMounted(mnt));
        Assert.DoesNotContain(" on node ", File.ReadAllText(m.Logs[mnt])); // no request failed unexpectedly (EIO)
    }

    [Fact]
    [Trait("Category", "Slow")]
    public void Filling_the_branch_table_answers_ENOSPC_and_the_mount_keeps_serving()
    {
        using var m = new Mounted();
        string mnt = m.MountRegion();
        var r = Sh.Bash($"cd {mnt} && i=0; while mkdir @f$i 2>/tmp/enospc-$$; do i=$((i+1)); done; cat /tmp/enospc-$$; rm -f /tmp/enospc-$$; echo forked $i");
        output.WriteLine(r.Out);
        Assert.Contains("No space left on device", r.Out);
        int forked = int.Parse(Regex.Match(r.Out, @"forked (\d+)").Groups[1].Value);
        Assert.True(forked > 100, $"only {forked} forks before the table was full");
        Assert.Equal(forked, Directory.EnumerateDirectories(mnt, "@*").Count());
        Assert.Equal("# project\n", File.ReadAllText(Path.Combine(mnt, "@f0", "README.md")));
        Sh.Ok(Sh.Bash($"rmdir {mnt}/@f0 && mkdir {mnt}/@again"), "a slot freed is usable again");
    }

    [Fact]
    public void Two_processes_racing_to_fork_one_name_one_wins_the_other_gets_EEXIST()
    {
        using var m = new Mounted();
        string mnt = m.MountRegion();
        for (int round = 0; round < 10; round++)
        {
            var both = Sh.Bash($"python3 -c \"import os,sys\nfor n in range(2):\n  pid=os.fork()\n  if pid==0:\n    try: os.mkdir('{mnt}/@duel{round}'); os._exit(0)\n    except FileExistsError: os._exit(17)\nprint(sorted(os.waitstatus_to_exitcode(os.wait()[1]) for _ in range(2)))\"");
            Assert.Equal("[0, 17]\n", both.Out);
        }
    }

    [Fact]
    public void Branches_made_and_ended_elsewhere_appear_and_go_and_other_branches_keep_their_cache()
    {
        using var m = new Mounted();
        string mnt = m.MountRegion();
        Sh.Ok(Sh.Bash($"mkdir {mnt}/@steady && cat {mnt}/@steady/data.bin > /dev/null"), "a branch read through the mount");
        string steady = Sh.Ok(Sh.Bash($"fincore --bytes --noheadings --output RES {mnt}/@steady/data.bin"), "fincore").Out.Trim();
        Assert.NotEqual("0", steady);
        var sw = System.Diagnostics.Stopwatch.StartNew();
        Sh.Ok(m.Cli("branch", "create", "from-cli"), "fork elsewhere");
        Assert.True(Wait.Until(() => Directory.Exists(Path.Combine(mnt, "@from-cli"))));
        output.WriteLine($"a fork by the CLI showed in the mount {sw.ElapsedMilliseconds} ms after the CLI started (its own start-up included)");
        Assert.Contains("@from-cli", Sh.Ok(Sh.Bash($"ls {mnt}"), "ls").Out);
        Sh.Ok(Sh.Bash($"echo note | dotnet {Path.Combine(AppContext.BaseDirectory, "daxfs.dll")} put /note.txt -b from-cli -r {m.Region}"), "write elsewhere");
        Assert.True(Wait.Until(() => File.Exists(Path.Combine(mnt, "@from-cli", "note.txt"))));
        Sh.Ok(m.Cli("branch", "discard", "from-cli"), "end elsewhere");
        Assert.True(Wait.Until(() => !Sh.Ok(Sh.Bash($"ls {mnt}"), "ls").Out.Contains("@from-cli", StringComparison.Ordinal)));
        // The steady branch was never invalidated: what it had in the page cache is still there.
        string Cached() => Sh.Ok(Sh.Bash($"fincore --bytes --noheadings --output RES {mnt}/@steady/data.bin"), "fincore").Out.Trim();
        Assert.Equal(steady, Cached());
    }

    [Fact]
    public void The_sandbox_and_shell_recipes_run()
    {
        string repo = Path.GetFullPath(Path.Combine(AppContext.BaseDirectory, "../../../../.."));
        using var tree = new Mounted(); // only for its small source tree
        foreach (var script in new[] { "recipe.sh", "sandbox.sh", "agent_fork.py" })
        {
            var r = Sh.Run(Path.Combine(repo, "examples", "mount", script), [tree.Source],
                env: new Dictionary<string, string> { ["DAXFS_DLL"] = Path.Combine(AppContext.BaseDirectory, "daxfs.dll") });
            output.WriteLine($"{script}: {r.Out}{r.Err}");
            Assert.True(r.Code == 0, $"{script} failed: {r.Out}\n{r.Err}");
        }
    }

    [Fact]
    public void Forks_and_ends_racing_listings_never_stop_the_mount()
    {
        // The watcher notifies the kernel about a directory while requests that hold it wait for a handler: no
        // handler may wait for the watcher then. Five processes fork, end and list at once; all must finish (a hung
        // mount fails the test when the shell is killed after its 300 s).
        using var m = new Mounted();
        string mnt = m.MountRegion();
        var r = Sh.Bash($"""
            cd {mnt}
            for k in 1 2 3; do (for i in $(seq 150); do mkdir @w$k-$i && rmdir @w$k-$i; done) & done
            for k in 1 2; do (for i in $(seq 150); do ls > /dev/null; done) & done
            wait; ls | grep -c '^@' || true
            """);
        Assert.True(r.Code == 0, r.Err);
        Assert.Equal("0\n", r.Out);
        Assert.True(BranchMount.IsMounted(mnt));
        Assert.Equal("# project\n", File.ReadAllText(Path.Combine(mnt, "README.md")));
    }

    [Fact]
    public void A_real_daxfs_entry_is_hidden_by_the_control_entry_and_control_characters_are_refused()
    {
        using var m = new Mounted();
        Sh.Ok(m.Cli("branch", "create", "x"), "fork");
        Sh.Ok(Sh.Bash($"echo real | dotnet {Path.Combine(AppContext.BaseDirectory, "daxfs.dll")} put /.daxfs -b x -r {m.Region}"), "a real .daxfs");
        string mnt = m.MountRegion();
        Assert.DoesNotContain(".daxfs", Sh.Ok(Sh.Bash($"ls -a {mnt}/@x"), "ls").Out);
        Assert.Contains("branch: x", Sh.Ok(Sh.Bash($"cat {mnt}/@x/.daxfs/ctl"), "ctl").Out);
        var esc = Sh.Bash($"printf 'commit \\033]0;TITLE\\007' > {mnt}/@x/.daxfs/ctl");
        Assert.Contains("Invalid argument", esc.Err);
        Assert.True(Directory.Exists(Path.Combine(mnt, "@x")));
    }
}
