using System.Diagnostics;
using System.Globalization;

namespace Daxfs.Branching.Tests;

/// <summary>Child processes of the test worker, plain or inside new PID and user namespaces (as sandboxes run them).</summary>
internal static class Sandbox
{
    public static readonly string Worker = Path.Combine(AppContext.BaseDirectory, "Daxfs.Branching.Worker.dll");

    /// <summary>A new PID namespace with its own /proc, as containers and <c>unshare</c> sandboxes make.</summary>
    public static readonly string[] PidNamespace = ["unshare", "--pid", "--fork", "--mount-proc"];

    /// <summary>A new user namespace mapping the caller to root inside (<c>unshare -U -r</c>), with its own PID namespace too.</summary>
    public static readonly string[] UserNamespace = ["unshare", "--user", "--map-root-user", "--pid", "--fork", "--mount-proc"];

    private static readonly Lazy<string?> s_problem = new(Probe);

    /// <summary>Why namespaces cannot be made here, or null when they can.</summary>
    public static string? Problem => s_problem.Value;

    private static string? Probe()
    {
        if (!Environment.IsPrivilegedProcess)
            return "making PID namespaces and bind mounts needs root";
        try
        {
            using var p = Process.Start(new ProcessStartInfo("unshare", ["--pid", "--fork", "--mount-proc", "true"]) { RedirectStandardError = true, UseShellExecute = false })!;
            string err = p.StandardError.ReadToEnd();
            p.WaitForExit();
            return p.ExitCode == 0 ? null : $"unshare --pid failed here: {err.Trim()}";
        }
        catch (System.ComponentModel.Win32Exception e)
        {
            return $"unshare (util-linux) is not available: {e.Message}";
        }
    }

    /// <summary>Starts the worker, inside <paramref name="prefix"/> (a namespace launcher) when given, with its standard streams redirected.</summary>
    public static Child Start(string[]? prefix, IDictionary<string, string>? env, params string[] args)
    {
        var argv = new List<string>(prefix ?? []) { "dotnet", Worker };
        argv.AddRange(args);
        var psi = new ProcessStartInfo(argv[0]) { RedirectStandardOutput = true, RedirectStandardError = true, RedirectStandardInput = true, UseShellExecute = false };
        foreach (var a in argv.Skip(1)) psi.ArgumentList.Add(a);
        psi.Environment.Remove("DAXFS_FAULT_POINT");
        psi.Environment.Remove("DAXFS_PAUSE_POINT");
        psi.Environment.Remove("DAXFS_BOOT_ID");
        // Small runtimes: the 1,024-process test runs them all at once.
        psi.Environment["DOTNET_gcConcurrent"] = "0";
        psi.Environment["DOTNET_GCgen0size"] = "0x200000";
        if (env is not null)
            foreach (var kv in env) psi.Environment[kv.Key] = kv.Value;
        return new Child(Process.Start(psi)!, prefix is not null);
    }

    /// <summary>Runs a command to its end; fails the test, with its error output, when it fails.</summary>
    public static void Run(string file, params string[] args)
    {
        using var p = Process.Start(new ProcessStartInfo(file, args) { RedirectStandardError = true, UseShellExecute = false })!;
        string err = p.StandardError.ReadToEnd();
        p.WaitForExit();
        Assert.True(p.ExitCode == 0, $"{file} {string.Join(' ', args)}: {err}");
    }

    /// <summary>Bytes of disk or memory a file takes (stat's blocks times block size): holes take none.</summary>
    public static long AllocatedBytes(string path)
    {
        using var p = Process.Start(new ProcessStartInfo("stat", ["-c", "%b %B", path]) { RedirectStandardOutput = true, UseShellExecute = false })!;
        var parts = p.StandardOutput.ReadToEnd().Trim().Split(' ');
        p.WaitForExit();
        return long.Parse(parts[0], CultureInfo.InvariantCulture) * long.Parse(parts[1], CultureInfo.InvariantCulture);
    }

