using Spectre.Console;

namespace Daxfs.Branching.Cli;

internal static class BranchVerbs
{
    public static void WriteTable(IReadOnlyList<BranchInfo> branches)
    {
        var t = Output.Table("branch", "parent", "state", "depth", "log", "records", "created");
        foreach (var b in branches)
        {
            string state = b.Status switch
            {
                BranchStatus.Live => "[green]live[/]",
                BranchStatus.Frozen => "[blue]frozen[/]",
                BranchStatus.Main => "main",
                _ when b.Kept => "[yellow]invalidated (kept)[/]",
                _ => "[red]invalidated[/]",
            };
            t.AddRow(Output.Escape(b.Name), Output.Escape(b.Parent ?? "-"), state, b.Depth.ToString(System.Globalization.CultureInfo.InvariantCulture),
                Output.Bytes(b.LogBytes), b.Records.ToString(System.Globalization.CultureInfo.InvariantCulture), Output.Time(b.Created));
        }
        Output.Out.Write(t);
    }

    public static int List(Context c)
    {
        using var store = c.Open();
        var list = store.ListBranches();
        if (c.Json) Output.WriteJson(list);
        else WriteTable(list);
        return Program.Ok;
    }

    private static string Name(Context c, System.CommandLine.Argument<string> argument)
    {
        string name = c.Get(argument);
        if (name == "main")
            throw new UsageException("main cannot be committed, aborted or discarded; it changes only by commits of other branches");
        return name;
    }

    public static int Create(Context c)
    {
        string name = c.Get(Verbs.BranchCreate.Name);
        if (Store.BranchNameProblem(name) is { } why)
            throw new UsageException($"invalid branch name '{name}': {why}");
        using var store = c.Open();
        if (c.Get(Verbs.BranchCreate.From) is not null && c.Get(Verbs.BranchCreate.Parent) is not null)
            throw new UsageException("--from and --parent exclude each other");
        Branch parent;
        if (c.Get(Verbs.BranchCreate.From) is { } remoteRef && RemoteVerbs.SplitRemoteBranch(store, remoteRef) is not null)
        {
            store.Dispose();
            return RemoteVerbs.ForkRemote(c, remoteRef, name);
        }
        if (c.Get(Verbs.BranchCreate.From) is { } reference)
        {
            parent = Context.Resolve(store, reference, "--from");
        }
        else
        {
            parent = store.GetBranch(c.Get(Verbs.BranchCreate.Parent) ?? "main");
        }
        bool keep = c.Get(Verbs.BranchCreate.Keep);
        var b = parent.Fork(name, new ForkOptions { KeepForRebase = keep });
        Console.Out.WriteLine($"created branch '{b.Name}' from '{parent.Name}' (depth {b.Depth})"
            + (keep ? "; if a commit invalidates it, its changes are kept for 'daxfs branch rebase'" : ""));
        return Program.Ok;
    }

    public static int Commit(Context c)
    {
        string name = Name(c, Verbs.BranchCommit.Name);
        using var store = c.Open();
        var b = store.GetBranch(name);
        string message = c.Get(Verbs.BranchCommit.Message) ?? $"commit {name}";
        string parent = b.Parent!.Name;
        VersionInfo? v = c.Get(Verbs.BranchCommit.ToParent) ? b.CommitToParent(message) : b.Commit(message);
        if (c.Json)
        {
            Output.WriteJson(new { branch = name, into = v is null ? parent : "main", version = v });
            return Program.Ok;
        }
        Console.Out.WriteLine(v is { } ver
            ? $"committed '{name}' to main as version {ver.Sequence}; every other branch is invalidated"
            : $"committed '{name}' into '{parent}'; its siblings are invalidated");
        return Program.Ok;
    }

    public static int Rebase(Context c)
    {
        string name = Name(c, Verbs.BranchRebase.Name);
        string target = c.Get(Verbs.BranchRebase.As) ?? name + "-rebased";
        if (Store.BranchNameProblem(target) is { } why)
            throw new UsageException($"invalid branch name '{target}': {why}");
        using var store = c.Open();
        bool kept = store.ListBranches().Any(b => b.Name == name && b.Kept);
        try
        {
            var rebased = store.Rebase(name, target);
            if (c.Json) Output.WriteJson(new { branch = name, rebased = rebased.Name, conflicts = Array.Empty<RebaseConflict>() });
            else Console.Out.WriteLine($"rebased '{name}' onto main at version {store.Versions.Count} as '{rebased.Name}'; "
                + (kept ? $"'{name}' keeps its space until 'daxfs branch discard {name}'" : $"'{name}' is unchanged"));
            return Program.Ok;
        }
        catch (RebaseConflictException e)
        {
            if (c.Json)
                Output.WriteJson(new { branch = name, rebased = (string?)null, conflicts = e.Conflicts });
            else
                foreach (var conflict in e.Conflicts)
                    Console.Out.WriteLine($"conflict: {conflict.Path}: {conflict.Reason}"
                        + (conflict.Ours.Count + conflict.Theirs.Count > 0 ? $" (branch bytes {Ranges(conflict.Ours)}; main bytes {Ranges(conflict.Theirs)})" : ""));
            Console.Error.WriteLine($"daxfs: {e.Message}");
            return Program.Failed;
        }
    }

    private static string Ranges(IReadOnlyList<ByteRange> ranges) => ranges.Count == 0 ? "-" : string.Join(", ", ranges.Select(r => $"[{r.Offset}, {r.Offset + r.Length})"));

    public static int Abort(Context c)
    {
        string name = Name(c, Verbs.BranchEnd.Name);
        using var store = c.Open();
        store.GetBranch(name).Abort();
        Console.Out.WriteLine($"aborted '{name}' and its chain back to main");
        return Program.Ok;
    }

    public static int Discard(Context c)
    {
        string name = Name(c, Verbs.BranchEnd.Name);
        using var store = c.Open();
        if (store.BranchExists(name))
            store.GetBranch(name).Discard();
        else
            store.DiscardInvalidated(name); // an invalidated branch: its name (and, when kept, its space) is given back
        Console.Out.WriteLine($"discarded '{name}'");
        return Program.Ok;
    }
}
