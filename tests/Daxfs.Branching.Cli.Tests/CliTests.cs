using System.Text.Json;

namespace Daxfs.Branching.Cli.Tests;

public class CliTests
{
    private static void Ok(Cli.Result r)
        => Assert.True(r.Code == 0, $"exit {r.Code}\nstdout: {r.Out}\nstderr: {r.Err}");

    private static void Fails(Cli.Result r, int code, string messagePart)
    {
        Assert.True(r.Code == code, $"expected exit {code}, got {r.Code}\nstdout: {r.Out}\nstderr: {r.Err}");
        Assert.Contains(messagePart, r.Err, StringComparison.Ordinal);
        Assert.StartsWith("daxfs: ", r.Err, StringComparison.Ordinal);
    }

    private static Workspace Built()
    {
        var ws = new Workspace();
        Ok(Cli.Run(null, "mkfs", ws.Source, "-r", ws.Region, "--capacity", "64M"));
        return ws;
    }

    [Fact]
    public void Help_lists_every_verb_and_each_verb_shows_an_example()
    {
        var r = Cli.Run(null, "--help");
        Ok(r);
        foreach (var verb in new[] { "mkfs", "inspect", "verify", "branch list", "branch create", "branch commit", "branch rebase", "branch abort", "branch discard", "tag", "compact", "gc", "resize", "mount", "unmount",
            "ls", "cat", "stat", "put", "rm", "mkdir", "mv", "ln", "truncate", "chmod", "diff", "log", "export", "demo" })
        {
            Assert.Contains(verb, r.Out, StringComparison.Ordinal);
            var h = Cli.Run(null, [.. verb.Split(' '), "--help"]);
            Ok(h);
            Assert.Contains("usage: daxfs " + verb, h.Out, StringComparison.Ordinal);
            Assert.Contains("example:", h.Out, StringComparison.Ordinal);
        }
        Assert.Equal(2, Cli.Run(null).Code);
    }

    [Fact]
    public void Mkfs_inspect_verify_and_log_with_json()
    {
        using var ws = Built();
        var inspect = ws.Run("inspect", "--json");
        Ok(inspect);
        var usage = inspect.Json.GetProperty("usage");
        Assert.Equal(64L << 20, usage.GetProperty("capacity").GetInt64());
        Assert.Equal(5, usage.GetProperty("baseInodes").GetInt64()); // root, README.md, lib, lib/util.py, data.bin
        Assert.Equal("main", inspect.Json.GetProperty("branches")[0].GetProperty("name").GetString());
        var verify = ws.Run("verify", "--json");
        Ok(verify);
        Assert.True(verify.Json.GetProperty("ok").GetBoolean());
        Assert.Equal(0, ws.Run("log", "--json").Json.GetArrayLength());
        var human = ws.Run("inspect");
        Ok(human);
        Assert.Contains("capacity", human.Out, StringComparison.Ordinal);
        // mkfs refuses to overwrite without --force, then replaces with it.
        Fails(Cli.Run(null, "mkfs", ws.Source, "-r", ws.Region), 1, "--force");
        Ok(Cli.Run(null, "mkfs", ws.Source, "-r", ws.Region, "--force", "--json"));
    }

    [Fact]
    public void Branch_lifecycle_and_file_verbs_end_to_end()
    {
        using var ws = Built();
        Ok(ws.Run("branch", "create", "agent"));
        Ok(ws.RunWithInput("print('hi')\n", "put", "/lib/app.py", "-b", "agent"));
        Assert.Equal("print('hi')\n", ws.Run("cat", "/lib/app.py", "-b", "agent").Out);
        Ok(ws.RunWithInput("!", "put", "/lib/app.py", "-b", "agent", "--append"));
        Ok(ws.RunWithInput("P", "put", "/lib/app.py", "-b", "agent", "--offset", "0"));
        Assert.Equal("Print('hi')\n!", ws.Run("cat", "/lib/app.py", "-b", "agent").Out);
        Assert.Equal("int", ws.Run("cat", "/lib/app.py", "-b", "agent", "--offset", "2", "--length", "3").Out);
        Ok(ws.Run("mkdir", "/a/b/c", "-p", "-b", "agent"));
        Ok(ws.Run("mv", "/README.md", "/a/README.md", "-b", "agent"));
        Ok(ws.Run("ln", "-s", "../lib/util.py", "/a/link", "-b", "agent"));
        Ok(ws.Run("truncate", "/data.bin", "1K", "-b", "agent"));
        Ok(ws.Run("chmod", "600", "/lib/util.py", "-b", "agent"));
        Ok(ws.Run("mkdir", "/gone", "-b", "agent"));
        // rm's rule: -r before the path is recursive (as in coreutils); after it, the region (as for every verb); -R anywhere.
        Ok(ws.Run("rm", "/gone", "-r", ws.Region, "-b", "agent"));
        Ok(ws.Run("rm", "/a/b", "-R", "-b", "agent"));

        var ls = ws.Run("ls", "/a", "--json", "-b", "agent");
        Ok(ls);
        var names = ls.Json.EnumerateArray().Select(e => e.GetProperty("name").GetString()).ToList();
        Assert.Equal(new[] { "README.md", "link" }, names);
        var stat = ws.Run("stat", "/data.bin", "--json", "-b", "agent").Json;
        Assert.Equal(1024, stat.GetProperty("size").GetInt64());
        Assert.Equal("600", ws.Run("stat", "/lib/util.py", "--json", "-b", "agent").Json.GetProperty("mode").GetString());
        Assert.Contains("link -> ../lib/util.py", ws.Run("ls", "/a", "-l", "-b", "agent").Out, StringComparison.Ordinal);

        var diff = ws.Run("diff", "-b", "agent", "--json");
        Ok(diff);
        var kinds = diff.Json.GetProperty("changes").EnumerateArray()
            .Select(c => c.GetProperty("kind").GetString() + " " + c.GetProperty("path").GetString()).ToList();
        Assert.Contains("added /lib/app.py", kinds);
        Assert.Contains("renamed /a/README.md", kinds);
        Assert.Contains("modified /data.bin", kinds);
        Assert.Contains("attributesChanged /lib/util.py", kinds);
        Assert.Contains("added /a/link", kinds);

        var list = ws.Run("branch", "list", "--json");
        Ok(list);
        Assert.Equal(2, list.Json.GetArrayLength());

        var commit = ws.Run("branch", "commit", "agent", "-m", "agent wins", "--json");
        Ok(commit);
        Assert.Equal(1, commit.Json.GetProperty("version").GetProperty("sequence").GetInt64());
        var log = ws.Run("log", "--json");
        Assert.Equal("agent wins", log.Json[0].GetProperty("message").GetString());
        Assert.Equal("agent", log.Json[0].GetProperty("sourceBranch").GetString());
        Assert.Equal("Print('hi')\n!", ws.Run("cat", "/lib/app.py").Out);

        string dest = Path.Combine(ws.Root, "export");
        Ok(ws.Run("export", dest));
        Assert.Equal("Print('hi')\n!", File.ReadAllText(Path.Combine(dest, "lib/app.py")));
        Assert.Equal(1024, new FileInfo(Path.Combine(dest, "data.bin")).Length);
    }

