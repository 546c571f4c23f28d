using System.CommandLine;

namespace Daxfs.Branching.Cli;

/// <summary>The <c>daxfs</c> tool: every store operation from a shell.</summary>
public static class Program
{
    /// <summary>Exit codes: 0 success, 1 the operation failed, 2 usage error, 3 the region is corrupt.</summary>
    public const int Ok = 0, Failed = 1, Usage = 2, Corrupt = 3;

    /// <summary>Entry point.</summary>
    public static int Main(string[] args)
    {
        Timing.Mark("entering Main");
        try
        {
            return Guarded(args);
        }
        finally
        {
            Timing.Report();
        }
    }

    private static int Guarded(string[] args)
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

    internal static string MessageOf(Exception e) => e switch
    {
        FileNotFoundException f when f.Message.Length > 0 => f.Message,
        ArgumentException a => a.Message.Replace(" (Parameter '" + a.ParamName + "')", "", StringComparison.Ordinal),
        _ => e.Message,
    };

    internal static int Run(string[] args)
    {
        if (args.Length == 0)
        {
            Console.Out.Write(Commands.Overview());
            return Usage;
        }
        if (args[0] == "help")
        {
            // 'daxfs help branch create' is 'daxfs branch create --help'; a topic that names no command is an error.
            var topic = args[1..];
            bool known = topic.Length == 0 || topic[0] == "completion" && topic.Length == 1
                || Verbs.All.Any(v => v.Name == string.Join(' ', topic)) || topic.Length == 1 && Verbs.All.Any(v => v.Name.StartsWith(topic[0] + " ", StringComparison.Ordinal));
            if (!known)
                throw new UsageException($"help: no command '{string.Join(' ', topic)}' (daxfs --help lists them)");
            args = [.. topic, "--help"];
        }
        args = GlobalOptionsAfterVerb(args);
        args = RecursiveRm(args);
        Opt.t_literalArguments = args.Contains("--");
        var parsed = Commands.For(args).Parse(args, Commands.Parsing);
        Timing.Mark("building the command tree and parsing the command line");
        if (parsed.Errors.Count > 0 && parsed.Action is not { ClearsParseErrors: true })
        {
            var group = parsed.CommandResult.Command;
            if (group.Subcommands.Count > 0 && group is not RootCommand && group.Action is null)
                throw new UsageException($"'{group.Name}' needs a subcommand: {string.Join(", ", group.Subcommands.Select(s => s.Name))}");
            string verb = Commands.Words(group);
            // Words the parser could not place, said in the tool's words; the parser's other errors as it gives them.
            var messages = parsed.UnmatchedTokens.Select(t => group is RootCommand ? $"unknown command '{t}'"
                    : t.StartsWith('-') && t.Length > 1 ? $"unknown option '{t}' for '{verb}'"
                    : $"unexpected argument '{t}' for '{verb}'")
                .Concat(parsed.Errors.Select(e => e.Message).Where(m => !m.StartsWith("Unrecognized command or argument", StringComparison.Ordinal)
                    && !(group is RootCommand && m.StartsWith("Required command", StringComparison.Ordinal))))
                .Distinct().OrderBy(m => m.StartsWith("option ", StringComparison.Ordinal) || m.StartsWith("unknown option", StringComparison.Ordinal) ? 0 : 1).ToList();
            if (messages.Count == 0)
                messages.Add(group is RootCommand ? "no command given" : parsed.Errors[0].Message);
            throw new UsageException(string.Join("; ", messages) + (verb.Length > 0 && !messages[0].Contains($"'{verb}'", StringComparison.Ordinal) ? $" (in 'daxfs {verb}')" : ""));
        }
        return parsed.Invoke(new InvocationConfiguration { EnableDefaultExceptionHandler = false });
    }

    /// <summary>
    /// <c>daxfs -r REGION ls /</c> as <c>daxfs ls / -r REGION</c>: the options every verb shares (-r/--region, -b/--branch,
    /// --json) may come before the verb too, and are moved after it.
    /// </summary>
    internal static string[] GlobalOptionsAfterVerb(string[] args)
    {
        var moved = new List<string>();
        int i = 0;
        while (i < args.Length)
        {
            string a = args[i];
            if (a is "-r" or "--region" or "-b" or "--branch" && i + 1 < args.Length)
            {
                moved.Add(a);
                moved.Add(args[i + 1]);
                i += 2;
            }
            else if (a == "--json" || a.StartsWith("--region=", StringComparison.Ordinal) || a.StartsWith("--branch=", StringComparison.Ordinal))
            {
                moved.Add(a);
                i++;
            }
            else
            {
                break;
            }
        }
        return moved.Count == 0 || i == args.Length ? args : [.. args[i..], .. moved];
    }

