using System.Globalization;

namespace Daxfs.Branching.Remote;

/// <summary>A remote as the region keeps it, with what was last exchanged with its main.</summary>
/// <param name="Name">The remote's name in this region.</param>
/// <param name="Target">Where it lives.</param>
/// <param name="RefUpdates">How refs are updated there, once a push has found out: "if-match", "if-match-unquoted" or "lock".</param>
/// <param name="SyncedVersion">The local version of main that matches the remote's main as last seen, or null before any exchange.</param>
/// <param name="RemoteVersion">The remote's version number of it.</param>
public sealed record RemoteInfo(string Name, RemoteTarget Target, string? RefUpdates, long? SyncedVersion, long? RemoteVersion);

/// <summary>The remotes a region knows: kept as the region's settings (<see cref="Store.Settings"/>), never with credentials.</summary>
public static class Remotes
{
    internal static string Key(string remote, string what) => $"remote.{remote}.{what}";

    /// <summary>Why <paramref name="name"/> cannot name a remote, or null.</summary>
    public static string? NameProblem(string name)
    {
        if (string.IsNullOrEmpty(name) || name.Length > 64) return "a remote name has 1 to 64 characters";
        if (!char.IsAsciiLetter(name[0])) return "a remote name starts with an ASCII letter";
        foreach (char c in name)
            if (!char.IsAsciiLetterOrDigit(c) && c != '-' && c != '_')
                return $"a remote name holds only ASCII letters, digits, '-' and '_', not '{c}'";
        return null;
    }

    /// <summary>Adds remote <paramref name="name"/>; throws when the name is taken or bad.</summary>
    public static void Add(Store store, string name, RemoteTarget target)
    {
        ArgumentNullException.ThrowIfNull(store);
        ArgumentNullException.ThrowIfNull(target);
        if (NameProblem(name) is { } why) throw new ArgumentException($"invalid remote name '{name}': {why}");
        if (target.Endpoint is { } e && (!Uri.TryCreate(e, UriKind.Absolute, out var uri) || uri.Scheme is not ("http" or "https")))
            throw new ArgumentException($"--endpoint {e}: an endpoint is an http:// or https:// URL");
        if (store.Settings.ContainsKey(Key(name, "url")))
            throw new DaxfsException($"remote '{name}' already exists (daxfs remote remove {name} first)");
        store.SetSettings([
            new(Key(name, "url"), target.Url.ToString()),
            new(Key(name, "endpoint"), target.Endpoint),
            new(Key(name, "region"), target.Region),
        ]);
    }

    /// <summary>Forgets remote <paramref name="name"/> and what was exchanged with it (the remote itself is untouched).</summary>
    public static void Remove(Store store, string name)
    {
        ArgumentNullException.ThrowIfNull(store);
        var prefix = $"remote.{name}.";
        var keys = store.Settings.Keys.Where(k => k.StartsWith(prefix, StringComparison.Ordinal)).ToList();
        if (!keys.Contains(Key(name, "url")))
            throw new RemoteException(RemoteError.NotFound, $"no remote '{name}' (daxfs remote list)");
        store.SetSettings(keys.Select(k => new KeyValuePair<string, string?>(k, null)).ToList());
    }

    /// <summary>The remotes, by name.</summary>
    public static IReadOnlyList<RemoteInfo> List(Store store)
    {
        ArgumentNullException.ThrowIfNull(store);
        var settings = store.Settings;
        return settings.Keys.Where(k => k.StartsWith("remote.", StringComparison.Ordinal) && k.EndsWith(".url", StringComparison.Ordinal))
            .Select(k => k["remote.".Length..^".url".Length]).Where(n => NameProblem(n) is null).Order(StringComparer.Ordinal)
            .Select(n => Read(settings, n)).ToList();
    }

    /// <summary>Remote <paramref name="name"/>; a <see cref="RemoteException"/> (NotFound) when there is none.</summary>
    public static RemoteInfo Get(Store store, string name)
    {
        ArgumentNullException.ThrowIfNull(store);
        var settings = store.Settings;
        if (!settings.ContainsKey(Key(name, "url")))
            throw new RemoteException(RemoteError.NotFound, $"no remote '{name}' (add one with daxfs remote add {name} s3://BUCKET/PREFIX)");
        return Read(settings, name);
    }