    [Fact]
    public void Commit_to_parent_abort_and_discard()
    {
        using var ws = Built();
        Ok(ws.Run("branch", "create", "p"));
        Ok(ws.Run("branch", "create", "c1", "--parent", "p"));
        Ok(ws.Run("branch", "create", "c2", "--parent", "p"));
        Fails(ws.RunWithInput("x", "put", "/x", "-b", "p"), 1, "frozen");
        Ok(ws.RunWithInput("one", "put", "/one", "-b", "c1"));
        Ok(ws.Run("branch", "commit", "c1", "--to-parent"));
        Assert.Equal("one", ws.Run("cat", "/one", "-b", "p").Out);
        Fails(ws.Run("cat", "/one", "-b", "c2"), 1, "invalidated");
        Ok(ws.Run("branch", "create", "leaf", "--parent", "p"));
        Ok(ws.Run("branch", "discard", "leaf"));
        Fails(ws.Run("branch", "discard", "leaf"), 1, "not found");
        Ok(ws.Run("branch", "create", "deep", "--parent", "p"));
        Ok(ws.Run("branch", "abort", "deep"));
        Fails(ws.Run("ls", "-b", "p"), 1, "not found");
        Assert.Equal(0, ws.Run("log", "--json").Json.GetArrayLength());
    }

    [Fact]
    public void Bad_input_gets_a_clear_message_and_the_right_exit_code()
    {
        using var ws = Built();
        Fails(Cli.Run(null, "ls", "-r", "/dev/shm/no-such-region.daxfs"), 1, "region not found");
        Fails(Cli.Run(null, "ls"), 2, "no region");
        Fails(ws.Run("ls", "-b", "nope"), 1, "branch 'nope' not found");
        Fails(ws.Run("truncate", "/data.bin", "12Q", "-b", "main"), 2, "unknown unit");
        Fails(ws.Run("truncate", "/data.bin", "abc"), 2, "not a size");
        Fails(Cli.Run(null, "mkfs", ws.Source, "-r", ws.Region + ".2", "--capacity", "lots"), 2, "not a size");
        Fails(ws.Run("cat", "../etc/passwd"), 2, "'..' is not allowed");
        Fails(ws.Run("branch", "create", "a/b"), 2, "invalid branch name");
        Fails(ws.Run("branch", "create", "main"), 2, "invalid branch name");
        Fails(ws.Run("frobnicate"), 2, "unknown command");
        Fails(ws.Run("ls", "--bogus"), 2, "unknown option");
        Fails(ws.Run("cat"), 2, "Required argument");
        Fails(ws.Run("chmod", "999", "/data.bin"), 2, "octal");
        Fails(ws.RunWithInput("x", "put", "/x"), 1, "read-only");
        Fails(ws.Run("cat", "/lib"), 1, "is a directory");
        Fails(ws.Run("branch", "commit", "main"), 2, "main cannot");
        Ok(ws.Run("branch", "create", "dup"));
        Fails(ws.Run("branch", "create", "dup"), 1, "already exists");
    }

