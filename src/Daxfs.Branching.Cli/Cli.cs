using System.CommandLine;
using System.CommandLine.Completions;
using System.CommandLine.Help;
using System.CommandLine.Invocation;
using System.CommandLine.Parsing;
using System.Globalization;
using System.Text;

namespace Daxfs.Branching.Cli;

/// <summary>Bad command-line input: exit code 2.</summary>
internal sealed class UsageException(string message) : Exception(message);

/// <summary>
/// The options more than one verb takes, declared once: each verb adds the same object to its command, and its body
/// reads the value through that object (<see cref="Context.Get{T}(Option{T})"/>).
/// </summary>
internal static class Opt
{
    public static readonly Option<string?> Region = NotAnOption(new("--region", "-r") { Description = "the region file (default: $DAXFS_REGION)", HelpName = "PATH" });

    public static readonly Option<string?> Branch = WithBranchNames(NotAnOption(new("--branch", "-b") { Description = "the branch to act on (default: main)", HelpName = "NAME" }));

    public static readonly Option<bool> Json = new("--json") { Description = "print JSON for scripts (errors too, as {\"error\", \"code\"} on standard error)" };

    public static readonly Option<string?> At = NotAnOption(new("--at") { Description = "read main as of a version (number) or tag, instead of a branch", HelpName = "REF" });

    /// <summary>A size option: 4096, 64K, 64M, 4GiB, 1.5G (see <see cref="ParseSize"/>).</summary>
    public static Option<long?> Size(string name, string description) => new(name)
    {
        Description = description,
        HelpName = "SIZE",
        CustomParser = r => Parsed(r, () => ParseSize(r.Tokens[0].Value, name)),
    };

    /// <summary>A non-negative whole number.</summary>
    public static Option<long?> Count(string name, string description, string helpName = "N", string? alias = null)
    {
        var o = alias is null ? new Option<long?>(name) : new Option<long?>(name, alias);
        o.Description = description;
        o.HelpName = helpName;
        o.CustomParser = r => Parsed(r, () => long.TryParse(r.Tokens[0].Value, NumberStyles.None, CultureInfo.InvariantCulture, out long n) ? n
            : r.Tokens[0].Value.Length > 0 && r.Tokens[0].Value.All(char.IsAsciiDigit) ? throw new UsageException($"{name}: '{r.Tokens[0].Value}' is too large")
            : throw new UsageException($"{name}: '{r.Tokens[0].Value}' is not a non-negative whole number"));
        return o;
    }

    public static Option<bool> Flag(string name, string description, string? alias = null)
        => alias is null ? new(name) { Description = description } : new(name, alias) { Description = description };

    public static Option<string?> Text(string name, string helpName, string description, string? alias = null)
        => NotAnOption(alias is null ? new(name) { Description = description, HelpName = helpName } : new(name, alias) { Description = description, HelpName = helpName });

    /// <summary>Refuses a value that looks like an option (<c>rm /x -r -b b</c>: -r is missing its value, it is not "-b").</summary>
    private static Option<string?> NotAnOption(Option<string?> o)
    {
        o.Validators.Add(r =>
        {
            if (r.Tokens.Count > 0 && r.Tokens[^1].Value is { Length: > 1 } v && v[0] == '-' && !char.IsAsciiDigit(v[1]))
                r.AddError($"option {o.Name} needs a value ({o.HelpName}), not the option '{v}' (a path that starts with '-' is written ./{v})");
            else if (r.Tokens.Count > 0 && r.Tokens[^1].Value.Length == 0)
                r.AddError($"option {o.Name} needs a value ({o.HelpName}), not an empty one");
        });
        return o;
    }

    /// <summary>A positional argument; a word that looks like an option is refused (after <c>--</c> it is taken as it is).</summary>
    public static Argument<string> Arg(string name, string description, bool optional = false)
    {
        var a = new Argument<string>(name) { Description = description, Arity = optional ? ArgumentArity.ZeroOrOne : ArgumentArity.ExactlyOne };
        a.Validators.Add(NoOptionLookalikes);
        return a;
    }

    /// <summary>Any number of positional arguments.</summary>
    public static Argument<string[]> Args(string name, string description)
    {
        var a = new Argument<string[]>(name) { Description = description, Arity = ArgumentArity.ZeroOrMore };
        a.Validators.Add(NoOptionLookalikes);
        return a;
    }

    /// <summary>Set while a command line that holds <c>--</c> is parsed: every word after it is an argument, whatever it looks like.</summary>
    [ThreadStatic] internal static bool t_literalArguments;

