using System.Diagnostics;
using System.Text;
using System.Text.Json;

namespace Daxfs.Branching.Cli.Tests;

/// <summary>Runs the real daxfs executable as a child process.</summary>
internal static class Cli
{
    public sealed record Result(int Code, string Out, string Err)
    {
        public JsonElement Json => JsonDocument.Parse(Out).RootElement;
    }

    private static readonly string s_dll = Path.Combine(AppContext.BaseDirectory, "daxfs.dll");

    public static Result Run(string? stdin, params string[] args) => RunIn(null, stdin, args);

    public static Result RunIn(string? region, string? stdin, params string[] args)
    {
        var psi = new ProcessStartInfo("dotnet")
        {
            RedirectStandardOutput = true,
            RedirectStandardError = true,
            RedirectStandardInput = true,
            UseShellExecute = false,
        };
        psi.ArgumentList.Add(s_dll);
        foreach (var a in args) psi.ArgumentList.Add(a);
        psi.Environment.Remove("DAXFS_REGION");
        if (region is not null) psi.Environment["DAXFS_REGION"] = region;
        psi.Environment["NO_COLOR"] = "1";
        using var p = Process.Start(psi)!;
        var stdoutTask = p.StandardOutput.ReadToEndAsync();
        var stderrTask = p.StandardError.ReadToEndAsync();
        if (stdin is not null) p.StandardInput.Write(stdin);
        p.StandardInput.Close();
        if (!p.WaitForExit(120_000))
        {
            p.Kill(entireProcessTree: true);
            throw new TimeoutException($"daxfs {string.Join(' ', args)} did not finish");
        }
        return new Result(p.ExitCode, stdoutTask.Result, stderrTask.Result);
    }

    /// <summary>Starts daxfs and kills it (SIGKILL) after <paramref name="delay"/>, unless it finished first; true when it was killed.</summary>
    public static bool RunAndKill(TimeSpan delay, params string[] args)
    {
        var psi = new ProcessStartInfo("dotnet") { RedirectStandardOutput = true, RedirectStandardError = true, UseShellExecute = false };
        psi.ArgumentList.Add(s_dll);
        foreach (var a in args) psi.ArgumentList.Add(a);
        psi.Environment.Remove("DAXFS_REGION");
        using var p = Process.Start(psi)!;
        _ = p.StandardOutput.ReadToEndAsync();
        _ = p.StandardError.ReadToEndAsync();
        if (p.WaitForExit(delay))
            return false;
        p.Kill(entireProcessTree: true);
        p.WaitForExit();
        return true;
    }
}

/// <summary>A source tree and a region path in a temp directory.</summary>
internal sealed class Workspace : IDisposable
{
    public Workspace()
    {
        Root = Path.Combine(Path.GetTempPath(), $"daxfs-cli-{Environment.ProcessId}-{Guid.NewGuid():N}");
        Source = Path.Combine(Root, "src");
        Directory.CreateDirectory(Path.Combine(Source, "lib"));
        File.WriteAllText(Path.Combine(Source, "README.md"), "# ws\n");
        File.WriteAllText(Path.Combine(Source, "lib", "util.py"), "def f():\n    return 1\n");
        File.WriteAllBytes(Path.Combine(Source, "data.bin"), Enumerable.Range(0, 10_000).Select(i => (byte)i).ToArray());
        Region = Path.Combine("/dev/shm", $"daxfs-cli-{Environment.ProcessId}-{Guid.NewGuid():N}.daxfs");
    }

    public string Root { get; }

    public string Source { get; }

    public string Region { get; }

    public Cli.Result Run(params string[] args) => Cli.RunIn(Region, null, args);

    public Cli.Result RunWithInput(string stdin, params string[] args) => Cli.RunIn(Region, stdin, args);

    public void Dispose()
    {
        File.Delete(Region);
        Directory.Delete(Root, recursive: true);
    }
}