    [Fact]
    public void Rm_takes_r_before_the_path_as_recursive_and_after_it_as_the_region()
    {
        using var ws = Built();
        Ok(ws.Run("branch", "create", "b"));
        Fails(ws.Run("rm", "-r", ws.Region, "/lib", "-b", "b"), 2, "unexpected argument '/lib' for 'rm'"); // the old '-r REGION PATH' order: refused
        Ok(ws.Run("stat", "/lib/util.py", "-b", "b")); // nothing was removed
        Ok(Cli.Run(null, "rm", "-r", "/lib", "-b", "b", "--region", ws.Region)); // -r before the path: recursive
        Fails(ws.Run("stat", "/lib", "-b", "b"), 1, "no such file");
        Ok(Cli.Run(null, "rm", "/README.md", "-b", "b", "-r", ws.Region)); // -r after the path: the region
        Fails(ws.Run("stat", "/README.md", "-b", "b"), 1, "no such file");
        Fails(ws.Run("rm", "-b", "b", "-rf", "/lib"), 2, "rm takes no -f"); // not the region 'f'
        Ok(ws.Run("rm", "-b", "b", "--", "/data.bin")); // after '--' every word is a path
        Fails(ws.Run("stat", "/data.bin", "-b", "b"), 1, "no such file");
    }

    [Fact]
    public void Every_verb_and_group_takes_h_and_help_and_version_is_listed()
    {
        var overview = Cli.Run(null, "-h");
        Ok(overview);
        Assert.Contains("--version", overview.Out);
        Assert.DoesNotContain("...", overview.Out); // summaries are whole sentences, never cut
        foreach (var words in new[] { "branch", "branch list", "completion", "gc", "rm" })
        {
            var h = Cli.Run(null, [.. words.Split(' '), "-h"]);
            Ok(h);
            Assert.Contains("usage: daxfs " + words, h.Out);
            Assert.Equal(h.Out, Cli.Run(null, ["help", .. words.Split(' ')]).Out);
        }
        Fails(Cli.Run(null, "branch"), 2, "'branch' needs a subcommand: list, create, commit, rebase, abort, discard");
        Fails(Cli.Run(null, "help", "nosuch"), 2, "help: no command 'nosuch'");
        Assert.Matches(@"^daxfs \d+\.\d+\.\d+\n$", Cli.Run(null, "--version").Out);
    }

    [Fact]
    public void Shared_options_may_come_before_the_verb_and_an_empty_branch_name_is_a_usage_error()
    {
        using var ws = Built();
        Ok(Cli.Run(null, "-r", ws.Region, "branch", "create", "early"));
        Assert.Contains("README.md", Cli.Run(null, "--region", ws.Region, "-b", "early", "ls", "/").Out);
        Assert.Equal(JsonValueKind.Array, Cli.Run(null, "--json", "-r", ws.Region, "ls").Json.ValueKind);
        Fails(ws.Run("ls", "-b", ""), 2, "needs a value (NAME), not an empty one");
    }

    [Fact]
    public void Bash_completion_completes_verbs_sub_verbs_options_and_branch_names()
    {
        using var ws = Built();
        Ok(ws.Run("branch", "create", "agent-7"));
        string script = Cli.Run(null, "completion", "bash").Out;
        Assert.Contains("complete -o default -F _daxfs_complete daxfs", script);
        Assert.Contains("#compdef daxfs", Cli.Run(null, "completion", "zsh").Out);
        Fails(Cli.Run(null, "completion", "fish"), 2, "fish");
        string Complete(string line)
        {
            // The script as a user loads it, with 'daxfs' standing for this build.
            string words = string.Join(' ', line.Split(' ').Select(w => $"'{w}'"));
            string bash = $"daxfs() {{ dotnet '{Path.Combine(AppContext.BaseDirectory, "daxfs.dll")}' \"$@\"; }}\n{script}\n"
                + $"COMP_LINE='{line}'; COMP_POINT={line.Length}; COMP_WORDS=({words}); COMP_CWORD={line.Split(' ').Length - 1}\n"
                + "_daxfs_complete; printf '%s\\n' \"${COMPREPLY[@]}\"\n";
            var psi = new System.Diagnostics.ProcessStartInfo("bash") { RedirectStandardInput = true, RedirectStandardOutput = true, UseShellExecute = false };
            psi.Environment["DAXFS_REGION"] = ws.Region;
            using var p = System.Diagnostics.Process.Start(psi)!;
            p.StandardInput.Write(bash);
            p.StandardInput.Close();
            string output = p.StandardOutput.ReadToEnd();
            p.WaitForExit();
            return output;
        }
        Assert.Equal("branch\n", Complete("daxfs bra"));
        Assert.Equal("create\n", Complete("daxfs branch cr"));
        Assert.Contains("--capacity", Complete("daxfs mkfs --cap"));
        Assert.DoesNotContain("/?", Complete("daxfs ls "));
        Assert.Equal("agent-7\n", Complete("daxfs ls -b ag"));
    }

    [Fact]
    public void A_failed_command_changes_nothing()
    {
        using var ws = Built();
        Ok(ws.Run("branch", "create", "b"));
        Ok(ws.RunWithInput("keep", "put", "/keep", "-b", "b"));
        string before = ws.Run("inspect", "--json").Out + ws.Run("diff", "-b", "b", "--json").Out;
        Fails(ws.RunWithInput("x", "put", "/lib/util.py/x", "-b", "b"), 1, "not a directory");
        Fails(ws.Run("mv", "/nope", "/x", "-b", "b"), 1, "no such file");
        Fails(ws.Run("rm", "/lib", "-b", "b"), 1, "not empty");
        Fails(ws.Run("rm", "/lib", "-b", "b"), 1, "rm -r (or -R) removes it and everything under it");
        // -r after the path is the region: given without a value before another option, it says so.
        Fails(ws.Run("rm", "/lib", "-r", "-b", "b"), 2, "option --region needs a value (PATH), not the option '-b'");
        Fails(ws.Run("mkdir", "/lib", "-b", "b"), 1, "exists");
        string after = ws.Run("inspect", "--json").Out + ws.Run("diff", "-b", "b", "--json").Out;
        Assert.Equal(before, after);
    }

