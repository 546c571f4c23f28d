using System.Text;

namespace Daxfs.Branching.Cli;

/// <summary>A command of the tool.</summary>
internal sealed record Verb(string Name, string Usage, string Summary, string Example, OptionSpec[] Options, int MinArgs, int MaxArgs,
    Func<Context, int> Run, bool UsesRegion = true, bool UsesBranch = false, bool HasJson = false, bool HasAt = false)
{
    public IReadOnlyList<OptionSpec> AllOptions
    {
        get
        {
            var all = new List<OptionSpec>(Options);
            if (UsesRegion) all.Add(Verbs.Region);
            if (UsesBranch) all.Add(Verbs.Branch);
            if (HasJson) all.Add(Verbs.JsonOption);
            if (HasAt) all.Add(Verbs.At);
            return all;
        }
    }

    public string Help()
    {
        var sb = new StringBuilder();
        sb.Append("usage: daxfs ").Append(Usage).Append("\n\n").Append(Summary).Append("\n\n");
        var opts = AllOptions;
        if (opts.Count > 0)
        {
            sb.Append("options:\n");
            foreach (var o in opts)
            {
                string left = (o.Short is null ? "    " : o.Short + ", ") + o.Long + (o.ValueName is null ? "" : " " + o.ValueName);
                sb.Append("  ").Append(left.PadRight(28)).Append(o.Help).Append('\n');
            }
            sb.Append('\n');
        }
        sb.Append("example:\n  ").Append(Example.Replace("\n", "\n  ", StringComparison.Ordinal)).Append('\n');
        return sb.ToString();
    }
}

internal static class Verbs
{
    public static readonly OptionSpec Region = new("--region", "-r", "PATH", "the region file (default: $DAXFS_REGION)");
    public static readonly OptionSpec Branch = new("--branch", "-b", "NAME", "the branch to act on (default: main)");
    public static readonly OptionSpec JsonOption = new("--json", null, null, "print JSON for scripts");
    public static readonly OptionSpec At = new("--at", null, "REF", "read main as of a version (number) or tag, instead of a branch");

