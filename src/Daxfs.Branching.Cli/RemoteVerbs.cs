using Daxfs.Branching.Remote;

namespace Daxfs.Branching.Cli;

/// <summary>remote add|list|remove, push, pull, clone, fork-remote.</summary>
internal static class RemoteVerbs
{
    public static int Add(Context c)
    {
        string name = c.Get(Verbs.Remote.Name);
        RemoteUrl url;
        try { url = RemoteUrl.Parse(c.Get(Verbs.Remote.Url)); }
        catch (ArgumentException bad) { throw new UsageException(bad.Message); }
        if (Remotes.NameProblem(name) is { } why) throw new UsageException($"invalid remote name '{name}': {why}");
        using var store = c.Open();
        Remotes.Add(store, name, new RemoteTarget(url, c.Get(Verbs.Remote.Endpoint), c.Get(Verbs.Remote.S3Region)));
        Console.Out.WriteLine($"added remote '{name}': {url}{(c.Get(Verbs.Remote.Endpoint) is { } e ? $" at {e}" : "")}");
        return Program.Ok;
    }

    public static int List(Context c)
    {
        using var store = c.Open();
        var all = Remotes.List(store);
        if (c.Json)
        {
            Output.WriteJson(all.Select(r => new
            {
                name = r.Name, url = r.Target.Url.ToString(), endpoint = r.Target.Endpoint, s3Region = r.Target.Region, refUpdates = r.RefUpdates,
                syncedVersion = r.SyncedVersion, remoteVersion = r.RemoteVersion,
            }));
            return Program.Ok;
        }
        if (all.Count == 0)
        {
            Console.Out.WriteLine("no remotes (add one with daxfs remote add NAME s3://BUCKET/PREFIX)");
            return Program.Ok;
        }
        foreach (var r in all)
            Console.Out.WriteLine($"{r.Name}\t{r.Target.Url}{(r.Target.Endpoint is { } e ? $" at {e}" : "")}\t"
                + (r.SyncedVersion is { } v ? $"local version {v} = remote version {r.RemoteVersion}" : "nothing exchanged yet"));
        return Program.Ok;
    }

    public static int Remove(Context c)
    {
        string name = c.Get(Verbs.Remote.Name);
        using var store = c.Open();
        Remotes.Remove(store, name);
        Console.Out.WriteLine($"removed remote '{name}' (its bucket is untouched)");
        return Program.Ok;
    }

    /// <summary>The remote a verb uses: --remote, else origin, else the only one.</summary>
    private static string Which(Context c, Store store)
    {
        if (c.Get(Verbs.Remote.Use) is { } named) return named;
        var all = Remotes.List(store);
        if (all.Any(r => r.Name == "origin")) return "origin";
        return all.Count switch
        {
            1 => all[0].Name,
            0 => throw new UsageException("this region has no remote: add one with daxfs remote add origin s3://BUCKET/PREFIX"),
            _ => throw new UsageException($"this region has {all.Count} remotes and none is called origin: say which with --remote ({string.Join(", ", all.Select(r => r.Name))})"),
        };
    }

    /// <summary>Runs <paramref name="work"/> with a progress bar on a terminal (bytes hashed, sent or fetched of those known so far).</summary>
    private static T WithProgress<T>(string title, Func<IProgress<RemoteProgress>, Task<T>> work) =>
        Output.WithProgress(title, report => work(new Reporter(report)).GetAwaiter().GetResult());

    private sealed class Reporter(Action<double, string> report) : IProgress<RemoteProgress>
    {
        public void Report(RemoteProgress p) =>
            report(p.Total == 0 ? 0 : (double)p.Done / p.Total, $"{p.Phase} {Output.Bytes(p.Done)} of {Output.Bytes(p.Total)}");
    }

    public static int Push(Context c)
    {
        using var store = c.Open();
        string remote = Which(c, store);
        string what = c.Get(Verbs.Remote.PushRef) ?? "main";
        var report = WithProgress($"push {what} to {remote}", async progress =>
        {
            using var client = new RemoteClient(store, remote, progress);
            if (what == "main") return await client.PushMainAsync();
            if (store.Tags.ContainsKey(what) && !store.ListBranches().Any(b => b.Name == what)) return await client.PushTagAsync(what);
            return await client.PushBranchAsync(what);
        });
        if (c.Json)
        {
            Output.WriteJson(new
            {
                remote, @ref = report.Ref, versions = report.Versions, commit = report.Commit, remoteVersion = report.RemoteVersion,
                objectsUploaded = report.ObjectsUploaded, bytesUploaded = report.BytesUploaded, objectsPresent = report.ObjectsPresent,
            });
            return Program.Ok;
        }
        Console.Out.WriteLine(report.Ref is null
            ? $"{remote} is up to date ({what})"
            : $"pushed {report.Ref} to {remote}" + (what == "main" ? $": {Plural(report.Versions, "version")}, now version {report.RemoteVersion} there" : "")
              + $"; uploaded {Plural(report.ObjectsUploaded, "object")} ({Output.Bytes(report.BytesUploaded)}), {report.ObjectsPresent} already there");
        return Program.Ok;
    }