    [Fact]
    public void A_corrupted_region_exits_with_3()
    {
        using var ws = Built();
        var bytes = File.ReadAllBytes(ws.Region);
        bytes[16] ^= 0xFF; // the superblock's capacity
        File.WriteAllBytes(ws.Region, bytes);
        var r = ws.Run("verify");
        Fails(r, 3, "superblock at offset 0");
        Fails(ws.Run("ls"), 3, "superblock");
    }

    [Fact]
    public void A_second_process_sees_what_the_first_committed()
    {
        using var ws = Built();
        Ok(ws.Run("branch", "create", "w"));
        Ok(ws.RunWithInput("from another process", "put", "/shared.txt", "-b", "w"));
        Ok(ws.Run("branch", "commit", "w"));
        Assert.Equal("from another process", ws.Run("cat", "/shared.txt").Out);
    }

    [Fact]
    public void Demo_runs_and_cleans_up()
    {
        string region = Path.Combine("/dev/shm", $"daxfs-demo-test-{Guid.NewGuid():N}.daxfs");
        var r = Cli.Run(null, "demo", "--region", region);
        Ok(r);
        Assert.Contains("agent-b: return a + b -> test passes", r.Out, StringComparison.Ordinal);
        Assert.Contains("agent-a: invalidated", r.Out, StringComparison.Ordinal);
        Assert.Contains("committed agent-b as version 1", r.Out, StringComparison.Ordinal);
        Assert.False(File.Exists(region));
        var kept = Cli.Run(null, "demo", "--region", region, "--keep");
        Ok(kept);
        Assert.True(File.Exists(region));
        var log = Cli.Run(null, "log", "--json", "-r", region);
        Assert.Equal("agent-b", log.Json[0].GetProperty("sourceBranch").GetString());
        // An existing region is never touched without --force: not rebuilt, not removed.
        long size = new FileInfo(region).Length;
        Fails(Cli.Run(null, "demo", "-r", region), 1, "already there");
        Assert.Equal(size, new FileInfo(region).Length);
        Assert.Equal("agent-b", Cli.Run(null, "log", "--json", "-r", region).Json[0].GetProperty("sourceBranch").GetString());
        Ok(Cli.Run(null, "demo", "-r", region, "--force"));
        Assert.False(File.Exists(region));
    }

    [Fact]
    public void Versions_tags_time_travel_and_diffs_between_refs()
    {
        using var ws = Built();
        Ok(ws.Run("branch", "create", "one"));
        Ok(ws.RunWithInput("first", "put", "/v.txt", "-b", "one"));
        Ok(ws.Run("branch", "commit", "one", "-m", "first"));
        Ok(ws.Run("tag", "v1"));
        Ok(ws.Run("branch", "create", "two"));
        Ok(ws.RunWithInput("second", "put", "/v.txt", "-b", "two"));
        Ok(ws.Run("branch", "commit", "two", "-m", "second"));
        Assert.Equal("first", ws.Run("cat", "/v.txt", "--at", "v1").Out);
        Assert.Equal("first", ws.Run("cat", "/v.txt", "--at", "1").Out);
        Assert.Equal("second", ws.Run("cat", "/v.txt").Out);
        Assert.Contains("v.txt", ws.Run("ls", "--at", "1").Out, StringComparison.Ordinal);
        Assert.DoesNotContain("v.txt", ws.Run("ls", "--at", "0").Out, StringComparison.Ordinal);
        Assert.Equal(5, ws.Run("stat", "/v.txt", "--at", "v1", "--json").Json.GetProperty("size").GetInt64());
        var log = ws.Run("log", "--json").Json;
        Assert.Equal(["v1"], log[0].GetProperty("tags").EnumerateArray().Select(t => t.GetString()));
        Assert.Equal(0, log[1].GetProperty("tags").GetArrayLength()); // a list, empty when untagged
        var newest = ws.Run("log", "-n", "1", "--json").Json;
        Assert.Equal(2, Assert.Single(newest.EnumerateArray()).GetProperty("sequence").GetInt64()); // as git log -n: the newest
        Assert.Contains("v1\tversion 1", ws.Run("tag", "--list").Out, StringComparison.Ordinal);
        var diff = ws.Run("diff", "--from", "v1", "--to", "main", "--json");
        Ok(diff);
        Assert.Equal("modified", diff.Json.GetProperty("changes")[0].GetProperty("kind").GetString());
        Assert.Contains("/v.txt", ws.Run("diff", "--at", "2").Out, StringComparison.Ordinal);
        // Replay against version 1: a branch of the past that later commits leave alone, and that cannot commit over them.
        Ok(ws.Run("branch", "create", "replay", "--from", "v1"));
        Assert.Equal("first", ws.Run("cat", "/v.txt", "-b", "replay").Out);
        Fails(ws.Run("branch", "commit", "replay"), 1, "base is stale");
        Ok(ws.RunWithInput("replayed", "put", "/replay.txt", "-b", "replay"));
        var rebase = ws.Run("branch", "rebase", "replay", "--json");
        Ok(rebase);
        Assert.Equal("replay-rebased", rebase.Json.GetProperty("rebased").GetString());
        Assert.Equal("second", ws.Run("cat", "/v.txt", "-b", "replay-rebased").Out);
        Assert.Equal("replayed", ws.Run("cat", "/replay.txt", "-b", "replay-rebased").Out);
        Ok(ws.RunWithInput("clash", "put", "/v.txt", "-b", "replay"));
        var conflict = ws.Run("branch", "rebase", "replay", "--as", "again", "--json");
        Assert.Equal(1, conflict.Code);
        Assert.Equal("/v.txt", conflict.Json.GetProperty("conflicts")[0].GetProperty("path").GetString());
        Assert.Contains("conflict", conflict.Err, StringComparison.Ordinal);
        string dest = Path.Combine(ws.Root, "v1");
        Ok(ws.Run("export", dest, "--at", "v1"));
        Assert.Equal("first", File.ReadAllText(Path.Combine(dest, "v.txt")));
        Fails(ws.Run("cat", "/v.txt", "--at", "9"), 1, "no version 9"); // does not exist: exit 1, as a missing tag
        Fails(ws.Run("tag", "5"), 2, "must not be only digits"); // it would read as a version number
        Fails(ws.RunWithInput("x", "put", "/x", "--at", "1"), 2, "unknown option");
        Fails(ws.Run("tag", "v1"), 1, "already names version 1");
        Fails(ws.Run("tag", "bad/name"), 2, "invalid tag name");
        Ok(ws.Run("tag", "--delete", "v1"));
        Fails(ws.Run("cat", "/v.txt", "--at", "v1"), 1, "names no branch, tag or version"); // the tag was deleted
    }