    /// <summary>
    /// The rule for <c>rm</c>: as in coreutils, <c>-r</c> means recursive when it comes before the path; after the
    /// path it names the region, as it does for every verb. (<c>-R</c> is recursive anywhere, <c>--region</c> is the region anywhere.)
    /// </summary>
    internal static string[] RecursiveRm(string[] args)
    {
        if (args.Length == 0 || args[0] != "rm")
            return args;
        var result = (string[])args.Clone();
        for (int i = 1; i < result.Length; i++)
        {
            string a = result[i];
            if (a == "--")
                break;
            if (a == "-r" || a.Length > 2 && a[0] == '-' && a[1] != '-' && a[1..].All(ch => ch is 'r' or 'R' or 'f'))
            {
                // -r, and bundles of -r, -R (and -f, which rm here does not take: nothing asks before removing)
                if (a.Contains('f'))
                    throw new UsageException($"rm takes no -f ('{a}'): it never asks before removing; use -r or -R for a tree");
                result[i] = "--recursive";
            }
            else if (a is "-b" or "--branch" or "--region")
                i++; // its value
            else if (!a.StartsWith('-'))
                break; // the path: a -r after it is the region
        }
        return result;
    }
}

/// <summary>What a verb's body gets: the parsed command line, read through the options' own objects, and helpers to open the region.</summary>
internal sealed class Context(ParseResult parsed)
{
    /// <summary>The value of an option of this verb (its default when not given).</summary>
    public T Get<T>(Option<T> option) => parsed.GetValue(option)!;

    /// <summary>The value of an argument of this verb.</summary>
    public T Get<T>(Argument<T> argument) => parsed.GetValue(argument)!;

    /// <summary>True when the option was given on the command line.</summary>
    public bool Given(Option option) => parsed.GetResult(option) is { Implicit: false };

    public bool Json => parsed.GetValue(Opt.Json);

    public string RegionPath => Get(Opt.Region) ?? Environment.GetEnvironmentVariable("DAXFS_REGION")
        ?? throw new UsageException("no region given: pass -r PATH or set DAXFS_REGION");

    public string BranchName => Get(Opt.Branch) ?? "main";

    public Store Open()
    {
        string path = RegionPath;
        if (!File.Exists(path) && new FileInfo(path).LinkTarget is null) // (a link, dangling or not, is refused by the open, naming it)
            throw new FileNotFoundException($"{path}: region not found (create one with 'daxfs mkfs')", path);
        var store = Store.Open(path);
        Timing.Mark("opened the region");
        foreach (var t in store.Recovery.TruncatedLogs)
            Console.Error.WriteLine($"daxfs: note: recovered branch '{t}': its log's torn tail was cut back");
        if (store.Recovery.SpaceNotRebuilt is { } why && !Json)
            Console.Error.WriteLine($"daxfs: note: the region is damaged, so free space was not rebuilt ({why}); run daxfs verify, then daxfs repair");
        return store;
    }

    /// <summary>The branch named by -b, or with --at the version or tag it names (read-only).</summary>
    public Branch OpenBranch(Store store)
    {
        if (Get(Opt.At) is { } at)
        {
            if (Get(Opt.Branch) is not null)
                throw new UsageException("--at and -b exclude each other: --at names a version of main");
            return Resolve(store, at, "--at");
        }
        return store.GetBranch(BranchName);
    }

    /// <summary>The branch, version or tag <paramref name="reference"/> names; a version that does not exist is a usage error.</summary>
    public static Branch Resolve(Store store, string reference, string option)
    {
        try { return store.Resolve(reference); }
        catch (ArgumentOutOfRangeException e) { throw new DaxfsException($"{option} {reference}: {e.Message.Split(" (Parameter")[0]}"); } // does not exist: exit 1
    }
}

/// <summary>
/// With DAXFS_TIMING=1 in the environment, says on standard error where a command's time went after the runtime
/// started it: building the command tree and parsing, opening the region, and the rest (the command, printing,
/// closing). The runtime's own start is the process's wall time minus these.
/// </summary>
internal static class Timing
{
    private static readonly bool s_on = Environment.GetEnvironmentVariable("DAXFS_TIMING") == "1";
    private static readonly List<(string What, double Ms)> s_marks = [];
    private static long s_last = System.Diagnostics.Stopwatch.GetTimestamp(); // the class is first touched as Main begins

    public static void Mark(string what)
    {
        if (!s_on) return;
        long now = System.Diagnostics.Stopwatch.GetTimestamp();
        s_marks.Add((what, System.Diagnostics.Stopwatch.GetElapsedTime(s_last, now).TotalMilliseconds));
        s_last = now;
    }

    public static void Report()
    {
        if (!s_on) return;
        Mark("the command itself, printing and closing");
        foreach (var (what, ms) in s_marks)
            Console.Error.WriteLine($"daxfs: timing: {ms,7:0.0} ms  {what}");
        Console.Error.WriteLine($"daxfs: timing: {s_marks.Sum(m => m.Ms),7:0.0} ms  in all, from Main on");
    }
}
