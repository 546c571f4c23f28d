using System.Diagnostics;
using System.Text;
using Spectre.Console;

namespace Daxfs.Branching.Cli;

/// <summary>
/// The main job: a workspace forked three ways, three agents each try a fix, the first whose check passes
/// is committed, the others are shown invalidated, then the diff and the log.
/// </summary>
internal static class Demo
{
    private const string Buggy = "def add(a, b):\n    return a - b\n";

    private static readonly (string Agent, string Fix)[] s_agents =
    [
        ("agent-a", "def add(a, b):\n    return a * b\n"),
        ("agent-b", "def add(a, b):\n    return a + b\n"),
        ("agent-c", "def add(a, b):\n    return b - a\n"),
    ];

    public static int Run(Context c)
    {
        string region = c.Get(Opt.Region) ?? Store.DefaultPath($"daxfs-demo-{Environment.ProcessId}");
        bool keep = c.Get(Verbs.Demo.Keep);
        bool force = c.Get(Verbs.Demo.Force);
        // The demo builds its own region and removes it afterwards: it never touches a file already there unless told.
        if (!force && (File.Exists(region) || new FileInfo(region).LinkTarget is not null || Directory.Exists(region)))
            throw new IOException($"{region}: a file is already there; the demo builds a region of its own and removes it afterwards, so give another --region, or --force to replace that file");
        bool created = false;
        var o = Output.Out;
        try
        {
            o.Write(new Rule("[bold]daxfs demo[/]: fork a workspace three ways, keep the agent that passes"));
            var image = new BaseImageBuilder()
                .AddFile("README.md", "# calculator\nA tiny project whose add() is broken.\n"u8)
                .AddFile("src/calc.py", Encoding.UTF8.GetBytes(Buggy))
                .AddFile("tests/test_calc.py", "from src.calc import add\nassert add(2, 3) == 5\nassert add(-1, 1) == 0\n"u8)
                .AddFile("data/weights.bin", new byte[4 << 20]);
            var sw = Stopwatch.StartNew();
            using var store = Store.Create(region, image, new StoreOptions { Capacity = 128L << 20, Overwrite = force });
            created = true;
            o.MarkupLine($"1. built region [blue]{Output.Escape(region)}[/] with a {store.Usage.BaseInodes}-entry workspace ({Output.Bytes(store.Usage.BaseImageBytes)}) in {sw.Elapsed.TotalMilliseconds:0.0} ms");
            o.MarkupLine($"   main: src/calc.py says [yellow]{Output.Escape(Text(store.Main, "src/calc.py").Split('\n')[1].Trim())}[/]; the test expects add(2, 3) == 5");

            var forkTimes = new List<double>();
            var branches = new List<Branch>();
            foreach (var (agent, _) in s_agents)
            {
                long t0 = Stopwatch.GetTimestamp();
                branches.Add(store.Main.Fork(agent));
                forkTimes.Add(Stopwatch.GetElapsedTime(t0).TotalMicroseconds);
            }
            o.MarkupLine($"2. forked {branches.Count} agent branches: {string.Join(", ", forkTimes.Select(t => $"{t:0.0} µs"))} (the first includes JIT compilation);");
            o.MarkupLine("   no data was copied: the 4 MiB of weights stay shared");

            for (int i = 0; i < branches.Count; i++)
            {
                branches[i].WriteAllBytes("src/calc.py", Encoding.UTF8.GetBytes(s_agents[i].Fix));
                branches[i].Append("README.md", Encoding.UTF8.GetBytes($"Fixed by {s_agents[i].Agent}.\n"));
            }
            o.MarkupLine("3. each agent edited src/calc.py its own way:");
            Branch? winner = null;
            foreach (var b in branches)
            {
                string line = Text(b, "src/calc.py").Split('\n')[1].Trim();
                bool pass = Check(b);
                o.MarkupLine($"   {b.Name}: [yellow]{Output.Escape(line)}[/] -> test {(pass ? "[green]passes[/]" : "[red]fails[/]")}");
                winner ??= pass ? b : null;
            }
            if (winner is null)
                throw new InvalidOperationException("no agent passed (the demo is broken)");

            var diff = winner.Diff();
            o.MarkupLine($"4. what {winner.Name} changed against main:");
            foreach (var ch in diff)
                o.MarkupLine($"   {ch.Kind,-8} {Output.Escape(ch.Path)}{(ch.Ranges.Count > 0 ? Output.Escape("  bytes " + string.Join(", ", ch.Ranges.Select(r => $"[{r.Offset}, {r.Offset + r.Length})"))) : "")}");

            long c0 = Stopwatch.GetTimestamp();
            var version = winner.Commit($"{winner.Name}: fix add()");
            double commitUs = Stopwatch.GetElapsedTime(c0).TotalMicroseconds;
            o.MarkupLine($"5. committed {winner.Name} as version {version.Sequence} in {commitUs:0.0} µs (a first call, JIT included; no payload bytes moved)");
            o.MarkupLine($"   main now says [green]{Output.Escape(Text(store.Main, "src/calc.py").Split('\n')[1].Trim())}[/]");
            foreach (var b in branches.Where(b => b != winner))
            {
                try
                {
                    b.Stat("src/calc.py");
                    o.MarkupLine($"   [red]{b.Name} is still usable (unexpected)[/]");
                }
                catch (BranchInvalidatedException e)
                {
                    o.MarkupLine($"   {b.Name}: [red]invalidated[/] ({Output.Escape(e.Message)})");
                }
            }

            o.MarkupLine("6. the log of main:");
            var t = Output.Table("version", "source", "records", "size", "message");
            foreach (var v in store.Versions)
                t.AddRow(v.Sequence.ToString(System.Globalization.CultureInfo.InvariantCulture), v.SourceBranch, v.Records.ToString(System.Globalization.CultureInfo.InvariantCulture), Output.Bytes(v.Bytes), Output.Escape(v.Message));
            o.Write(t);
            var u = store.Usage;
            o.MarkupLine($"   arena: {Output.Bytes(u.ArenaBytes - u.ArenaFreeBytes)} in use after the losers' space came back");
        }
        finally
        {
            if (created && !keep && File.Exists(region))
                File.Delete(region);
        }
        o.MarkupLine(keep ? $"kept the region: try [blue]daxfs log -r {Output.Escape(region)}[/]" : "removed the region (pass --keep to keep it)");
        return Program.Ok;
    }

    private static string Text(Branch b, string path) => Encoding.UTF8.GetString(b.ReadAllBytes(path));

    /// <summary>The agents' "test run": evaluates add(2, 3) and add(-1, 1) from the file's single return expression.</summary>
    private static bool Check(Branch b)
    {
        string expr = Text(b, "src/calc.py").Split('\n')[1].Trim().Replace("return ", "", StringComparison.Ordinal);
        static int Eval(string e, int a, int b) => e switch
        {
            "a + b" or "b + a" => a + b,
            "a - b" => a - b,
            "b - a" => b - a,
            "a * b" or "b * a" => a * b,
            _ => int.MinValue,
        };
        return Eval(expr, 2, 3) == 5 && Eval(expr, -1, 1) == 0;
    }
}
