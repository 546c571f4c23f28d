using System.CommandLine;
using Daxfs.Branching.Cli.Mcp;

namespace Daxfs.Branching.Cli;

/// <summary>
/// Every verb: its options and arguments are declared here once, as typed objects, and its body reads them through
/// the same objects.
/// </summary>
internal static class Verbs
{
    // ------------------------------------------------------------------ options and arguments, by verb

    public static class Mkfs
    {
        public static readonly Argument<string> Source = Opt.Arg("SOURCE_DIR", "the directory whose tree becomes the base image");
        public static readonly Option<long?> Capacity = Opt.Size("--capacity", "region size, e.g. 512M, 4GiB (default: base image + 1 GiB); reserved up front, so a full\nfile system is refused now, not met later");
        public static readonly Option<long?> MaxCapacity = Opt.Size("--max-capacity", "the most resize may grow it to later (default: twice the capacity, at least\n16G; costs 1 byte of the region per 128 KiB of it, and address space)");
        public static readonly Option<long?> Slots = Opt.Count("--slots", "branch table slots (default 4096)");
        public static readonly Option<bool> Force = Opt.Flag("--force", "replace an existing region file (the old one stays whole until the new one is built)", "-f");
        public static readonly Option<bool> Strict = Opt.Flag("--strict", "refuse special files and hard links instead of warning");
        public static readonly Option<bool> Sparse = Opt.Flag("--sparse", "do not reserve the capacity up front (a write the file system cannot back then\nkills the writer)");
    }

    public static class Repair
    {
        public static readonly Option<string?> Salvage = Opt.Text("--salvage", "DIR", "export what stays readable here first (must not exist, or be empty)");
        public static readonly Option<bool> Yes = Opt.Flag("--yes", "really cut (after salvaging)", "-y");
    }

    public static class BranchCreate
    {
        public static readonly Argument<string> Name = Opt.Arg("NAME", "the new branch's name");
        public static readonly Option<string?> Parent = Opt.Text("--parent", "P", "the branch to fork from (default: main)", "-p");
        public static readonly Option<string?> From = Opt.Text("--from", "REF", "fork main as of this version number or tag, or continue REMOTE/BRANCH pushed elsewhere");
        public static readonly Option<bool> Keep = Opt.Flag("--keep", "keep the changes for a rebase if a commit invalidates the branch");
    }

    public static class BranchCommit
    {
        public static readonly Argument<string> Name = Opt.Arg("NAME", "the leaf branch to commit");
        public static readonly Option<bool> ToParent = Opt.Flag("--to-parent", "merge into the parent branch only");
        public static readonly Option<string?> Message = Opt.Text("--message", "MESSAGE", "the version's message", "-m");
    }

    public static class BranchRebase
    {
        public static readonly Argument<string> Name = Opt.Arg("NAME", "the branch whose changes are re-applied");
        public static readonly Option<string?> As = Opt.Text("--as", "NEW", "the name of the rebased branch (default NAME-rebased)");
    }

    public static class BranchEnd
    {
        public static readonly Argument<string> Name = Opt.Arg("NAME", "the branch");
    }

    public static class Ls
    {
        public static readonly Argument<string> Path = Opt.Arg("PATH", "the directory (default /), or a file", optional: true);
        public static readonly Option<bool> Long = Opt.Flag("--long", "show mode, links, owner, size and time", "-l");
    }

    public static class Cat
    {
        public static readonly Argument<string> Path = Opt.Arg("PATH", "the file");
        public static readonly Option<long?> Offset = Opt.Count("--offset", "first byte (default 0)");
        public static readonly Option<long?> Length = Opt.Count("--length", "bytes to write (default: to the end)");
    }

    public static class Stat
    {
        public static readonly Argument<string> Path = Opt.Arg("PATH", "the file, directory or link");
    }

    public static class Put
    {
        public static readonly Argument<string> Path = Opt.Arg("PATH", "the file to write");
        public static readonly Option<long?> Offset = Opt.Count("--offset", "write at this offset, keeping the rest of the file");
        public static readonly Option<bool> Append = Opt.Flag("--append", "append at the end", "-a");
    }

    public static class Rm
    {
        public static readonly Argument<string> Path = Opt.Arg("PATH", "what to remove");
        public static readonly Option<bool> Recursive = new("--recursive", "-R") { Description = "remove a directory and everything under it (-r too, before PATH; see below)" };
    }

