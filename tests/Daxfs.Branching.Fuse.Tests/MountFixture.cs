using System.Diagnostics;
using Daxfs.Branching.Fuse;

namespace Daxfs.Branching.Fuse.Tests;

/// <summary>Runs commands: the real daxfs tool and ordinary programs through bash.</summary>
internal static class Sh
{
    public sealed record Result(int Code, string Out, string Err);

    public static Result Run(string file, IEnumerable<string> args, string? cwd = null, int timeoutSeconds = 300, IReadOnlyDictionary<string, string>? env = null)
    {
        var psi = new ProcessStartInfo(file) { RedirectStandardOutput = true, RedirectStandardError = true, UseShellExecute = false };
        foreach (var a in args) psi.ArgumentList.Add(a);
        if (cwd is not null) psi.WorkingDirectory = cwd;
        psi.Environment.Remove("DAXFS_REGION");
        psi.Environment["NO_COLOR"] = "1";
        psi.Environment["GIT_CONFIG_NOSYSTEM"] = "1";
        psi.Environment["HOME"] = Path.GetTempPath();
        foreach (var (k, v) in env ?? new Dictionary<string, string>()) psi.Environment[k] = v;
        using var p = Process.Start(psi)!;
        var o = p.StandardOutput.ReadToEndAsync();
        var e = p.StandardError.ReadToEndAsync();
        if (!p.WaitForExit(timeoutSeconds * 1000))
        {
            p.Kill(true);
            throw new TimeoutException($"{file} {string.Join(' ', args)} did not finish");
        }
        return new Result(p.ExitCode, o.Result, e.Result);
    }

    public static Result Bash(string script, string? cwd = null) => Run("bash", ["-c", "set -euo pipefail\n" + script], cwd);

    /// <summary>Starts a process without waiting for it (its output is thrown away).</summary>
    public static Process Start(string file, IEnumerable<string> args)
    {
        var psi = new ProcessStartInfo(file) { RedirectStandardOutput = true, RedirectStandardError = true, UseShellExecute = false };
        foreach (var a in args) psi.ArgumentList.Add(a);
        var p = Process.Start(psi)!;
        _ = p.StandardOutput.ReadToEndAsync();
        _ = p.StandardError.ReadToEndAsync();
        return p;
    }

    public static Result Ok(Result r, string what)
    {
        Assert.True(r.Code == 0, $"{what} failed with exit {r.Code}\nstdout: {r.Out}\nstderr: {r.Err}");
        return r;
    }

    public static Result Daxfs(params string[] args) => Run("dotnet", [Path.Combine(AppContext.BaseDirectory, "daxfs.dll"), .. args]);
}

/// <summary>Waiting for what the mount shows after a change made elsewhere.</summary>
internal static class Wait
{
    /// <summary>True once <paramref name="condition"/> holds, trying every 50 ms for up to 5 seconds.</summary>
    public static bool Until(Func<bool> condition)
    {
        for (int i = 0; i < 100; i++)
        {
            if (condition()) return true;
            Thread.Sleep(50);
        }
        return condition();
    }
}

/// <summary>A region built from a small real tree, with branches mounted on demand; everything is unmounted and removed afterwards.</summary>
internal sealed class Mounted : IDisposable
{
    private readonly List<string> _mounts = [];

    public Mounted(string? sourceTree = null)
    {
        if (BranchMount.FuseProblem() is { } problem)
            Assert.Fail("the mount tests need FUSE and root: " + problem);
        Root = Path.Combine(Path.GetTempPath(), $"daxfs-fuse-{Environment.ProcessId}-{Guid.NewGuid():N}");
        Source = sourceTree ?? Path.Combine(Root, "src");
        if (sourceTree is null)
        {
            Directory.CreateDirectory(Path.Combine(Source, "lib"));
            File.WriteAllText(Path.Combine(Source, "README.md"), "# project\n");
            File.WriteAllText(Path.Combine(Source, "lib", "util.sh"), "echo util\n");
            File.WriteAllBytes(Path.Combine(Source, "data.bin"), Enumerable.Range(0, 300_000).Select(i => (byte)(i * 7)).ToArray());
        }
        Region = Path.Combine("/dev/shm", $"daxfs-fuse-{Environment.ProcessId}-{Guid.NewGuid():N}.daxfs");
        Sh.Ok(Sh.Daxfs("mkfs", Source, "-r", Region, "--capacity", "512M"), "mkfs");
    }

    public string Root { get; }

    public string Source { get; }

    public string Region { get; }

    public Sh.Result Cli(params string[] args) => Sh.Daxfs([.. args, "-r", Region]);

    /// <summary>Forks <paramref name="branch"/> (unless it is main) and mounts it; returns the mount point.</summary>
    public string Mount(string branch, bool create = true, params string[] extra)
    {
        if (create && branch != "main")
            Sh.Ok(Cli("branch", "create", branch), "branch create");
        return MountAt("mnt-" + branch, branch, extra);
    }

    /// <summary>Mounts an existing <paramref name="branch"/> at the directory <paramref name="name"/> under the root.</summary>
    public string MountAt(string name, string? branch, params string[] extra)
    {
        string mp = Path.Combine(Root, name);
        Directory.CreateDirectory(mp);
        string[] which = branch is null ? [] : ["-b", branch];
        var r = Sh.Ok(Sh.Daxfs(["mount", mp, "-r", Region, .. which, "--background", .. extra]), "mount");
        _mounts.Add(mp);
        var log = System.Text.RegularExpressions.Regex.Match(r.Out, @"; log (\S+?)\)");
        if (log.Success)
        {
            Logs[mp] = log.Groups[1].Value;
            // The server's log sits in a directory only its user may enter: no other user can plant a link or a
            // FIFO where it writes, as one could at a predictable name in /tmp.
            string dir = System.IO.Path.GetDirectoryName(Logs[mp])!;
            Assert.Equal(UnixFileMode.UserRead | UnixFileMode.UserWrite | UnixFileMode.UserExecute, File.GetUnixFileMode(dir));
            Assert.Null(new DirectoryInfo(dir).LinkTarget);
        }
        return mp;
    }

    /// <summary>Mounts the whole region (main at the root, each branch as @NAME) at the directory <paramref name="name"/> under the root.</summary>
    public string MountRegion(string name = "mnt-region", params string[] extra) => MountAt(name, null, extra);

    /// <summary>The log file of each background server, by mount point.</summary>
    public Dictionary<string, string> Logs { get; } = [];

    public void Dispose()
    {
        foreach (var mp in _mounts)
            if (BranchMount.IsMounted(mp))
                Sh.Daxfs("unmount", mp);
        File.Delete(Region);
        try { Directory.Delete(Root, recursive: true); } catch (IOException) { }
    }
}

/// <summary>A temporary directory holding one file of random bytes, big.bin (the source tree of a region); removed afterwards.</summary>
internal sealed class RandomTree : IDisposable
{
    public RandomTree(int size, int seed)
    {
        Path = System.IO.Path.Combine(System.IO.Path.GetTempPath(), $"daxfs-fuse-tree-{Guid.NewGuid():N}");
        Directory.CreateDirectory(Path);
        Bytes = new byte[size];
        new Random(seed).NextBytes(Bytes);
        File = System.IO.Path.Combine(Path, "big.bin");
        System.IO.File.WriteAllBytes(File, Bytes);
    }

    /// <summary>The directory.</summary>
    public string Path { get; }

    /// <summary>big.bin's full path.</summary>
    public string File { get; }

    /// <summary>big.bin's bytes.</summary>
    public byte[] Bytes { get; }

    public void Dispose() => Directory.Delete(Path, recursive: true);
}