    [Fact]
    public void A_branch_created_with_keep_that_loses_a_race_is_rebased_then_discarded()
    {
        using var ws = Built();
        Ok(ws.Run("branch", "create", "loser", "--keep"));
        Ok(ws.Run("branch", "create", "winner"));
        Ok(ws.RunWithInput("mine", "put", "/loser.txt", "-b", "loser"));
        Ok(ws.RunWithInput("won", "put", "/winner.txt", "-b", "winner"));
        Ok(ws.Run("branch", "commit", "winner"));
        Fails(ws.Run("cat", "/loser.txt", "-b", "loser"), 1, "its changes are kept");
        var list = ws.Run("branch", "list", "--json");
        Ok(list);
        var loser = list.Json.EnumerateArray().Single(b => b.GetProperty("name").GetString() == "loser");
        Assert.True(loser.GetProperty("kept").GetBoolean());
        Assert.Contains("invalidated (kept)", ws.Run("branch", "list").Out, StringComparison.Ordinal);
        var rebase = ws.Run("branch", "rebase", "loser");
        Ok(rebase);
        Assert.Contains("'loser' keeps its space until 'daxfs branch discard loser'", rebase.Out, StringComparison.Ordinal);
        Assert.Equal("mine", ws.Run("cat", "/loser.txt", "-b", "loser-rebased").Out);
        Assert.Equal("won", ws.Run("cat", "/winner.txt", "-b", "loser-rebased").Out);
        Fails(ws.Run("branch", "create", "loser"), 1, "kept for a rebase");
        Ok(ws.Run("branch", "discard", "loser"));
        Fails(ws.Run("branch", "discard", "loser"), 1, "not found");
        Ok(ws.Run("branch", "create", "loser"));
        Ok(ws.Run("verify"));
    }

    [Fact]
    public void Compact_folds_history_keeps_tagged_versions_and_reports_what_it_did()
    {
        using var ws = Built();
        for (int i = 1; i <= 3; i++)
        {
            Ok(ws.Run("branch", "create", $"c{i}"));
            Ok(ws.RunWithInput($"content {i}", "put", "/v.txt", "-b", $"c{i}"));
            Ok(ws.Run("branch", "commit", $"c{i}", "-m", $"commit {i}"));
        }
        Ok(ws.Run("tag", "v1", "1"));
        var pinned = ws.Run("compact", "--json");
        Ok(pinned);
        Assert.Equal(1, pinned.Json.GetProperty("foldedVersion").GetInt64());    // the tag keeps version 1
        Ok(ws.Run("tag", "--delete", "v1"));
        var folded = ws.Run("compact", "--keep", "1");
        Ok(folded);
        Assert.Contains("folded versions up to 2", folded.Out, StringComparison.Ordinal);
        Fails(ws.Run("cat", "/v.txt", "--at", "1"), 1, "folded into the base image");
        Assert.Equal("content 2", ws.Run("cat", "/v.txt", "--at", "2").Out);
        Assert.Equal("content 3", ws.Run("cat", "/v.txt").Out);
        var log = ws.Run("log", "--json").Json;
        Assert.True(log[0].GetProperty("folded").GetBoolean());
        Assert.False(log[1].GetProperty("folded").GetBoolean());
        Assert.Contains("(compacted) commit 1", ws.Run("log").Out, StringComparison.Ordinal);
        Ok(ws.Run("verify"));
        Assert.Contains("nothing compacted", ws.Run("compact", "--keep", "1").Out, StringComparison.Ordinal);
        Fails(ws.Run("compact", "--keep", "-1"), 2, "--keep");
    }