    /// <summary>Waits until <paramref name="condition"/> holds, checking every 10 ms, at most <paramref name="seconds"/>.</summary>
    public static void Eventually(Func<bool> condition, double seconds, string what)
    {
        var sw = Stopwatch.StartNew();
        while (!condition())
        {
            if (sw.Elapsed.TotalSeconds > seconds)
                Assert.Fail($"{what}: not within {seconds} s");
            Thread.Sleep(10);
        }
    }

    /// <summary>The state letter of a process in /proc (R, S, T for stopped, Z …), or null when it is gone.</summary>
    public static char? State(int pid)
    {
        try
        {
            string stat = File.ReadAllText($"/proc/{pid}/stat");
            return stat[stat.LastIndexOf(')') + 2];
        }
        catch (IOException)
        {
            return null;
        }
    }
}

/// <summary>A running worker: its output lines as they come, and the pid of the worker itself (inside a namespace launcher, its child).</summary>
internal sealed class Child : IDisposable
{
    private readonly Process _process;
    private readonly bool _launched;
    private readonly List<string> _out = [];
    private readonly List<string> _err = [];

    public Child(Process process, bool launched)
    {
        _process = process;
        _launched = launched;
        process.OutputDataReceived += (_, e) => { if (e.Data is not null) lock (_out) _out.Add(e.Data); };
        process.ErrorDataReceived += (_, e) => { if (e.Data is not null) lock (_err) _err.Add(e.Data); };
        process.BeginOutputReadLine();
        process.BeginErrorReadLine();
    }

    public Process Process => _process;

    public string Output { get { lock (_out) return string.Join('\n', _out); } }

    public string Errors { get { lock (_err) return string.Join('\n', _err); } }

    public bool Said(string text) { lock (_out) return _out.Any(l => l.Contains(text, StringComparison.Ordinal)); }

    public bool Complained(string text) { lock (_err) return _err.Any(l => l.Contains(text, StringComparison.Ordinal)); }

    /// <summary>The worker's pid as this process sees it: the launcher's only child, or the process itself.</summary>
    public int WorkerPid
    {
        get
        {
            if (!_launched)
                return _process.Id;
            int pid = 0;
            Sandbox.Eventually(() =>
            {
                if (_process.HasExited)
                    Assert.Fail($"the worker exited with {_process.ExitCode} before it could be signalled\n{Output}\n{Errors}");
                string children = File.ReadAllText($"/proc/{_process.Id}/task/{_process.Id}/children").Trim();
                return children.Length > 0 && int.TryParse(children.Split(' ')[0], NumberStyles.None, CultureInfo.InvariantCulture, out pid);
            }, 30, "the namespace launcher started the worker");
            return pid;
        }
    }

    public void Signal(int signal) => Assert.Equal(0, Kill(WorkerPid, signal));

    public int WaitForExit(double seconds = 120)
    {
        if (!_process.WaitForExit(TimeSpan.FromSeconds(seconds)))
        {
            _process.Kill(true);
            Assert.Fail($"the worker did not exit within {seconds} s\n{Output}\n{Errors}");
        }
        _process.WaitForExit(); // drains the output
        return _process.ExitCode;
    }

    public void Dispose()
    {
        if (!_process.HasExited)
        {
            try { Kill(WorkerPid, 9); } catch (IOException) { }
            _process.Kill(true);
            _process.WaitForExit();
        }
        _process.Dispose();
    }

    private static int Kill(int pid, int signal) => Media.Libc.Kill(pid, signal);
}

/// <summary>A test that needs PID namespaces (root and unshare); skipped, with the reason, where they cannot be made.</summary>
public sealed class SandboxFactAttribute : FactAttribute
{
    public SandboxFactAttribute()
    {
        if (Sandbox.Problem is { } why)
            Skip = why;
    }
}