    private static void NoOptionLookalikes(ArgumentResult r)
    {
        if (t_literalArguments)
            return;
        foreach (var t in r.Tokens)
            if (t.Value.Length > 1 && t.Value[0] == '-' && !char.IsAsciiDigit(t.Value[1]))
                r.AddError($"unknown option '{t.Value}' (a path that starts with '-' goes after '--')");
    }

    private static T? Parsed<T>(ArgumentResult r, Func<T> parse) where T : struct
    {
        try { return parse(); }
        catch (UsageException e) { r.AddError(e.Message); return null; }
    }

    /// <summary>Completes -b with the region's branch names (the region from -r or $DAXFS_REGION); nothing if it cannot be read.</summary>
    private static Option<string?> WithBranchNames(Option<string?> o)
    {
        o.CompletionSources.Add(ctx =>
        {
            string? path = ctx.ParseResult.GetValue(Region) ?? Environment.GetEnvironmentVariable("DAXFS_REGION");
            if (path is null || !File.Exists(path))
                return [];
            try
            {
                using var store = Store.OpenSnapshot(path, TimeSpan.FromSeconds(1));
                return store.ListBranches().Where(b => b.Status != BranchStatus.Invalidated).Select(b => new CompletionItem(b.Name)).ToArray();
            }
            catch (Exception e) when (e is DaxfsException or IOException or UnauthorizedAccessException)
            {
                return [];
            }
        });
        return o;
    }

    /// <summary>Parses sizes like 4096, 64K, 64M, 4GiB, 1.5G (K, M, G, T are powers of 1024; a B, iB or b suffix is allowed).</summary>
    public static long ParseSize(string text, string what)
    {
        string s = text.Trim();
        int i = 0;
        while (i < s.Length && (char.IsAsciiDigit(s[i]) || s[i] == '.')) i++;
        if (i == 0)
            throw new UsageException($"{what}: '{text}' is not a size (examples: 4096, 64M, 4GiB)");
        // decimal, not double: every byte count up to long.MaxValue is exact (a double rounds above 2^53).
        if (!decimal.TryParse(s[..i], NumberStyles.AllowDecimalPoint, CultureInfo.InvariantCulture, out decimal number))
            throw new UsageException($"{what}: '{text}' is not a size (examples: 4096, 64M, 4GiB)");
        string unit = s[i..].Trim().ToUpperInvariant();
        long scale = unit switch
        {
            "" or "B" => 1,
            "K" or "KB" or "KIB" => 1L << 10,
            "M" or "MB" or "MIB" => 1L << 20,
            "G" or "GB" or "GIB" => 1L << 30,
            "T" or "TB" or "TIB" => 1L << 40,
            _ => throw new UsageException($"{what}: unknown unit '{s[i..]}' in '{text}' (use K, M, G or T)"),
        };
        if (number > long.MaxValue / scale)
            throw new UsageException($"{what}: '{text}' is too large");
        decimal bytes = number * scale;
        if (bytes != decimal.Floor(bytes))
            throw new UsageException($"{what}: '{text}' is not a whole number of bytes");
        return (long)bytes;
    }
}

/// <summary>A verb of the tool: its words, what it does, an example, its own options and arguments, and its body.</summary>
internal sealed record Verb(string Name, string Summary, string Example, Symbol[] Symbols, Func<Context, int> Run,
    bool UsesRegion = true, bool UsesBranch = false, bool HasJson = false, bool HasAt = false)
{
    /// <summary>Its options: its own, then the shared ones it takes.</summary>
    public IEnumerable<Option> Options => Symbols.OfType<Option>()
        .Concat(UsesRegion ? [Opt.Region] : []).Concat(UsesBranch ? [Opt.Branch] : []).Concat(HasAt ? [Opt.At] : []).Concat(HasJson ? [Opt.Json] : []);

    public IEnumerable<Argument> Arguments => Symbols.OfType<Argument>();
}

/// <summary>The command tree built from <see cref="Verbs.All"/>, its help text, and the shell completion scripts.</summary>
internal static class Commands
{
    private static readonly Dictionary<Command, Verb> s_verbs = [];

    /// <summary>
    /// The command tree for <paramref name="args"/>: when its first word names a verb (or a group), only that one is
    /// built (a command costs its parse, not the whole tool's); otherwise every verb, so errors, help and completion
    /// see them all.
    /// </summary>
    public static RootCommand For(string[] args)
    {
        string? first = args.Length > 0 && !args[0].StartsWith('[') ? args[0] : null;
        return first is not null && (first == "completion" || Verbs.All.Any(v => v.Name.Split(' ')[0] == first)) ? Build(first) : Build(null);
    }