    public static class Mkdir
    {
        public static readonly Argument<string> Path = Opt.Arg("PATH", "the directory to create");
        public static readonly Option<bool> Parents = Opt.Flag("--parents", "create missing parents; no error if it exists", "-p");
    }

    public static class Mv
    {
        public static readonly Argument<string> From = Opt.Arg("FROM", "what to move");
        public static readonly Argument<string> To = Opt.Arg("TO", "where to");
        public static readonly Option<bool> NoReplace = Opt.Flag("--no-replace", "fail if TO exists", "-n");
    }

    public static class Ln
    {
        public static readonly Argument<string> Target = Opt.Arg("TARGET", "what the link points at (stored as given)");
        public static readonly Argument<string> Path = Opt.Arg("PATH", "the link to create");
        public static readonly Option<bool> Symbolic = Opt.Flag("--symbolic", "make a symbolic link (the only kind ln makes here)", "-s");
    }

    public static class Truncate
    {
        public static readonly Argument<string> Path = Opt.Arg("PATH", "the file");
        public static readonly Argument<string> Size = Opt.Arg("SIZE", "the new size (4096, 64K, 1M)");
    }

    public static class Chmod
    {
        public static readonly Argument<string> Mode = Opt.Arg("MODE", "octal permission bits, like 644 or 0755");
        public static readonly Argument<string> Path = Opt.Arg("PATH", "the file or directory");
    }

    public static class Diff
    {
        public static readonly Option<string?> From = Opt.Text("--from", "REF", "the older side");
        public static readonly Option<string?> To = Opt.Text("--to", "REF", "the newer side");
    }

    public static class Log
    {
        public static readonly Option<long?> MaxCount = Opt.Count("--max-count", "show only the newest N versions (as git log -n)", alias: "-n");
    }

    public static class Export
    {
        public static readonly Argument<string> Dest = Opt.Arg("DEST_DIR", "a directory that does not exist yet");
    }

    public static class Tag
    {
        public static readonly Argument<string> Name = Opt.Arg("NAME", "the tag", optional: true);
        public static readonly Argument<string> Version = Opt.Arg("VERSION", "the version to name (default: the latest)", optional: true);
        public static readonly Option<bool> Delete = Opt.Flag("--delete", "remove the tag", "-d");
        public static readonly Option<bool> List = Opt.Flag("--list", "list the tags", "-l");
    }

    public static class Compact
    {
        public static readonly Option<long?> Keep = Opt.Count("--keep", "versions before the current one to keep readable (default 0)", alias: "-k");
    }

    public static class Resize
    {
        public static readonly Option<long?> Capacity = Required(Opt.Size("--capacity", "the new size, e.g. 8G (a region only grows)"));
    }

    public static class Remote
    {
        public static readonly Argument<string> Name = Opt.Arg("NAME", "the remote's name in this region (e.g. origin)");
        public static readonly Argument<string> Url = Opt.Arg("URL", "s3://BUCKET/PREFIX");
        public static readonly Option<string?> Endpoint = Opt.Text("--endpoint", "URL", "the S3 endpoint (Ceph RGW, MinIO, R2; default: AWS)");
        public static readonly Option<string?> S3Region = Opt.Text("--s3-region", "R", "the signing region (default: $AWS_REGION, else us-east-1); -r names the region file");
        public static readonly Option<string?> Use = Opt.Text("--remote", "NAME", "the remote (default: origin, or the only one)");
        public static readonly Argument<string> PushRef = Opt.Arg("REF", "main (default), a branch or a tag", optional: true);
        public static readonly Argument<string[]> PullBranches = Opt.Args("BRANCH", "branches to bring as local branches of the same name");
        public static readonly Option<bool> Rebase = Opt.Flag("--rebase", "when main has versions the remote lacks: put the remote's new versions under them (paths both\nsides changed are refused), then push");
        public static readonly Option<string?> From = Opt.Text("--from", "REF", "the remote version to clone: a tag or a version number (default: main's latest)");
        public static readonly Option<long?> Capacity = Opt.Size("--capacity", "region size (default: the version's content + a quarter + 256 MiB; grow it later with\ndaxfs resize)");
        public static readonly Option<string?> As = Opt.Text("--name", "NAME", "the remote's name in the new region (default: origin)");
        public static readonly Argument<string> RemoteBranch = Opt.Arg("REMOTE/BRANCH", "the pushed branch (e.g. origin/agent-1)");
        public static readonly Argument<string> LocalName = Opt.Arg("NAME", "the local branch's name (default: the pushed branch's)", optional: true);
    }