    public static readonly Verb[] All =
    [
        new("mkfs", "mkfs SOURCE_DIR -r REGION [--capacity SIZE] [--max-capacity SIZE] [--slots N] [--force] [--strict] [--sparse]",
            "Builds a region from a directory: its tree becomes the immutable base image, main starts empty.",
            "daxfs mkfs ./workspace -r /dev/shm/ws.daxfs --capacity 2G",
            [new("--capacity", null, "SIZE", "region size, e.g. 512M, 4GiB (default: base image + 1 GiB); reserved up front, so a full file system is refused now, not met later"),
             new("--max-capacity", null, "SIZE", "the most resize may grow it to later (default: twice the capacity, at least 16G;\n                              costs 1 byte of the region per 128 KiB of it, and address space)"),
             new("--slots", null, "N", "branch table slots (default 4096)"),
             new("--force", "-f", null, "replace an existing region file"),
             new("--strict", null, null, "refuse special files and hard links instead of warning"),
             new("--sparse", null, null, "do not reserve the capacity up front (a write the file system cannot back then kills the writer)")],
            1, 1, FileVerbs.Mkfs, HasJson: true),
        new("inspect", "inspect [--json]", "Shows the region: geometry, space used, branches and versions.",
            "daxfs inspect -r /dev/shm/ws.daxfs", [], 0, 0, RegionVerbs.Inspect, HasJson: true),
        new("verify", "verify [--json]", "Checks every structure and every checksum of the region, through a read-only snapshot (it never\nchanges the file), and reports every damaged structure in one pass. Exit code 3 when damaged.",
            "daxfs verify -r /dev/shm/ws.daxfs", [], 0, 0, RegionVerbs.Verify, HasJson: true),
        new("repair", "repair [--salvage DIR --yes] [--json]", "Repairs a damaged region by cutting each damaged log back to its last valid record. Without --yes\nit only says what it would drop and what stays (nothing changes). With --yes it first exports every\nversion and branch that stays readable into DIR (version-N, branch-NAME), then cuts.",
            "daxfs repair -r /dev/shm/ws.daxfs\ndaxfs repair -r /dev/shm/ws.daxfs --salvage ./rescued --yes",
            [new("--salvage", null, "DIR", "export what stays readable here first (must not exist, or be empty)"),
             new("--yes", "-y", null, "really cut (after salvaging)")], 0, 0, RegionVerbs.Repair, HasJson: true),
        new("branch list", "branch list [--json]", "Lists the branches: name, parent, state, depth and log size.",
            "daxfs branch list -r /dev/shm/ws.daxfs", [], 0, 0, BranchVerbs.List, HasJson: true),
        new("branch create", "branch create NAME [--parent P | --from REF] [--keep]", "Forks a new branch (default parent: main). O(1): nothing is copied.\nWith --from, forks main as of a past version or tag (to replay against an old state). With --keep, a commit that\ninvalidates the branch keeps its changes, so 'branch rebase' can re-apply them onto the new main.",
            "daxfs branch create agent-1 -r /dev/shm/ws.daxfs\ndaxfs branch create try-2 --parent agent-1\ndaxfs branch create replay --from v1.0",
            [new("--parent", "-p", "P", "the branch to fork from (default: main)"), new("--from", null, "REF", "fork main as of this version number or tag"),
             new("--keep", null, null, "keep the changes for a rebase if a commit invalidates the branch")], 1, 1, BranchVerbs.Create),
        new("branch commit", "branch commit NAME [--to-parent] [-m MESSAGE]",
            "Commits leaf branch NAME: its chain becomes main's next version and every other branch is invalidated;\nwith --to-parent, it merges into its parent only and its siblings are invalidated.",
            "daxfs branch commit agent-1 -m 'agent 1 passed the tests'",
            [new("--to-parent", null, null, "merge into the parent branch only"), new("--message", "-m", "MESSAGE", "the version's message")],
            1, 1, BranchVerbs.Commit, HasJson: true),
        new("branch rebase", "branch rebase NAME [--as NEW] [--json]",
            "Re-applies what NAME changed onto main as it is now, as branch NEW (default NAME-rebased). NAME is a branch\nforked from a past version, or one created with --keep that a commit invalidated; it is left as it was (discard it\nafter). Colliding paths and byte ranges are listed, and nothing is created.",
            "daxfs branch rebase replay --as replay-on-main\ndaxfs branch rebase agent-2 && daxfs branch discard agent-2",
            [new("--as", null, "NEW", "the name of the rebased branch")], 1, 1, BranchVerbs.Rebase, HasJson: true),
        new("branch abort", "branch abort NAME", "Discards NAME's whole chain back to main, and every branch forked from it.",
            "daxfs branch abort agent-2", [], 1, 1, BranchVerbs.Abort),
        new("branch discard", "branch discard NAME", "Discards leaf branch NAME alone; its parent goes on. For an invalidated branch, frees its name\n(and, when it was kept, its space).",
            "daxfs branch discard try-2", [], 1, 1, BranchVerbs.Discard),
        new("ls", "ls [PATH] [-l] [--json]", "Lists a directory of a branch.",
            "daxfs ls /src -l -b agent-1\ndaxfs ls /src --at 3", [new("--long", "-l", null, "show mode, owner, size and time")], 0, 1, FileVerbs.Ls, UsesBranch: true, HasJson: true, HasAt: true),
        new("cat", "cat PATH [--offset N] [--length N]", "Writes a file's bytes (or a range of them) to standard output.",
            "daxfs cat /src/app.py -b agent-1\ndaxfs cat /data.bin --offset 4096 --length 100",
            [new("--offset", null, "N", "first byte (default 0)"), new("--length", null, "N", "bytes to write (default: to the end)")],
            1, 1, FileVerbs.Cat, UsesBranch: true, HasAt: true),
        new("stat", "stat PATH [--json]", "Shows a file's attributes.", "daxfs stat /src/app.py -b agent-1", [], 1, 1, FileVerbs.Stat, UsesBranch: true, HasJson: true, HasAt: true),
        new("put", "put PATH [--offset N] [--append]", "Writes standard input into PATH (created if missing; replaced unless --offset or --append).",
            "echo 'print(1)' | daxfs put /src/app.py -b agent-1",
            [new("--offset", null, "N", "write at this offset, keeping the rest of the file"), new("--append", "-a", null, "append at the end")],
            1, 1, FileVerbs.Put, UsesBranch: true),
        new("rm", "rm PATH [-R]", "Removes a file, a symlink or an empty directory (-R: a whole tree).",
            "daxfs rm /build -R -b agent-1", [new("--recursive", "-R", null, "remove a directory and everything under it (-r is the region, as for every verb)")], 1, 1, FileVerbs.Rm, UsesRegion: true, UsesBranch: true),
        new("mkdir", "mkdir PATH [-p]", "Creates a directory.", "daxfs mkdir /a/b/c -p -b agent-1",
            [new("--parents", "-p", null, "create missing parents; no error if it exists")], 1, 1, FileVerbs.Mkdir, UsesBranch: true),
        new("mv", "mv FROM TO", "Renames or moves a file or directory (POSIX rules: a file replaces a file, a directory an empty directory).",
            "daxfs mv /src/old.py /src/new.py -b agent-1", [new("--no-replace", "-n", null, "fail if TO exists")], 2, 2, FileVerbs.Mv, UsesBranch: true),
        new("ln", "ln -s TARGET PATH", "Creates a symbolic link PATH pointing at TARGET.", "daxfs ln -s ../lib/util.py /src/util.py -b agent-1",
            [new("--symbolic", "-s", null, "make a symbolic link (the only kind there is)")], 2, 2, FileVerbs.Ln, UsesBranch: true),
        new("truncate", "truncate PATH SIZE", "Sets a file's size: shorter drops bytes, longer adds zeros.", "daxfs truncate /log.txt 0 -b agent-1",
            [], 2, 2, FileVerbs.Truncate, UsesBranch: true),
        new("chmod", "chmod MODE PATH", "Sets permission bits (octal).", "daxfs chmod 755 /run.sh -b agent-1", [], 2, 2, FileVerbs.Chmod, UsesBranch: true),
        new("diff", "diff [-b BRANCH | --at REF | --from REF --to REF] [--json]",
            "What changed: BRANCH against its parent, version REF against the version before, or between any two refs\n(branches, version numbers, tags): added, deleted, modified (with byte ranges), renamed, attribute changes.",
            "daxfs diff -b agent-1\ndaxfs diff --at 3\ndaxfs diff --from v1.0 --to main",
            [new("--from", null, "REF", "the older side"), new("--to", null, "REF", "the newer side")], 0, 0, FileVerbs.Diff, UsesBranch: true, HasJson: true, HasAt: true),
        new("log", "log [--json]", "The versions of main: sequence, time, message, source branch, size.", "daxfs log -r /dev/shm/ws.daxfs",
            [], 0, 0, RegionVerbs.Log, HasJson: true),
        new("export", "export DEST_DIR [-b BRANCH | --at REF]", "Writes a branch's (or a version's) whole tree into a new directory.", "daxfs export ./out -b agent-1\ndaxfs export ./v3 --at 3",
            [], 1, 1, FileVerbs.Export, UsesBranch: true, HasAt: true),
        new("tag", "tag NAME [VERSION] | tag --delete NAME | tag --list [--json]", "Names a version of main (default: the latest); tags are kept by compaction and survive reopening.",
            "daxfs tag v1.0\ndaxfs tag before-refactor 3\ndaxfs tag --list",
            [new("--delete", "-d", null, "remove the tag"), new("--list", "-l", null, "list the tags")], 0, 2, RegionVerbs.Tag, HasJson: true),
        new("compact", "compact [--keep N] [--json]",
            "Folds main's history into a new base image and gives the older versions' space back. Keeps the last N versions\n(default 0) readable, and every tagged version or version a branch was forked from. Live branches go on as they were.",
            "daxfs compact -r /dev/shm/ws.daxfs --keep 10",
            [new("--keep", "-k", "N", "versions before the current one to keep readable (default 0)")], 0, 0, RegionVerbs.Compact, HasJson: true),
        new("resize", "resize --capacity SIZE [--json]",
            "Grows the region in place to SIZE: the file is extended with its memory or disk reserved up front (refused\n"
            + "at once when the file system lacks it). Processes that have it open, mounts included, take the new size at once.",
            "daxfs resize -r /dev/shm/ws.daxfs --capacity 8G",
            [new("--capacity", null, "SIZE", "the new size, e.g. 8G (a region only grows)")], 0, 0, RegionVerbs.Resize, HasJson: true),
        new("gc", "gc [BRANCH...] [--json]",
            "Cleans branch logs (every live and kept branch, or the ones named): writes again only the bytes their files still\n"
            + "read and gives back the space of what later writes replaced. Branches, mounts and readers go on meanwhile.\n"
            + "A branch's log is also cleaned automatically as it grows. Main's history is given back by compact.",
            "daxfs gc -r /dev/shm/ws.daxfs\ndaxfs gc agent-1 --json", [], 0, 1024, RegionVerbs.Gc, HasJson: true),
        new("mount", "mount MOUNTPOINT -r REGION [-b BRANCH] [--background] [--read-only] [--direct-read SIZE|off] [--cache-timeout SECONDS]",
            "Mounts the region (or, with -b, one branch) at a directory through FUSE, so any program works inside it.\n"
            + "Without -b one server shows main read-only at MOUNTPOINT and every live branch as MOUNTPOINT/@NAME: mkdir @NAME\n"
            + "forks main, rmdir @NAME discards. In every branch directory the hidden .daxfs/ctl takes one command per write\n"
            + "(fork NAME, commit [MESSAGE], commit-parent [MESSAGE], abort, discard; reading it shows the state and the last\n"
            + "failure), and mkdir .daxfs/branches/NAME forks that branch. Needs /dev/fuse (apt-get install fuse3); a user\n"
            + "other than root mounts through fusermount3. Stays in the foreground unless --background.",
            "daxfs mount /mnt/ws -r /dev/shm/ws.daxfs --background && mkdir /mnt/ws/@agent-1 && echo commit > /mnt/ws/@agent-1/.daxfs/ctl",
            [new("--background", null, null, "detach the server and return once mounted"), new("--read-only", null, null, "refuse writes (EROFS)"),
             new("--direct-read", null, "SIZE", "read files of SIZE or more opened read-only past the page cache (default 1M; off)"),
             new("--cache-timeout", null, "SECONDS", "how long the kernel may cache names, missing names and attributes (default 60);\n                              other processes' changes reach the mount within 0.1 s")],
            1, 1, MountVerbs.Mount, UsesBranch: true),
        new("unmount", "unmount MOUNTPOINT", "Unmounts a mounted branch (also clears the mount of a server that crashed).",
            "daxfs unmount /mnt/agent", [], 1, 1, MountVerbs.Unmount, UsesRegion: false),
        new("demo", "demo [--region PATH] [--keep] [--force]", "Forks a workspace three ways, lets three agents edit it, commits the one that passes its check.",
            "daxfs demo", [new("--keep", null, null, "keep the region file at the end"),
                           new("--force", "-f", null, "replace a file already at --region (without it the demo refuses to touch one)")], 0, 0, Demo.Run, UsesRegion: true),
    ];