    private static RootCommand Build(string? only)
    {
        var root = new RootCommand("daxfs: a speculative-branching, versioned memory store.");
        foreach (var o in root.Options)
        {
            if (o is HelpOption help)
            {
                help.Action = new HelpText();
                foreach (var alias in help.Aliases.Where(a => a is not "-h").ToList())
                    help.Aliases.Remove(alias); // -h and --help only: no /?, /h or -? (nor in completions)
            }
            if (o is VersionOption version) version.Action = new VersionText();
        }
        var groups = new Dictionary<string, Command>(StringComparer.Ordinal);
        foreach (var verb in Verbs.All)
        {
            string[] words = verb.Name.Split(' ');
            if (only is not null && words[0] != only)
                continue;
            Command parent = root;
            if (words.Length == 2)
            {
                if (!groups.TryGetValue(words[0], out var group))
                {
                    group = new Command(words[0], $"Commands on {(words[0] == "branch" ? "branches" : words[0] + "s")}: {string.Join(", ", Verbs.All.Where(v => v.Name.StartsWith(words[0] + " ", StringComparison.Ordinal)).Select(v => v.Name.Split(' ')[1]))}.");
                    groups[words[0]] = group;
                    root.Subcommands.Add(group);
                }
                parent = group;
            }
            var cmd = new Command(words[^1], verb.Summary);
            foreach (var o in verb.Options) cmd.Options.Add(o);
            foreach (var a in verb.Arguments) cmd.Arguments.Add(a);
            cmd.SetAction(parsed => verb.Run(new Context(parsed)));
            s_verbs[cmd] = verb;
            parent.Subcommands.Add(cmd);
        }
        if (only is null or "completion")
            root.Subcommands.Add(CompletionCommand());
        return root;
    }

    /// <summary>How the tool is configured to parse: no response files (a word that starts with '@' is a version, like @3).</summary>
    public static ParserConfiguration Parsing { get; } = new() { ResponseFileTokenReplacer = null };

    // ------------------------------------------------------------------ help

    private sealed class HelpText : SynchronousCommandLineAction
    {
        public override bool ClearsParseErrors => true;

        public override int Invoke(ParseResult parseResult)
        {
            Console.Out.Write(Help(parseResult.CommandResult.Command));
            return Program.Ok;
        }
    }

    private sealed class VersionText : SynchronousCommandLineAction
    {
        public override bool ClearsParseErrors => true;

        public override int Invoke(ParseResult parseResult)
        {
            Console.Out.WriteLine($"daxfs {Version}");
            return Program.Ok;
        }
    }

    /// <summary>The package version (the build's source revision, after a '+', is left out).</summary>
    public static string Version => typeof(Store).Assembly.GetCustomAttributes(typeof(System.Reflection.AssemblyInformationalVersionAttribute), false)
        .OfType<System.Reflection.AssemblyInformationalVersionAttribute>().FirstOrDefault()?.InformationalVersion.Split('+')[0]
        ?? typeof(Store).Assembly.GetName().Version?.ToString() ?? "unknown";

    /// <summary>The words that name <paramref name="cmd"/> after <c>daxfs</c>.</summary>
    public static string Words(Command cmd)
    {
        var words = new List<string>();
        for (Symbol? s = cmd; s is Command c and not RootCommand; s = c.Parents.FirstOrDefault())
            words.Insert(0, c.Name);
        return string.Join(' ', words);
    }

    /// <summary>A command's help: usage, what it does, arguments, options, and an example.</summary>
    public static string Help(Command cmd)
    {
        var sb = new StringBuilder();
        if (cmd is RootCommand)
            return Overview();
        string words = Words(cmd);
        if (!s_verbs.TryGetValue(cmd, out var verb))
        {
            // A group (branch): its sub-verbs.
            sb.Append("usage: daxfs ").Append(words).Append(" COMMAND [ARGS] [OPTIONS]\n\n").Append(cmd.Description).Append("\n\ncommands:\n");
            foreach (var sub in cmd.Subcommands)
                sb.Append("  ").Append(sub.Name.PadRight(12)).Append(FirstSentence(sub.Description)).Append('\n');
            sb.Append("\nRun 'daxfs ").Append(words).Append(" COMMAND --help' for a command's options and an example.\n");
            return sb.ToString();
        }
        sb.Append("usage: daxfs ").Append(words);
        foreach (var a in cmd.Arguments)
            sb.Append(' ').Append(a.Arity.MinimumNumberOfValues == 0 ? $"[{a.Name}{(a.Arity.MaximumNumberOfValues > 1 ? "..." : "")}]" : a.Name);
        sb.Append(" [OPTIONS]\n\n").Append(cmd.Description).Append("\n\n");
        if (cmd.Arguments.Count > 0)
        {
            sb.Append("arguments:\n");
            foreach (var a in cmd.Arguments)
                Row(sb, a.Name, a.Description ?? "");
            sb.Append('\n');
        }
        sb.Append("options:\n");
        foreach (var o in cmd.Options)
        {
            var aliases = o.Aliases.OrderBy(x => x.Length).ToList();
            string left = (aliases.Count > 0 ? aliases[0] + ", " : "    ") + o.Name + (o.ValueType == typeof(bool) ? "" : " " + o.HelpName);
            Row(sb, left, o.Description ?? "");
        }
        Row(sb, "-h, --help", "show this help");
        sb.Append("\nexample:\n  ").Append(verb.Example.Replace("\n", "\n  ", StringComparison.Ordinal)).Append('\n');
        return sb.ToString();
    }

