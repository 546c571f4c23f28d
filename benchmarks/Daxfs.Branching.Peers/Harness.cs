using System.Diagnostics;
using System.Globalization;
using System.Text;
using System.Text.Json;

namespace Daxfs.Branching.Peers;

/// <summary>One measured figure: a scenario on one system, repeated.</summary>
internal sealed record Figure(string Scenario, string System, string Unit, List<double> Samples, string? Note = null)
{
    public double Median => Percentile(0.5);
    public double Min => Samples.Min();
    public double Max => Samples.Max();

    private double Percentile(double p)
    {
        var s = Samples.Order().ToList();
        double idx = p * (s.Count - 1);
        int lo = (int)Math.Floor(idx), hi = (int)Math.Ceiling(idx);
        return s[lo] + (s[hi] - s[lo]) * (idx - lo);
    }
}

/// <summary>A peer that could not run, and why.</summary>
internal sealed record Skipped(string Scenario, string System, string Reason);

internal sealed class Report
{
    public List<Figure> Figures { get; } = [];
    public List<Skipped> Skips { get; } = [];

    public void Add(Figure f)
    {
        Figures.Add(f);
        Console.WriteLine($"  {f.Scenario,-34} {f.System,-22} median {Fmt(f.Median, f.Unit),12}  min {Fmt(f.Min, f.Unit),12}  max {Fmt(f.Max, f.Unit),12}  (n={f.Samples.Count}){(f.Note is null ? "" : "  " + f.Note)}");
    }

    public void Skip(string scenario, string system, string reason)
    {
        Skips.Add(new Skipped(scenario, system, reason));
        Console.WriteLine($"  {scenario,-34} {system,-22} skipped: {reason}");
    }

    public static string Fmt(double v, string unit) => unit switch
    {
        "ms" when v < 1 => $"{v * 1000:0.0} µs",
        "ms" => $"{v:0.00} ms",
        "MiB/s" => $"{v:0} MiB/s",
        "MiB" => $"{v:0.0} MiB",
        _ => $"{v:0.###} {unit}",
    };

    /// <summary>The table for docs/performance.md: every figure with its spread, and ours/peer ratios per scenario.</summary>
    public string Markdown(string ours)
    {
        var sb = new StringBuilder();
        sb.AppendLine("| scenario | system | median | min | max | n | ours / this |");
        sb.AppendLine("|---|---|---:|---:|---:|---:|---:|");
        foreach (var g in Figures.GroupBy(f => f.Scenario))
        {
            var mine = g.FirstOrDefault(f => f.System.StartsWith(ours, StringComparison.Ordinal));
            foreach (var f in g)
            {
                string ratio = mine is null || ReferenceEquals(mine, f) || f.Median == 0 ? "" : $"{mine.Median / f.Median:0.####}";
                sb.AppendLine($"| {f.Scenario} | {f.System} | {Fmt(f.Median, f.Unit)} | {Fmt(f.Min, f.Unit)} | {Fmt(f.Max, f.Unit)} | {f.Samples.Count} | {ratio} |");
            }
        }
        foreach (var s in Skips)
            sb.AppendLine($"| {s.Scenario} | {s.System} | skipped: {s.Reason} | | | | |");
        return sb.ToString();
    }

    public void WriteJson(string path, string ours, Dictionary<string, string> machine)
    {
        var figures = Figures.Select(f =>
        {
            var mine = Figures.FirstOrDefault(x => x.Scenario == f.Scenario && x.System.StartsWith(ours, StringComparison.Ordinal));
            return new
            {
                scenario = f.Scenario, system = f.System, unit = f.Unit, median = f.Median, min = f.Min, max = f.Max, n = f.Samples.Count,
                ratioOursOverThis = mine is null || ReferenceEquals(mine, f) || f.Median == 0 ? (double?)null : mine.Median / f.Median,
                note = f.Note, samples = f.Samples,
            };
        });
        File.WriteAllText(path, JsonSerializer.Serialize(new { machine, figures, skipped = Skips }, new JsonSerializerOptions { WriteIndented = true }));
    }
}

/// <summary>A page-aligned buffer outside the managed heap.</summary>
internal sealed unsafe class AlignedBuffer(int length) : System.Buffers.MemoryManager<byte>
{
    private readonly byte* _pointer = (byte*)System.Runtime.InteropServices.NativeMemory.AlignedAlloc((nuint)length, 4096);

    public override Span<byte> GetSpan() => new(_pointer, length);

    public override System.Buffers.MemoryHandle Pin(int elementIndex = 0) => new(_pointer + elementIndex);

    public override void Unpin() { }

    protected override void Dispose(bool disposing) => System.Runtime.InteropServices.NativeMemory.AlignedFree(_pointer);
}

internal static class Sh
{
    /// <summary>Runs a command; throws with its output when it fails.</summary>
    public static string Run(string file, params string[] args) => Exec(file, args, null, $"{file} {string.Join(' ', args)}");

    /// <summary>Runs a program and returns what it wrote to standard error (dd's summary goes there).</summary>
    public static string RunErr(string file, params string[] args) => Capture(file, args, null, file).Err;

    /// <summary>Runs a bash script with errexit and pipefail, optionally in <paramref name="cwd"/>.</summary>
    public static string Bash(string script, string? cwd = null)
        => Exec("bash", ["-c", "set -euo pipefail\n" + script], cwd, $"bash: {script.Split('\n')[0]}…");

    private static string Exec(string file, string[] args, string? cwd, string what) => Capture(file, args, cwd, what).Out;

    private static (string Out, string Err) Capture(string file, string[] args, string? cwd, string what)
    {
        var psi = new ProcessStartInfo(file) { RedirectStandardOutput = true, RedirectStandardError = true, UseShellExecute = false };
        foreach (var a in args) psi.ArgumentList.Add(a);
        if (cwd is not null) psi.WorkingDirectory = cwd;
        psi.Environment["LC_ALL"] = "C"; // output parsed here (dd's summary, du, df) in one language and number format
        using var p = Process.Start(psi)!;
        var o = p.StandardOutput.ReadToEndAsync();
        var e = p.StandardError.ReadToEndAsync();
        p.WaitForExit();
        if (p.ExitCode != 0)
            throw new InvalidOperationException($"{what} failed ({p.ExitCode}): {e.Result.Trim()}");
        return (o.Result, e.Result);
    }

    public static bool Has(string command) => File.Exists($"/usr/bin/{command}") || File.Exists($"/usr/sbin/{command}") || File.Exists($"/bin/{command}") || File.Exists($"/sbin/{command}");

    public static double TimeMs(Action a)
    {
        long t0 = Stopwatch.GetTimestamp();
        a();
        return Stopwatch.GetElapsedTime(t0).TotalMilliseconds;
    }

    public static void DropCaches()
    {
        try { File.WriteAllText("/proc/sys/vm/drop_caches", "3"); } catch (IOException) { } catch (UnauthorizedAccessException) { }
    }

    public static string Inv(double v) => v.ToString(CultureInfo.InvariantCulture);
}