    [Fact]
    public void Gc_gives_back_what_rewrites_replaced_and_reports_it()
    {
        using var ws = Built();
        Ok(ws.Run("branch", "create", "agent"));
        string big = new('x', 1 << 20);
        for (int i = 0; i < 6; i++)
            Ok(ws.RunWithInput(big, "put", "/out.bin", "-b", "agent"));
        var gc = ws.Run("gc", "--json");
        Ok(gc);
        var agent = gc.Json.EnumerateArray().Single(e => e.GetProperty("branch").GetString() == "agent");
        Assert.True(agent.GetProperty("cleaned").GetBoolean());
        Assert.True(agent.GetProperty("freedBytes").GetInt64() >= 4L << 20, agent.ToString());
        Assert.Equal(big, ws.Run("cat", "/out.bin", "-b", "agent").Out);
        var again = ws.Run("gc", "agent");
        Ok(again);
        Assert.Contains("agent: nothing worth cleaning", again.Out, StringComparison.Ordinal);
        Fails(ws.Run("gc", "nope"), 1, "nope");
        Fails(ws.Run("gc", "main"), 2, "daxfs compact"); // main's history is compaction's
        Assert.Single(ws.Run("gc", "agent", "agent", "--json").Json.EnumerateArray()); // named twice, cleaned once
        Ok(ws.Run("verify"));
    }

    [Fact]
    public void Mkfs_force_and_export_killed_at_random_moments_leave_the_old_region_and_no_partial_tree()
    {
        using var ws = new Workspace();
        for (int i = 0; i < 400; i++)
            File.WriteAllBytes(Path.Combine(ws.Source, $"f{i}.bin"), TestData(100_000 + i, i));
        Ok(Cli.Run(null, "mkfs", ws.Source, "-r", ws.Region, "--capacity", "256M"));
        Ok(ws.Run("branch", "create", "keep"));
        var rng = new Random(11);
        int killed = 0;
        for (int round = 0; round < 8; round++)
        {
            string dest = Path.Combine(ws.Root, $"out{round}");
            if (Cli.RunAndKill(TimeSpan.FromMilliseconds(rng.Next(60, 500)), "export", dest, "-r", ws.Region))
                killed++;
            // Either the whole tree, or nothing under the destination's name (the temporary beside it may stay).
            if (Directory.Exists(dest))
                Assert.Equal(Directory.GetFileSystemEntries(ws.Source).Length, Directory.GetFileSystemEntries(dest).Length);
            if (Cli.RunAndKill(TimeSpan.FromMilliseconds(rng.Next(60, 500)), "mkfs", ws.Source, "-r", ws.Region, "--capacity", "256M", "--force"))
                killed++;
            // The region is whole: the old one (its branch still there) or the new one, never a half-built file.
            var list = ws.Run("branch", "list", "--json");
            Ok(list);
            Ok(ws.Run("verify"));
            if (!list.Out.Contains("\"keep\"", StringComparison.Ordinal))
                Ok(ws.Run("branch", "create", "keep"));
        }
        Assert.True(killed > 0, "no run was killed part way: the delays are too long for this machine");
        // The next build of the path removes what killed builds left beside it (on tmpfs they hold memory).
        Ok(Cli.Run(null, "mkfs", ws.Source, "-r", ws.Region, "--capacity", "256M", "--force"));
        Assert.Empty(Directory.GetFiles(Path.GetDirectoryName(ws.Region)!, $".{Path.GetFileName(ws.Region)}.building-*"));
        // And an export to a destination removes what killed exports to it left.
        for (int round = 0; round < 8; round++)
        {
            string dest = Path.Combine(ws.Root, $"out{round}");
            if (!Directory.Exists(dest))
                Ok(ws.Run("export", dest));
        }
        Assert.Empty(Directory.GetDirectories(ws.Root, ".out*.exporting-*"));
    }

    private static byte[] TestData(int length, int seed)
    {
        var b = new byte[length];
        new Random(seed).NextBytes(b);
        return b;
    }

    [Fact]
    public void A_file_that_is_not_a_region_is_said_to_be_one_exit_1_and_capacity_0_is_refused()
    {
        using var ws = new Workspace();
        string notRegion = Path.Combine(ws.Root, "notes.txt");
        Directory.CreateDirectory(ws.Root);
        File.WriteAllText(notRegion, new string('x', 10_000));
        Fails(Cli.Run(null, "ls", "/", "-r", notRegion), 1, "not a daxfs region");
        string empty = Path.Combine(ws.Root, "empty.daxfs");
        File.WriteAllBytes(empty, []);
        Fails(Cli.Run(null, "ls", "/", "-r", empty), 1, "not a daxfs region");
        Fails(Cli.Run(null, "mkfs", ws.Source, "-r", ws.Region, "--capacity", "0"), 2, "--capacity 0");
        Assert.False(File.Exists(ws.Region));
        // Messages users asked for: a tag that does not exist, a symbolic link given to cat.
        Ok(Cli.Run(null, "mkfs", ws.Source, "-r", ws.Region, "--capacity", "64M"));
        Fails(ws.Run("cat", "/README.md", "--at", "no-such-tag"), 1, "names no branch, tag or version");
        Ok(ws.Run("branch", "create", "t"));
        Ok(ws.Run("ln", "-s", "README.md", "/link", "-b", "t"));
        Fails(ws.Run("cat", "/link", "-b", "t"), 1, "is a symbolic link (to README.md)");
        // One object for a file wherever it appears, and errors as JSON with --json (same exit codes).
        var stat = ws.Run("stat", "/README.md", "--json");
        Ok(stat);
        var entry = ws.Run("ls", "/", "--json").Json.EnumerateArray().Single(e => e.GetProperty("name").GetString() == "README.md").GetProperty("stat");
        foreach (var field in new[] { "path", "inode", "kind", "mode", "uid", "gid", "size", "modified", "changed", "links" })
            Assert.Equal(stat.Json.GetProperty(field).ToString(), entry.GetProperty(field).ToString());
        var error = ws.Run("stat", "/missing", "--json");
        Assert.Equal(1, error.Code);
        var json = System.Text.Json.JsonDocument.Parse(error.Err).RootElement;
        Assert.Equal(1, json.GetProperty("code").GetInt32());
        Assert.Contains("/missing", json.GetProperty("error").GetString(), StringComparison.Ordinal);
        var usage = ws.Run("resize", "--json");
        Assert.Equal(2, usage.Code);
        Assert.Equal(2, System.Text.Json.JsonDocument.Parse(usage.Err).RootElement.GetProperty("code").GetInt32());
    }