    public static (Verb Verb, int Words)? Find(IReadOnlyList<string> args)
    {
        if (args.Count >= 2)
        {
            var two = All.FirstOrDefault(v => v.Name == args[0] + " " + args[1]);
            if (two is not null) return (two, 2);
        }
        var one = All.FirstOrDefault(v => v.Name == args[0]);
        if (one is not null) return (one, 1);
        if (args[0] == "branch")
            throw new UsageException(args.Count < 2 ? "'branch' needs a subcommand: list, create, commit, rebase, abort, discard" : $"unknown branch subcommand '{args[1]}' (list, create, commit, rebase, abort, discard)");
        return null;
    }

    public static string Overview()
    {
        var sb = new StringBuilder();
        sb.Append("daxfs: a speculative-branching, versioned memory store.\n\n");
        sb.Append("usage: daxfs COMMAND [ARGS] [-r REGION] [-b BRANCH] [--json]\n\ncommands:\n");
        foreach (var v in All)
            sb.Append("  ").Append(v.Name.PadRight(16)).Append(v.Summary.Split('\n')[0]).Append('\n');
        sb.Append("\nThe region defaults to $DAXFS_REGION. Sizes accept 4096, 64M, 4GiB.\n");
        sb.Append("Exit codes: 0 ok, 1 the operation failed, 2 usage error, 3 the region is corrupt.\n");
        sb.Append("Run 'daxfs COMMAND --help' for a command's options and an example.\n");
        return sb.ToString();
    }
}
