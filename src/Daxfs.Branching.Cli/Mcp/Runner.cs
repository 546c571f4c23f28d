using System.Diagnostics;
using System.Text;
using System.Text.Json.Nodes;
using Daxfs.Branching.Fuse;

namespace Daxfs.Branching.Cli.Mcp;

/// <summary>
/// The run tool: a mount of the whole region that the server starts at the first run (main at the mount point,
/// each branch as @NAME), and commands run with their working directory in a branch. As root, each command runs
/// in fresh mount and PID namespaces where only its branch is mounted (at /mnt/workspace) and the rest of the
/// region's mount is gone; otherwise in the branch's directory of the shared mount.
/// </summary>
internal sealed class Runner(string regionPath) : IDisposable
{
    /// <summary>The most of each output stream returned.</summary>
    public const int MaxOutput = 64 * 1024;

    private readonly object _gate = new();
    private string? _mountpoint;
    private CancellationTokenSource? _cancel;
    private Thread? _server;
    private Exception? _failure;

    private string Mounted()
    {
        lock (_gate)
        {
            if (_mountpoint is not null && _failure is null)
                return _mountpoint;
            if (BranchMount.FuseProblem() is { } problem)
                throw new ToolError($"run needs a mount, and {problem}", Program.Failed);
            string mp = Directory.CreateTempSubdirectory("daxfs-mcp-").FullName; // 0700, unpredictable
            using var ready = new ManualResetEventSlim();
            _cancel = new CancellationTokenSource();
            _failure = null;
            var cancel = _cancel.Token;
            _server = new Thread(() =>
            {
                try { BranchMount.Run(regionPath, null, mp, new MountOptions { Lifecycle = false }, ready.Set, cancel); } // the client keeps the lifecycle
                catch (Exception e) { _failure = e; ready.Set(); }
            }) { IsBackground = true, Name = "daxfs-mcp-mount" };
            _server.Start();
            ready.Wait();
            if (_failure is { } f)
            {
                try { Directory.Delete(mp); } catch (IOException) { }
                throw new ToolError($"run: the region could not be mounted: {f.Message}", Program.Failed);
            }
            _mountpoint = mp;
            return mp;
        }
    }

    public JsonNode Run(string branch, string[] argv, TimeSpan timeout)
    {
        string mp = Mounted();
        string dir = branch == "main" ? mp : Path.Combine(mp, "@" + branch);
        if (!Directory.Exists(dir))
            throw new ToolError($"run: branch '{branch}' is not in the mount (is it live? list_branches)", Program.Failed);
        bool isolated = Environment.IsPrivilegedProcess && File.Exists("/usr/bin/unshare");
        var psi = new ProcessStartInfo { RedirectStandardOutput = true, RedirectStandardError = true, RedirectStandardInput = true, UseShellExecute = false };
        if (isolated)
        {
            psi.FileName = "/usr/bin/unshare";
            foreach (var a in new[] { "--mount", "--pid", "--fork", "--kill-child", "--mount-proc", "--propagation", "private", "/bin/sh", "-ec",
                "mount -t tmpfs daxfs-run /mnt && mkdir /mnt/workspace && mount --bind \"$1\" /mnt/workspace && umount -l \"$2\" && cd /mnt/workspace && shift 2 && exec \"$@\"",
                "daxfs-run", dir, mp })
                psi.ArgumentList.Add(a);
        }
        else
        {
            psi.FileName = argv[0];
            psi.WorkingDirectory = dir;
            argv = argv[1..];
        }
        foreach (var a in argv) psi.ArgumentList.Add(a);
        var clock = Stopwatch.StartNew();
        Process p;
        try
        {
            p = Process.Start(psi)!;
        }
        catch (System.ComponentModel.Win32Exception e)
        {
            throw new ToolError($"run: cannot start {psi.FileName}: {e.Message}", Program.Failed);
        }
        using (p)
        {
            p.StandardInput.Close();
            var stdout = Capture(p.StandardOutput);
            var stderr = Capture(p.StandardError);
            bool finished = p.WaitForExit(timeout);
            if (!finished)
            {
                try { p.Kill(entireProcessTree: true); } catch (InvalidOperationException) { }
                p.WaitForExit(5000);
            }
            var (outText, outCut) = stdout.GetAwaiter().GetResult();
            var (errText, errCut) = stderr.GetAwaiter().GetResult();
            return new JsonObject
            {
                ["exit_code"] = finished ? p.ExitCode : null, ["timed_out"] = !finished, ["seconds"] = Math.Round(clock.Elapsed.TotalSeconds, 3),
                ["stdout"] = outText, ["stderr"] = errText, ["stdout_truncated"] = outCut, ["stderr_truncated"] = errCut,
                ["cwd"] = isolated ? "/mnt/workspace" : dir, ["isolated"] = isolated,
            };
        }
    }

    /// <summary>Reads a stream to its end, keeping its first <see cref="MaxOutput"/> bytes.</summary>
    private static async Task<(string Text, bool Cut)> Capture(StreamReader reader)
    {
        var kept = new StringBuilder();
        var buffer = new char[8192];
        bool cut = false;
        int n;
        while ((n = await reader.ReadAsync(buffer).ConfigureAwait(false)) > 0)
        {
            int room = MaxOutput - kept.Length;
            if (room > 0) kept.Append(buffer, 0, Math.Min(n, room));
            if (n > room) cut = true;
        }
        return (kept.ToString(), cut);
    }

    public void Dispose()
    {
        lock (_gate)
        {
            if (_cancel is null) return;
            _cancel.Cancel();
            _server?.Join(TimeSpan.FromSeconds(10));
            _cancel.Dispose();
            _cancel = null;
            if (_mountpoint is not null)
            {
                try { Directory.Delete(_mountpoint); } catch (IOException) { }
                _mountpoint = null;
            }
        }
    }
}