    private static void Row(StringBuilder sb, string left, string text)
    {
        const int width = 30;
        sb.Append("  ").Append(left.PadRight(width - 2));
        if (left.Length > width - 3)
            sb.Append('\n').Append(' ', width);
        sb.Append(text.Replace("\n", "\n" + new string(' ', width), StringComparison.Ordinal)).Append('\n');
    }

    /// <summary>The first sentence of a description, whole (up to its first full stop that ends a line or is followed by a space).</summary>
    private static string FirstSentence(string? text)
    {
        string t = (text ?? "").Replace('\n', ' ');
        int end = t.IndexOf(". ", StringComparison.Ordinal);
        return end < 0 ? t : t[..(end + 1)];
    }

    /// <summary>The tool's overview: every command with the first sentence of what it does.</summary>
    public static string Overview()
    {
        var sb = new StringBuilder();
        sb.Append("daxfs: a speculative-branching, versioned memory store.\n\n");
        sb.Append("usage: daxfs COMMAND [ARGS] [-r REGION] [-b BRANCH] [--json]\n\ncommands:\n");
        foreach (var verb in Verbs.All)
            sb.Append("  ").Append(verb.Name.PadRight(16)).Append(FirstSentence(verb.Summary)).Append('\n');
        sb.Append("  ").Append("completion".PadRight(16)).Append(FirstSentence(CompletionSummary)).Append('\n');
        sb.Append("\noptions:\n  -h, --help      show help (also after any command: daxfs branch create --help)\n  --version       show the version\n");
        sb.Append("\nThe region defaults to $DAXFS_REGION. Sizes accept 4096, 64M, 4GiB.\n");
        sb.Append("Exit codes: 0 ok, 1 the operation failed, 2 usage error, 3 the region is corrupt.\n");
        sb.Append("Run 'daxfs COMMAND --help' for a command's options and an example; 'daxfs completion bash' for tab completion.\n");
        return sb.ToString();
    }

    // ------------------------------------------------------------------ completion

    private const string CompletionSummary = "Prints a tab-completion script for bash or zsh. Load it with: source <(daxfs completion bash)";

    private static Command CompletionCommand()
    {
        var shell = new Argument<string>("SHELL") { Description = "bash or zsh" };
        shell.AcceptOnlyFromAmong("bash", "zsh");
        var cmd = new Command("completion", CompletionSummary) { shell };
        cmd.SetAction(parsed =>
        {
            Console.Out.Write(parsed.GetValue(shell) == "zsh" ? ZshScript : BashScript);
            return Program.Ok;
        });
        s_verbs[cmd] = new Verb("completion", cmd.Description!, "source <(daxfs completion bash)\ndaxfs completion zsh > \"${fpath[1]}/_daxfs\"", [shell], _ => Program.Ok, UsesRegion: false);
        return cmd;
    }

    // Both scripts ask the tool itself what may come next, through the parser's [suggest:POSITION] directive, so they
    // know every verb, option and (for -b) branch name of the tool they were printed by.
    private const string BashScript = """
        # daxfs tab completion for bash: source <(daxfs completion bash)
        _daxfs_complete() {
            local IFS=$'\n'
            COMPREPLY=( $(compgen -W "$(daxfs "[suggest:${COMP_POINT}]" "${COMP_LINE}" 2>/dev/null)" -- "${COMP_WORDS[COMP_CWORD]}") )
        }
        complete -o default -F _daxfs_complete daxfs

        """;

    private const string ZshScript = """
        #compdef daxfs
        # daxfs tab completion for zsh: daxfs completion zsh > "${fpath[1]}/_daxfs" (or source <(daxfs completion zsh))
        _daxfs() {
            local -a candidates
            candidates=("${(@f)$(daxfs "[suggest:${#${BUFFER[1,CURSOR]}}]" "$BUFFER" 2>/dev/null)}")
            compadd -- $candidates
        }
        if (( $+functions[compdef] )); then compdef _daxfs daxfs; fi

        """;
}