    public static class Mcp
    {
        public static readonly Option<long?> Http = Opt.Count("--http", "serve streamable HTTP on 127.0.0.1:PORT/mcp instead of stdio (0: a free port,\nprinted on standard error)", "PORT");
        public static readonly Option<bool> AllowRun = Opt.Flag("--allow-run", "offer the run tool: commands in a branch, with this process's rights (see\ndocs/mcp.md)");
    }

    public static class Gc
    {
        public static readonly Argument<string[]> Branches = Opt.Args("BRANCH", "the branches to clean (default: every live and kept one)");
    }

    public static class Mount
    {
        public static readonly Argument<string> Point = Opt.Arg("MOUNTPOINT", "an existing, empty directory");
        public static readonly Option<bool> Background = Opt.Flag("--background", "detach the server and return once mounted");
        public static readonly Option<bool> ReadOnly = Opt.Flag("--read-only", "refuse writes (EROFS)");
        public static readonly Option<string?> DirectRead = Opt.Text("--direct-read", "SIZE", "read files of SIZE or more opened read-only past the page cache (default 1M; off)");
        public static readonly Option<string?> CacheTimeout = Opt.Text("--cache-timeout", "SECONDS", "how long the kernel may cache names, missing names and attributes (default 60);\nother processes' changes reach the mount within 0.1 s");
        public static readonly Option<string?> Uring = WithChoices(Opt.Text("--uring", "auto|on|off", "serve requests over io_uring, one queue per CPU: auto (default) when the kernel has it on,\non (refuse to mount otherwise), off (/dev/fuse reads and writes); default: $DAXFS_URING, else auto"), "auto", "on", "off");
        public static readonly Option<bool> EnableKernelUring = Opt.Flag("--enable-kernel-uring", "as root, switch the kernel's FUSE io_uring on when it is off (fuse module parameter\nenable_uring), and say so");
    }

    public static class Unmount
    {
        public static readonly Argument<string> Point = Opt.Arg("MOUNTPOINT", "the mounted directory");
    }

    public static class Demo
    {
        public static readonly Option<bool> Keep = Opt.Flag("--keep", "keep the region file at the end");
        public static readonly Option<bool> Force = Opt.Flag("--force", "replace a file already at --region (without it the demo refuses to touch one)", "-f");
    }

    private static Option<string?> WithChoices(Option<string?> o, params string[] choices)
    {
        o.AcceptOnlyFromAmong(choices);
        return o;
    }

    private static Option<T> Required<T>(Option<T> o)
    {
        o.Required = true;
        return o;
    }

    // ------------------------------------------------------------------ the verbs

