using Spectre.Console;

namespace Daxfs.Branching.Cli;

/// <summary>The <c>daxfs</c> tool: every store operation from a shell.</summary>
public static class Program
{
    /// <summary>Exit codes: 0 success, 1 the operation failed, 2 usage error, 3 the region is corrupt.</summary>
    public const int Ok = 0, Failed = 1, Usage = 2, Corrupt = 3;

    /// <summary>Entry point.</summary>
    public static int Main(string[] args)
    {
        try
        {
            return Run(args);
        }
        catch (UsageException e)
        {
            if (args.Contains("--json"))
            {
                Output.WriteJsonError(e.Message, Usage);
                return Usage;
            }
            Console.Error.WriteLine($"daxfs: {e.Message}");
            Console.Error.WriteLine("run 'daxfs --help' or 'daxfs VERB --help' for usage");
            return Usage;
        }
        catch (Exception e) when (ExitCodeOf(e) is int code)
        {
            if (args.Contains("--json"))
                Output.WriteJsonError(MessageOf(e), code); // scripts read one JSON object from standard error; the exit code is the same
            else
                Console.Error.WriteLine($"daxfs: {MessageOf(e)}");
            return code;
        }
    }

    internal static int? ExitCodeOf(Exception e) => e switch
    {
        NotARegionException => Failed,
        CorruptionException or FormatVersionException => Corrupt,
        DaxfsIOException io when io.Error is FileSystemError.InvalidArgument or FileSystemError.NameTooLong => Usage,
        ArgumentException => Usage,
        DaxfsException => Failed,
        IOException or UnauthorizedAccessException or NotSupportedException => Failed,
        _ => null,
    };

    private static string MessageOf(Exception e) => e switch
    {
        FileNotFoundException f when f.Message.Length > 0 => f.Message,
        ArgumentException a => a.Message.Replace(" (Parameter '" + a.ParamName + "')", "", StringComparison.Ordinal),
        _ => e.Message,
    };

    internal static int Run(string[] args)
    {
        if (args.Length == 0 || args[0] is "-h" or "--help" or "help")
        {
            if (args.Length > 1 && Verbs.Find(args[1..]) is { } v)
            {
                Console.Out.Write(v.Verb.Help());
                return Ok;
            }
            Console.Out.Write(Verbs.Overview());
            return args.Length == 0 ? Usage : Ok;
        }
        if (args[0] == "--version")
        {
            // The package version (the build's source revision, after a '+', is left out).
            string version = typeof(Store).Assembly.GetCustomAttributes(typeof(System.Reflection.AssemblyInformationalVersionAttribute), false)
                .OfType<System.Reflection.AssemblyInformationalVersionAttribute>().FirstOrDefault()?.InformationalVersion.Split('+')[0]
                ?? typeof(Store).Assembly.GetName().Version?.ToString() ?? "unknown";
            Console.Out.WriteLine($"daxfs {version}");
            return Ok;
        }
        var found = Verbs.Find(args) ?? throw new UsageException($"unknown command '{string.Join(' ', args.TakeWhile(a => !a.StartsWith('-')).Take(2))}'");
        var rest = args[found.Words..];
        if (rest.Contains("--help") || rest.Contains("-h"))
        {
            Console.Out.Write(found.Verb.Help());
            return Ok;
        }
        var parsed = Args.Parse(rest, found.Verb.AllOptions, found.Verb.Name);
        if (parsed.Positional.Count < found.Verb.MinArgs || parsed.Positional.Count > found.Verb.MaxArgs)
            throw new UsageException($"'{found.Verb.Name}' takes {Count(found.Verb)}; usage: daxfs {found.Verb.Usage}");
        return found.Verb.Run(new Context(parsed));
    }

    private static string Count(Verb v) => v.MinArgs == v.MaxArgs
        ? $"{v.MinArgs} argument{(v.MinArgs == 1 ? "" : "s")}"
        : $"{v.MinArgs} to {v.MaxArgs} arguments";
}

/// <summary>What a verb's body gets: its arguments and helpers to open the region.</summary>
internal sealed class Context(Args args)
{
    public Args Args { get; } = args;

    public bool Json => Args.Flag("--json");

    public string RegionPath => Args.Value("--region") ?? Environment.GetEnvironmentVariable("DAXFS_REGION")
        ?? throw new UsageException("no region given: pass -r PATH or set DAXFS_REGION");

    public string BranchName => Args.Value("--branch") ?? "main";

    public Store Open()
    {
        string path = RegionPath;
        if (!File.Exists(path) && new FileInfo(path).LinkTarget is null) // (a link, dangling or not, is refused by the open, naming it)
            throw new FileNotFoundException($"{path}: region not found (create one with 'daxfs mkfs')", path);
        var store = Store.Open(path);
        foreach (var t in store.Recovery.TruncatedLogs)
            Console.Error.WriteLine($"daxfs: note: recovered branch '{t}': its log's torn tail was cut back");
        return store;
    }

    /// <summary>The branch named by -b, or with --at the version or tag it names (read-only).</summary>
    public Branch OpenBranch(Store store)
    {
        if (Args.Value("--at") is { } at)
        {
            if (Args.Value("--branch") is not null)
                throw new UsageException("--at and -b exclude each other: --at names a version of main");
            return Resolve(store, at, "--at");
        }
        return store.GetBranch(BranchName);
    }

    /// <summary>The branch, version or tag <paramref name="reference"/> names; a version that does not exist is a usage error.</summary>
    public static Branch Resolve(Store store, string reference, string option)
    {
        try { return store.Resolve(reference); }
        catch (ArgumentOutOfRangeException e) { throw new UsageException($"{option} {reference}: {e.Message.Split(" (Parameter")[0]}"); }
    }
}