    public static int Pull(Context c)
    {
        using var store = c.Open();
        string remote = Which(c, store);
        var branches = c.Get(Verbs.Remote.PullBranches) ?? [];
        foreach (var b in branches)
            if (Store.BranchNameProblem(b) is { } why) throw new UsageException($"invalid branch name '{b}': {why}");
        var report = WithProgress($"pull from {remote}", async progress =>
        {
            using var client = new RemoteClient(store, remote, progress);
            return await client.PullAsync(c.Get(Verbs.Remote.Rebase), branches);
        });
        WritePull(c, remote, report, "pulled");
        return Program.Ok;
    }

    private static void WritePull(Context c, string remote, PullReport report, string verb)
    {
        if (c.Json)
        {
            Output.WriteJson(new
            {
                remote, versions = report.Versions, localVersion = report.LocalVersion, remoteVersion = report.RemoteVersion,
                objectsDownloaded = report.ObjectsDownloaded, bytesDownloaded = report.BytesDownloaded, tags = report.Tags, branches = report.Branches,
                tagClashes = report.TagClashes,
            });
            return;
        }
        foreach (var clash in report.TagClashes)
            Console.Error.WriteLine($"daxfs: note: tag {clash}: the local tag is kept (tags do not move)");
        Console.Out.WriteLine($"{verb} {Plural(report.Versions, "version")} from {remote}: main is at version {report.LocalVersion} (version {report.RemoteVersion} there); "
            + $"fetched {Plural(report.ObjectsDownloaded, "object")} ({Output.Bytes(report.BytesDownloaded)}), each checked against its SHA-256"
            + (report.Tags.Count > 0 ? $"; tags {string.Join(", ", report.Tags)}" : "")
            + (report.Branches.Count > 0 ? $"; branches {string.Join(", ", report.Branches)}" : ""));
    }

    public static int Clone(Context c)
    {
        RemoteUrl url;
        try { url = RemoteUrl.Parse(c.Get(Verbs.Remote.Url)); }
        catch (ArgumentException e) { throw new UsageException(e.Message); }
        string region = c.RegionPath;
        string name = c.Get(Verbs.Remote.As) ?? "origin";
        if (Remotes.NameProblem(name) is { } why) throw new UsageException($"invalid remote name '{name}': {why}");
        var target = new RemoteTarget(url, c.Get(Verbs.Remote.Endpoint), c.Get(Verbs.Remote.S3Region));
        var report = WithProgress($"clone {url}", progress => RemoteClient.CloneAsync(target, region, name, c.Get(Verbs.Remote.From), c.Get(Verbs.Remote.Capacity), progress));
        WritePull(c, name, report, $"cloned {region}:");
        return Program.Ok;
    }

    /// <summary>REMOTE/BRANCH split, when REMOTE names a remote of the region; otherwise null.</summary>
    public static (string Remote, string Branch)? SplitRemoteBranch(Store store, string text)
    {
        int slash = text.IndexOf('/', StringComparison.Ordinal);
        if (slash <= 0) return null;
        string remote = text[..slash];
        return Remotes.List(store).Any(r => r.Name == remote) ? (remote, text[(slash + 1)..]) : null;
    }

    public static int ForkRemote(Context c) => ForkRemote(c, c.Get(Verbs.Remote.RemoteBranch), c.Get(Verbs.Remote.LocalName));

    public static int ForkRemote(Context c, string remoteBranch, string? localName)
    {
        using var store = c.Open();
        var (remote, branch) = SplitRemoteBranch(store, remoteBranch)
            ?? throw new UsageException($"{remoteBranch}: give REMOTE/BRANCH, where REMOTE is one of this region's remotes (daxfs remote list)");
        string name = localName ?? branch;
        if (Store.BranchNameProblem(name) is { } why) throw new UsageException($"invalid branch name '{name}': {why}");
        var made = WithProgress($"fork {remoteBranch}", async progress =>
        {
            using var client = new RemoteClient(store, remote, progress);
            return await client.ForkRemoteAsync(branch, name);
        });
        if (c.Json)
            Output.WriteJson(new { branch = made.Name, remote, from = branch, baseVersion = made.BaseVersion });
        else
            Console.Out.WriteLine($"created branch '{made.Name}' from {remoteBranch} (on version {made.BaseVersion} of main)");
        return Program.Ok;
    }

    private static string Plural(long n, string one) => n == 1 ? $"1 {one}" : $"{n} {one}s";
}