    public static readonly Verb[] All =
    [
        new("mkfs", "Builds a region from a directory: its tree becomes the immutable base image, main starts empty.\n"
            + "The region is built in a temporary file next to it and renamed into place, so an interrupted mkfs leaves\nno partial file (and, with --force, the old region whole).",
            "daxfs mkfs ./workspace -r /dev/shm/ws.daxfs --capacity 2G",
            [Mkfs.Source, Mkfs.Capacity, Mkfs.MaxCapacity, Mkfs.Slots, Mkfs.Force, Mkfs.Strict, Mkfs.Sparse], FileVerbs.Mkfs, HasJson: true),
        new("inspect", "Shows the region: geometry, space used, branches and versions.",
            "daxfs inspect -r /dev/shm/ws.daxfs", [], RegionVerbs.Inspect, HasJson: true),
        new("verify", "Checks every structure and every checksum of the region, through a read-only snapshot (it never\nchanges the file), and reports every damaged structure in one pass. Exit code 3 when damaged.",
            "daxfs verify -r /dev/shm/ws.daxfs", [], RegionVerbs.Verify, HasJson: true),
        new("repair", "Repairs a damaged region by cutting each damaged log back to its last valid record. Without --yes\nit only says what it would drop and what stays (nothing changes). With --yes it first exports every\nversion and branch that stays readable into DIR (version-N, branch-NAME), then cuts.",
            "daxfs repair -r /dev/shm/ws.daxfs\ndaxfs repair -r /dev/shm/ws.daxfs --salvage ./rescued --yes",
            [Repair.Salvage, Repair.Yes], RegionVerbs.Repair, HasJson: true),
        new("branch list", "Lists the branches: name, parent, state, depth and log size.",
            "daxfs branch list -r /dev/shm/ws.daxfs", [], BranchVerbs.List, HasJson: true),
        new("branch create", "Forks a new branch (default parent: main). O(1): nothing is copied.\nWith --from, forks main as of a past version or tag (to replay against an old state). With --keep, a commit that\ninvalidates the branch keeps its changes, so 'branch rebase' can re-apply them onto the new main.",
            "daxfs branch create agent-1 -r /dev/shm/ws.daxfs\ndaxfs branch create try-2 --parent agent-1\ndaxfs branch create replay --from v1.0",
            [BranchCreate.Name, BranchCreate.Parent, BranchCreate.From, BranchCreate.Keep], BranchVerbs.Create),
        new("branch commit", "Commits leaf branch NAME: its chain becomes main's next version and every other branch is invalidated.\nWith --to-parent, it merges into its parent only and its siblings are invalidated.",
            "daxfs branch commit agent-1 -m 'agent 1 passed the tests'",
            [BranchCommit.Name, BranchCommit.ToParent, BranchCommit.Message], BranchVerbs.Commit, HasJson: true),
        new("branch rebase", "Re-applies what NAME changed onto main as it is now, as branch NEW (default NAME-rebased). NAME is a branch\nforked from a past version, or one created with --keep that a commit invalidated; it is left as it was (discard it\nafter). Colliding paths and byte ranges are listed, and nothing is created.",
            "daxfs branch rebase replay --as replay-on-main\ndaxfs branch rebase agent-2 && daxfs branch discard agent-2",
            [BranchRebase.Name, BranchRebase.As], BranchVerbs.Rebase, HasJson: true),
        new("branch abort", "Discards NAME's whole chain back to main, and every branch forked from it.",
            "daxfs branch abort agent-2", [BranchEnd.Name], BranchVerbs.Abort),
        new("branch discard", "Discards leaf branch NAME alone; its parent goes on. For an invalidated branch, frees its name\n(and, when it was kept, its space).",
            "daxfs branch discard try-2", [BranchEnd.Name], BranchVerbs.Discard),
        new("ls", "Lists a directory of a branch.",
            "daxfs ls /src -l -b agent-1\ndaxfs ls /src --at 3", [Ls.Path, Ls.Long], FileVerbs.Ls, UsesBranch: true, HasJson: true, HasAt: true),
        new("cat", "Writes a file's bytes (or a range of them) to standard output.",
            "daxfs cat /src/app.py -b agent-1\ndaxfs cat /data.bin --offset 4096 --length 100",
            [Cat.Path, Cat.Offset, Cat.Length], FileVerbs.Cat, UsesBranch: true, HasAt: true),
        new("stat", "Shows a file's attributes.", "daxfs stat /src/app.py -b agent-1",
            [Stat.Path], FileVerbs.Stat, UsesBranch: true, HasJson: true, HasAt: true),
        new("put", "Writes standard input into PATH (created if missing; replaced unless --offset or --append).",
            "echo 'print(1)' | daxfs put /src/app.py -b agent-1", [Put.Path, Put.Offset, Put.Append], FileVerbs.Put, UsesBranch: true),
        new("rm", "Removes a file, a symlink or an empty directory; with -r or -R, a whole tree.\n"
            + "As in coreutils, -r means recursive when it comes before PATH; after PATH it names the region, as for every\nverb (--region names it anywhere).",
            "daxfs rm -r /build -b agent-1\ndaxfs rm /notes.txt -r /dev/shm/ws.daxfs", [Rm.Path, Rm.Recursive], FileVerbs.Rm, UsesBranch: true),
        new("mkdir", "Creates a directory.", "daxfs mkdir /a/b/c -p -b agent-1", [Mkdir.Path, Mkdir.Parents], FileVerbs.Mkdir, UsesBranch: true),
        new("mv", "Renames or moves a file or directory (POSIX rules: a file replaces a file, a directory an empty directory).",
            "daxfs mv /src/old.py /src/new.py -b agent-1", [Mv.From, Mv.To, Mv.NoReplace], FileVerbs.Mv, UsesBranch: true),
        new("ln", "Creates a symbolic link PATH pointing at TARGET.", "daxfs ln -s ../lib/util.py /src/util.py -b agent-1",
            [Ln.Target, Ln.Path, Ln.Symbolic], FileVerbs.Ln, UsesBranch: true),
        new("truncate", "Sets a file's size: shorter drops bytes, longer adds zeros.", "daxfs truncate /log.txt 0 -b agent-1",
            [Truncate.Path, Truncate.Size], FileVerbs.Truncate, UsesBranch: true),
        new("chmod", "Sets permission bits (octal).", "daxfs chmod 755 /run.sh -b agent-1", [Chmod.Mode, Chmod.Path], FileVerbs.Chmod, UsesBranch: true),
        new("diff", "What changed: BRANCH against its parent, version REF against the version before, or between any two refs\n(branches, version numbers, tags): added, deleted, modified (with byte ranges), renamed, attribute changes.",
            "daxfs diff -b agent-1\ndaxfs diff --at 3\ndaxfs diff --from v1.0 --to main",
            [Diff.From, Diff.To], FileVerbs.Diff, UsesBranch: true, HasJson: true, HasAt: true),
        new("log", "The versions of main, newest first: sequence, time, message, source branch, size and tags.", "daxfs log -r /dev/shm/ws.daxfs\ndaxfs log -n 5 --json",
            [Log.MaxCount], RegionVerbs.Log, HasJson: true),
        new("export", "Writes a branch's (or a version's) whole tree into a new directory (built under a temporary name next to\nit and renamed into place, so an interrupted export leaves nothing half-written).",
            "daxfs export ./out -b agent-1\ndaxfs export ./v3 --at 3", [Export.Dest], FileVerbs.Export, UsesBranch: true, HasAt: true),
        new("tag", "Names a version of main (default: the latest); tags are kept by compaction and survive reopening.\n"
            + "'tag NAME [VERSION]' adds one, 'tag --delete NAME' removes one, 'tag' or 'tag --list' lists them.",
            "daxfs tag v1.0\ndaxfs tag before-refactor 3\ndaxfs tag --list",
            [Tag.Name, Tag.Version, Tag.Delete, Tag.List], RegionVerbs.Tag, HasJson: true),
        new("compact", "Folds main's history into a new base image and gives the older versions' space back. Keeps the last N versions\n(default 0) readable, and every tagged version or version a branch was forked from. Live branches go on as they were.",
            "daxfs compact -r /dev/shm/ws.daxfs --keep 10", [Compact.Keep], RegionVerbs.Compact, HasJson: true),
        new("resize", "Grows the region in place to SIZE: the file is extended with its memory or disk reserved up front (refused\n"
            + "at once when the file system lacks it). Processes that have it open, mounts included, take the new size at once.",
            "daxfs resize -r /dev/shm/ws.daxfs --capacity 8G", [Resize.Capacity], RegionVerbs.Resize, HasJson: true),
        new("gc", "Cleans branch logs (every live and kept branch, or the ones named): writes again only the bytes their files still\n"
            + "read and gives back the space of what later writes replaced. Branches, mounts and readers go on meanwhile.\n"
            + "A branch's log is also cleaned automatically as it grows. Main's history is given back by compact.",
            "daxfs gc -r /dev/shm/ws.daxfs\ndaxfs gc agent-1 --json", [Gc.Branches], RegionVerbs.Gc, HasJson: true),
        new("mount", "Mounts the region (or, with -b, one branch) at a directory through FUSE, so any program works inside it.\n"
            + "Without -b one server shows main read-only at MOUNTPOINT and every live branch as MOUNTPOINT/@NAME: mkdir @NAME\n"
            + "forks main, rmdir @NAME discards. In every branch directory the hidden .daxfs/ctl takes one command per write\n"
            + "(fork NAME, commit [MESSAGE], commit-parent [MESSAGE], abort, discard; reading it shows the state and the last\n"
            + "failure), and mkdir .daxfs/branches/NAME forks that branch. Needs /dev/fuse (apt-get install fuse3); a user\n"
            + "other than root mounts through fusermount3. Stays in the foreground unless --background.",
            "daxfs mount /mnt/ws -r /dev/shm/ws.daxfs --background && mkdir /mnt/ws/@agent-1 && echo commit > /mnt/ws/@agent-1/.daxfs/ctl",
            [Mount.Point, Mount.Background, Mount.ReadOnly, Mount.DirectRead, Mount.CacheTimeout, Mount.Uring, Mount.EnableKernelUring], MountVerbs.Mount, UsesBranch: true),
        new("unmount", "Unmounts a mounted branch (also clears the mount of a server that crashed).",
            "daxfs unmount /mnt/agent", [Unmount.Point], MountVerbs.Unmount, UsesRegion: false),
        new("remote add", "Adds a remote: an S3 bucket and prefix (AWS S3, Ceph RGW, MinIO, R2) that versions, tags and branches are pushed\nto and pulled from. Kept in the region; credentials are never stored (they come from the standard AWS chain:\nAWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, or AWS_PROFILE).",
            "daxfs remote add origin s3://my-bucket/workspaces/ws1\ndaxfs remote add local s3://ws/one --endpoint http://127.0.0.1:7480",
            [Remote.Name, Remote.Url, Remote.Endpoint, Remote.S3Region], RemoteVerbs.Add),
        new("remote list", "Lists the remotes: name, URL, endpoint, and the version of main last exchanged with each.",
            "daxfs remote list --json", [], RemoteVerbs.List, HasJson: true),
        new("remote remove", "Forgets a remote and what was exchanged with it (the objects in the bucket stay).",
            "daxfs remote remove origin", [Remote.Name], RemoteVerbs.Remove),
        new("push", "Sends main's versions since the last push (one remote version each), a branch, or a tag. Only objects the remote\nlacks go up; the remote's ref moves last, by compare-and-swap, and a push whose base is behind the remote's main\nis refused: pull --rebase, then push again.",
            "daxfs push\ndaxfs push agent-1\ndaxfs push v1.0 --remote backup", [Remote.PushRef, Remote.Use], RemoteVerbs.Push, HasJson: true),
        new("pull", "Brings the remote's new versions of main (one local version each), its tags, and the branches named. Every\nobject is checked against its SHA-256 before anything of it shows; a pull that fails leaves main as it was.",
            "daxfs pull\ndaxfs pull --rebase\ndaxfs pull agent-1", [Remote.PullBranches, Remote.Rebase, Remote.Use], RemoteVerbs.Pull, HasJson: true),
        new("clone", "Builds a new region (-r) from a remote version: main's latest, a tag or a version number. Built under a\ntemporary name and renamed into place, so a clone that fails leaves nothing.",
            "daxfs clone s3://my-bucket/workspaces/ws1 -r /dev/shm/ws.daxfs\ndaxfs clone s3://ws/one -r ws.daxfs --endpoint http://127.0.0.1:7480 --from v1.0",
            [Remote.Url, Remote.Endpoint, Remote.S3Region, Remote.From, Remote.Capacity, Remote.As], RemoteVerbs.Clone, HasJson: true),
        new("fork-remote", "Continues a branch pushed from another machine: forks the version of main it started from (pulling it first\nwhen needed) and applies the branch's changes. Same as 'branch create NAME --from REMOTE/BRANCH'.",
            "daxfs fork-remote origin/agent-1\ndaxfs fork-remote origin/agent-1 agent-1-here", [Remote.RemoteBranch, Remote.LocalName], RemoteVerbs.ForkRemote, HasJson: true),
        new("mcp", "Serves the region to agents over the Model Context Protocol. Its tools fork, read, write, edit, diff, commit\n"
            + "and abort; the files of every live branch are resources daxfs://BRANCH/PATH (subscribable); with --allow-run a\n"
            + "run tool runs commands in a branch. On stdio by default; --http PORT serves streamable HTTP on 127.0.0.1.",
            "daxfs mcp -r /dev/shm/ws.daxfs\ndaxfs mcp -r /dev/shm/ws.daxfs --http 8765 --allow-run", [Verbs.Mcp.Http, Verbs.Mcp.AllowRun], McpVerb.Run),
        new("demo", "Forks a workspace three ways, lets three agents edit it, commits the one that passes its check.",
            "daxfs demo", [Demo.Keep, Demo.Force], global::Daxfs.Branching.Cli.Demo.Run),
    ];
}
