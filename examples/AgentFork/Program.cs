// AgentFork: a real source tree forked N ways; each candidate applies a different change and runs the
// project's check; the first candidate that passes is committed and the others are invalidated.
using System.Diagnostics;
using System.Text;
using Daxfs.Branching;

string workspace = Path.Combine(AppContext.BaseDirectory, "workspace");
if (!Directory.Exists(workspace))
    workspace = Path.Combine(Directory.GetCurrentDirectory(), "examples", "AgentFork", "workspace");
string region = Store.DefaultPath($"agentfork-{Environment.ProcessId}");

// Each candidate is a different edit of greet.sh.
var candidates = new (string Name, Func<string, string> Edit)[]
{
    ("agent-question", s => s.Replace("?\"", "??\"", StringComparison.Ordinal)),
    ("agent-period", s => s.Replace("?\"", ".\"", StringComparison.Ordinal)),
    ("agent-bang", s => s.Replace("?\"", "!\"", StringComparison.Ordinal)),
    ("agent-shout", s => s.Replace("Hello, ${name}?", "HELLO, ${name}!", StringComparison.Ordinal)),
};

using var store = Store.Create(region, BaseImageBuilder.FromDirectory(workspace), new StoreOptions { Capacity = 64L << 20, Overwrite = true });
try
{
    Console.WriteLine($"workspace {workspace}: {store.Usage.BaseInodes} entries in region {region}");
    store.Main.Fork("warm-up").Discard(); // leave JIT compilation out of the timings below

    var forks = new List<Branch>();
    var sw = Stopwatch.StartNew();
    foreach (var (name, _) in candidates)
        forks.Add(store.Main.Fork(name));
    double forkUs = sw.Elapsed.TotalMicroseconds;
    Console.WriteLine($"forked {forks.Count} candidates in {forkUs:0.0} µs ({forkUs / forks.Count:0.0} µs each)");

    Branch? winner = null;
    for (int i = 0; i < forks.Count && winner is null; i++)
    {
        var b = forks[i];
        string script = Encoding.UTF8.GetString(b.ReadAllBytes("greet.sh"));
        b.WriteAllBytes("greet.sh", Encoding.UTF8.GetBytes(candidates[i].Edit(script)));
        var (passed, output) = RunCheck(b);
        Console.WriteLine($"  {b.Name,-15} {(passed ? "PASS" : "fail")}: {output}");
        if (passed) winner = b;
    }
    if (winner is null)
    {
        Console.WriteLine("no candidate passed; aborting all");
        foreach (var b in forks) b.Abort();
        return 1;
    }

    sw.Restart();
    var version = winner.Commit($"{winner.Name} fixed the greeting");
    Console.WriteLine($"committed {winner.Name} as version {version.Sequence} in {sw.Elapsed.TotalMicroseconds:0.0} µs (the process's first commit: JIT compilation included)");
    foreach (var b in forks.Where(b => b != winner))
        Console.WriteLine($"  {b.Name,-15} live afterwards: {b.IsLive}");
    Console.WriteLine($"main's greet.sh now: {Encoding.UTF8.GetString(store.Main.ReadAllBytes("greet.sh")).Split('\n')[3]}");
    return 0;
}
finally
{
    File.Delete(region);
}

// The check runs the project's own test script on the candidate's tree, materialized in a temp directory.
static (bool Passed, string Output) RunCheck(Branch b)
{
    string dir = Path.Combine(Path.GetTempPath(), $"agentfork-{b.Name}-{Guid.NewGuid():N}");
    try
    {
        b.Export(dir);
        var psi = new ProcessStartInfo("bash", [Path.Combine(dir, "tests", "test.sh")]) { RedirectStandardOutput = true, RedirectStandardError = true };
        using var p = Process.Start(psi)!;
        string output = (p.StandardOutput.ReadToEnd() + p.StandardError.ReadToEnd()).Trim();
        p.WaitForExit();
        return (p.ExitCode == 0, output);
    }
    finally
    {
        Directory.Delete(dir, recursive: true);
    }
}