    [Fact]
    public void Resize_grows_a_full_region_in_place_and_the_full_error_says_what_to_do()
    {
        using var ws = new Workspace();
        Ok(Cli.Run(null, "mkfs", ws.Source, "-r", ws.Region, "--capacity", "32M", "--max-capacity", "1G"));
        Ok(ws.Run("branch", "create", "agent"));
        string big = new('y', 40 << 20);
        var full = ws.RunWithInput(big, "put", "/big", "-b", "agent");
        Fails(full, 1, "daxfs resize");
        Assert.False(ws.Run("stat", "/big", "-b", "agent").Code == 0, "a failed put left a file behind");
        var grown = ws.Run("resize", "--capacity", "128M", "--json");
        Ok(grown);
        Assert.Equal(128L << 20, grown.Json.GetProperty("newCapacity").GetInt64());
        Assert.InRange(grown.Json.GetProperty("maxCapacity").GetInt64(), 1L << 30, (1L << 30) + (256L << 20)); // what the bitmap covers, a whole page of it
        Ok(ws.RunWithInput(big, "put", "/big", "-b", "agent"));
        Assert.Equal(128L << 20, ws.Run("inspect", "--json").Json.GetProperty("usage").GetProperty("capacity").GetInt64());
        Fails(ws.Run("resize", "--capacity", "64M"), 2, "only grows");
        Fails(ws.Run("resize", "--capacity", "2G"), 2, "can grow to");
        Fails(ws.Run("resize"), 2, "--capacity");
        Ok(ws.Run("verify"));
    }

    [Fact]
    public void Verify_reports_damage_in_json_and_never_changes_the_region_file()
    {
        using var ws = new Workspace();
        Ok(Cli.Run(null, "mkfs", ws.Source, "-r", ws.Region, "--capacity", "64M"));
        Assert.Equal(UnixFileMode.UserRead | UnixFileMode.UserWrite, File.GetUnixFileMode(ws.Region)); // private: no other user reads the tree
        Ok(ws.Run("branch", "create", "a"));
        Ok(ws.RunWithInput("v1\n", "put", "/one.txt", "-b", "a"));
        Ok(ws.Run("branch", "commit", "a", "-m", "one"));
        var clean = ws.Run("verify", "--json");
        Ok(clean);
        Assert.True(clean.Json.GetProperty("ok").GetBoolean());

        // Damage the first record of main's log (its header's checksum field): verify reports it, and not a byte changes.
        using (var s = Store.Open(ws.Region))
        {
            long record = s.Main.State.OwnBlocks[0].Offset + Daxfs.Branching.Format.BlockHeader.Size;
            s.Dispose();
            var bytes = File.ReadAllBytes(ws.Region);
            bytes[record + 20] ^= 0x01;
            File.WriteAllBytes(ws.Region, bytes);
        }
        string before = Convert.ToHexString(System.Security.Cryptography.SHA256.HashData(File.ReadAllBytes(ws.Region)));
        var bad = ws.Run("verify", "--json");
        Assert.Equal(3, bad.Code);
        Assert.False(bad.Json.GetProperty("ok").GetBoolean());
        var damage = bad.Json.GetProperty("damage")[0];
        Assert.Equal("record", damage.GetProperty("structure").GetString());
        Assert.Contains("version", damage.GetProperty("consequences").GetString(), StringComparison.Ordinal);
        Fails(ws.Run("verify"), 3, "damaged structure");
        Assert.Equal(before, Convert.ToHexString(System.Security.Cryptography.SHA256.HashData(File.ReadAllBytes(ws.Region))));
        Fails(ws.Run("log"), 3, "main's log"); // any command that opens the region refuses it, naming the damage
    }

    /// <summary>
    /// A hostile local user plants a symbolic link where root will create or open a region, in a directory
    /// anyone may write to: the tool refuses the link, whether it points at a file or nowhere, and the file it
    /// points at is left as it was.
    /// </summary>
    [Fact]
    public void A_region_path_planted_as_a_link_by_another_user_is_refused()
    {
        if (!Environment.IsPrivilegedProcess)
        {
            Assert.Fail("this test plants links as the user nobody, so it runs as root (as CI does)");
        }
        using var ws = new Workspace();
        string shared = Path.Combine(ws.Root, "shared");
        Directory.CreateDirectory(shared);
        File.SetUnixFileMode(shared, (UnixFileMode)0x3FF | UnixFileMode.StickyBit); // 1777, as /tmp
        string victim = Path.Combine(ws.Root, "victim.conf");
        File.WriteAllText(victim, "root's file\n");
        string planted = Path.Combine(shared, "region.daxfs");
        string dangling = Path.Combine(shared, "dangling.daxfs");
        AsNobody("ln", "-s", victim, planted);
        AsNobody("ln", "-s", Path.Combine(shared, "nothing-here"), dangling);

        Fails(Cli.Run(null, "mkfs", ws.Source, "-r", planted, "--force"), 1, "symbolic link");
        Fails(Cli.Run(null, "ls", "-r", planted), 1, "symbolic link");          // not "corrupt" (3)
        Fails(Cli.Run(null, "verify", "-r", planted), 1, "symbolic link");
        Fails(Cli.Run(null, "mkfs", ws.Source, "-r", dangling), 1, "symbolic link"); // not "region exists"
        Assert.Equal("root's file\n", File.ReadAllText(victim));
        Assert.False(File.Exists(Path.Combine(shared, "nothing-here")));
    }