    private static RemoteInfo Read(IReadOnlyDictionary<string, string> settings, string name)
    {
        var url = RemoteUrl.Parse(settings[Key(name, "url")]);
        settings.TryGetValue(Key(name, "endpoint"), out var endpoint);
        settings.TryGetValue(Key(name, "region"), out var region);
        settings.TryGetValue(Key(name, "cas"), out var cas);
        var sync = SyncPoint.Read(settings, name);
        return new RemoteInfo(name, new RemoteTarget(url, endpoint, region), cas, sync?.LocalVersion, sync?.RemoteVersion);
    }
}

/// <summary>What this region last exchanged with a remote's main: the remote commit, the local version that holds it, and the paths changed locally since (after a rebase).</summary>
internal sealed record SyncPoint(string Commit, long LocalVersion, long RemoteVersion, IReadOnlyList<string>? Pending, bool PendingAll)
{
    public static SyncPoint? Read(IReadOnlyDictionary<string, string> settings, string remote)
    {
        if (!settings.TryGetValue(Remotes.Key(remote, "main"), out var text))
            return null;
        var parts = text.Split(' ');
        if (parts.Length != 3 || !RemoteFormat.IsHash(parts[0]) || !long.TryParse(parts[1], NumberStyles.None, CultureInfo.InvariantCulture, out long local)
            || !long.TryParse(parts[2], NumberStyles.None, CultureInfo.InvariantCulture, out long rv))
            throw new RemoteException(RemoteError.Damaged, $"setting {Remotes.Key(remote, "main")} = '{text}' cannot be read (daxfs remote remove {remote}, add it again and pull)");
        settings.TryGetValue(Remotes.Key(remote, "main.pending"), out var pending);
        return new SyncPoint(parts[0], local, rv, pending is null or "*" ? null : pending.Split('\n'), pending == "*");
    }

    public IEnumerable<KeyValuePair<string, string?>> Settings(string remote)
    {
        yield return new(Remotes.Key(remote, "main"), string.Create(CultureInfo.InvariantCulture, $"{Commit} {LocalVersion} {RemoteVersion}"));
        string? pending = PendingAll ? "*" : Pending is { Count: > 0 } p ? string.Join('\n', p) : null;
        if (pending is { Length: > 8192 }) pending = "*"; // too many to list: the next push describes the whole tree again (it uploads only what is missing)
        yield return new(Remotes.Key(remote, "main.pending"), pending);
        yield return new(VersionKey(remote, LocalVersion), string.Create(CultureInfo.InvariantCulture, $"{Commit} {RemoteVersion}"));
    }

    public static string VersionKey(string remote, long local) => Remotes.Key(remote, "v." + local.ToString(CultureInfo.InvariantCulture));

    /// <summary>The remote commit a local version was exchanged as, or null.</summary>
    public static (string Commit, long RemoteVersion)? CommitOf(IReadOnlyDictionary<string, string> settings, string remote, long local)
    {
        if (!settings.TryGetValue(VersionKey(remote, local), out var text)) return null;
        var parts = text.Split(' ');
        return parts.Length == 2 && RemoteFormat.IsHash(parts[0]) && long.TryParse(parts[1], NumberStyles.None, CultureInfo.InvariantCulture, out long rv) ? (parts[0], rv) : null;
    }

    /// <summary>The local version a remote commit was exchanged as, or null.</summary>
    public static long? LocalOf(IReadOnlyDictionary<string, string> settings, string remote, string commit)
    {
        string prefix = Remotes.Key(remote, "v.");
        foreach (var (k, v) in settings)
            if (k.StartsWith(prefix, StringComparison.Ordinal) && v.StartsWith(commit, StringComparison.Ordinal)
                && long.TryParse(k.AsSpan(prefix.Length), NumberStyles.None, CultureInfo.InvariantCulture, out long local))
                return local;
        return null;
    }
}