    private static void AsNobody(params string[] args)
    {
        var psi = new System.Diagnostics.ProcessStartInfo("setpriv", ["--reuid=nobody", "--regid=nogroup", "--clear-groups", .. args]) { RedirectStandardError = true };
        using var p = System.Diagnostics.Process.Start(psi)!;
        string err = p.StandardError.ReadToEnd();
        p.WaitForExit();
        Assert.True(p.ExitCode == 0, $"as nobody: {string.Join(' ', args)}: {err}");
    }

    /// <summary>
    /// The reproduction of the silent cut, repaired on purpose: one bit flipped in version 2's record. Nothing
    /// changes until asked; then every version that stays readable is exported first, and the cut leaves a
    /// region that verifies.
    /// </summary>
    [Fact]
    public void Repair_says_what_it_would_drop_salvages_first_and_cuts_only_when_told()
    {
        using var ws = new Workspace();
        Ok(Cli.Run(null, "mkfs", ws.Source, "-r", ws.Region, "--capacity", "64M"));
        for (int v = 1; v <= 3; v++)
        {
            Ok(ws.Run("branch", "create", $"b{v}"));
            Ok(ws.RunWithInput($"version {v}\n", "put", "/file.txt", "-b", $"b{v}"));
            Ok(ws.Run("branch", "commit", $"b{v}", "-m", $"v{v}"));
        }
        long v2;
        using (var s = Store.Open(ws.Region))
        {
            var c = s.Cursor(s.Main.State.Log.Ref);
            var r = new Daxfs.Branching.Format.Rec();
            v2 = -1;
            while (c.MoveNext())
            {
                var kind = (Daxfs.Branching.Format.RecordKind)c.Header.Kind;
                Daxfs.Branching.Format.RecordCodec.Decode(r, kind, c.Header.TimeNs, c.Offset, c.Body, c.BodyOffset);
                if (kind == Daxfs.Branching.Format.RecordKind.Version && r.Seq == 2) v2 = c.Offset + 40;
            }
        }
        var bytes = File.ReadAllBytes(ws.Region);
        bytes[v2] ^= 0x04;
        File.WriteAllBytes(ws.Region, bytes);
        string Hash() => Convert.ToHexString(System.Security.Cryptography.SHA256.HashData(File.ReadAllBytes(ws.Region)));
        string damaged = Hash();

        var plan = ws.Run("repair", "--json");
        Ok(plan);
        Assert.False(plan.Json.GetProperty("changed").GetBoolean());
        Assert.Contains("every version after 1", plan.Json.GetProperty("repairs")[0].GetString(), StringComparison.Ordinal);
        Assert.Equal([0L, 1L], plan.Json.GetProperty("keeps").GetProperty("versions").EnumerateArray().Select(e => e.GetInt64()));
        Assert.Equal(damaged, Hash()); // a dry run
        Fails(ws.Run("repair", "--yes"), 2, "--salvage");
        Assert.Equal(damaged, Hash());

        string rescued = Path.Combine(ws.Root, "rescued");
        var done = ws.Run("repair", "--salvage", rescued, "--yes");
        Ok(done);
        Assert.Contains("verify: ok", done.Out, StringComparison.Ordinal);
        Assert.Equal("version 1\n", File.ReadAllText(Path.Combine(rescued, "version-1", "file.txt")));
        Assert.False(File.Exists(Path.Combine(rescued, "version-0", "file.txt")));
        Ok(ws.Run("verify"));
        var log = ws.Run("log", "--json");
        Ok(log);
        Assert.Equal(1, log.Json.GetArrayLength());
        Assert.Contains("version 1", ws.Run("cat", "/file.txt").Out, StringComparison.Ordinal);
    }

    [Fact]
    public void Size_strings_parse()
    {
        Assert.Equal(9007199254740993, Opt.ParseSize("9007199254740993", "x")); // 2^53 + 1: exact, as no double holds it
        Assert.Equal(long.MaxValue, Opt.ParseSize("9223372036854775807", "x"));
        Assert.Throws<UsageException>(() => Opt.ParseSize("9223372036854775808", "x"));
        Assert.Throws<UsageException>(() => Opt.ParseSize("0.3M", "x"));
        Assert.Equal(4096, Opt.ParseSize("4096", "x"));
        Assert.Equal(64L << 20, Opt.ParseSize("64M", "x"));
        Assert.Equal(4L << 30, Opt.ParseSize("4GiB", "x"));
        Assert.Equal(1536, Opt.ParseSize("1.5K", "x"));
        Assert.Throws<UsageException>(() => Opt.ParseSize("1.5", "x"));
        Assert.Throws<UsageException>(() => Opt.ParseSize("-1", "x"));
        Assert.Throws<UsageException>(() => Opt.ParseSize("", "x"));
    }
}
