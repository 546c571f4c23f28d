using System.Diagnostics;
using System.Runtime.InteropServices;
using Daxfs.Branching.Fuse;

namespace Daxfs.Branching.Cli;

internal static class MountVerbs
{
    public static int Mount(Context c)
    {
        string mountpoint = c.Get(Verbs.Mount.Point);
        string region = c.RegionPath;
        string? branch = c.Get(Opt.Branch); // none: the whole region
        bool readOnly = c.Get(Verbs.Mount.ReadOnly);
        string? directText = c.Get(Verbs.Mount.DirectRead);
        long directRead = directText is null ? new MountOptions().DirectReadSize
            : directText == "off" ? long.MaxValue : Opt.ParseSize(directText, "--direct-read");
        string? timeoutText = c.Get(Verbs.Mount.CacheTimeout);
        TimeSpan? cacheTimeout = null;
        if (timeoutText is not null)
        {
            if (!double.TryParse(timeoutText, System.Globalization.NumberStyles.AllowDecimalPoint, System.Globalization.CultureInfo.InvariantCulture, out double seconds)
                || !(seconds >= 0 && seconds <= 86400)) // also refuses NaN
                throw new UsageException($"--cache-timeout: '{timeoutText}' is not a number of seconds from 0 to 86400");
            cacheTimeout = TimeSpan.FromSeconds(seconds);
        }
        if (BranchMount.FuseProblem() is { } problem)
            throw new IOException(problem);
        if (!File.Exists(region))
            throw new FileNotFoundException($"{region}: region not found", region);
        BranchMount.RequireNotMounted(mountpoint); // also a crashed mount, which no longer looks like a directory
        if (!Directory.Exists(mountpoint))
        {
            if (File.Exists(mountpoint))
                throw new UsageException($"{mountpoint}: mount point is not a directory");
            throw new DirectoryNotFoundException($"{mountpoint}: mount point does not exist (create it with mkdir)");
        }
        using (var store = Store.OpenFenced(region))
            _ = (branch is null ? store.Main : store.GetBranch(branch)).Info; // fail here, with a clear message, for a missing, invalidated or damaged branch
        string? uringText = c.Get(Verbs.Mount.Uring) ?? (Environment.GetEnvironmentVariable("DAXFS_URING") is { Length: > 0 } fromEnvironment ? fromEnvironment : null);
        var uring = uringText switch
        {
            null or "auto" => UringMode.Auto,
            "on" => UringMode.On,
            "off" => UringMode.Off,
            _ => throw new UsageException($"DAXFS_URING={uringText}: give auto, on or off"),
        };
        bool enableKernelUring = c.Get(Verbs.Mount.EnableKernelUring);
        if (uring == UringMode.On && !enableKernelUring && BranchMount.UringProblem() is { } uringProblem)
            throw new IOException($"{(c.Get(Verbs.Mount.Uring) is null ? "DAXFS_URING=on" : "--uring on")}: {uringProblem}"); // before anything starts
        if (c.Get(Verbs.Mount.Background))
            return Background(c, mountpoint, region, branch, readOnly, directText, timeoutText, uringText, enableKernelUring);

        using var cancel = new CancellationTokenSource();
        using var term = PosixSignalRegistration.Create(PosixSignal.SIGTERM, ctx => { ctx.Cancel = true; cancel.Cancel(); });
        using var intr = PosixSignalRegistration.Create(PosixSignal.SIGINT, ctx => { ctx.Cancel = true; cancel.Cancel(); });
        // A closed terminal (SIGHUP) or SIGQUIT unmounts too: left to the default, the process dies and leaves a dead
        // mount ("not connected") behind.
        using var hup = PosixSignalRegistration.Create(PosixSignal.SIGHUP, ctx => { ctx.Cancel = true; cancel.Cancel(); });
        using var quit = PosixSignalRegistration.Create(PosixSignal.SIGQUIT, ctx => { ctx.Cancel = true; cancel.Cancel(); });
        BranchMount.Run(region, branch, mountpoint, new MountOptions { ReadOnly = readOnly, DirectReadSize = directRead, CacheTimeout = cacheTimeout, Uring = uring, EnableKernelUring = enableKernelUring }, () =>
        {
            Console.Out.WriteLine($"mounted {What(branch)} at {mountpoint}{(readOnly || branch == "main" ? " (read-only)" : "")}; unmount with 'daxfs unmount {mountpoint}' or Ctrl-C");
            Console.Out.Flush();
        }, cancel.Token);
        // A background server logs to a file its parent named; after a clean unmount there is nothing to keep.
        if (Environment.GetEnvironmentVariable("DAXFS_MOUNT_LOG") is { Length: > 0 } log)
        {
            File.Delete(log);
            if (Path.GetDirectoryName(log) is { } dir && Path.GetFileName(dir).StartsWith("daxfs-mount-", StringComparison.Ordinal))
            {
                try { Directory.Delete(dir); } catch (IOException) { } // not empty: leave what someone put there
            }
        }
        return Program.Ok;
    }

    private static string What(string? branch) => branch is null ? "the region (main, and each branch as @NAME)" : $"branch '{branch}'";

    /// <summary>How to start this tool again: the executable itself, or the runtime and the tool's assembly.</summary>
    private static string[] Self()
    {
        string? process = Environment.ProcessPath;
        string assembly = typeof(Program).Assembly.Location;
        if (process is null || Path.GetFileNameWithoutExtension(process) == "dotnet")
            return [process ?? "dotnet", assembly];
        return [process]; // an installed executable (apphost): it is the tool
    }

    /// <summary>Starts the server as a detached process and returns once the mount is in place.</summary>
    private static int Background(Context c, string mountpoint, string region, string? branch, bool readOnly, string? directRead, string? cacheTimeout, string? uring, bool enableKernelUring)
    {
        // Checked here, not only by the server: a server that fails on a mount point already in use would
        // look like a success to the wait below, which only sees that something is mounted there.
        BranchMount.RequireNotMounted(mountpoint);
        // The server's log lives in a directory only this user can enter (0700, an unpredictable name), so no
        // other user can plant a link or a FIFO where the server writes.
        string log = Path.Combine(Directory.CreateTempSubdirectory("daxfs-mount-").FullName, "server.log");
        var psi = new ProcessStartInfo("setsid") { UseShellExecute = false };
        foreach (var a in new[] { "sh", "-c", "exec \"$@\" </dev/null >>\"$DAXFS_MOUNT_LOG\" 2>&1", "sh" }.Concat(Self()).Concat(["mount", mountpoint, "-r", region]))
            psi.ArgumentList.Add(a);
        if (branch is not null)
        {
            psi.ArgumentList.Add("-b");
            psi.ArgumentList.Add(branch);
        }
        if (readOnly) psi.ArgumentList.Add("--read-only");
        if (uring is not null)
        {
            psi.ArgumentList.Add("--uring");
            psi.ArgumentList.Add(uring);
        }
        if (enableKernelUring) psi.ArgumentList.Add("--enable-kernel-uring");
        if (directRead is not null)
        {
            psi.ArgumentList.Add("--direct-read");
            psi.ArgumentList.Add(directRead);
        }
        if (cacheTimeout is not null)
        {
            psi.ArgumentList.Add("--cache-timeout");
            psi.ArgumentList.Add(cacheTimeout);
        }
        psi.Environment["DAXFS_MOUNT_LOG"] = log;
        using var child = Process.Start(psi) ?? throw new IOException("cannot start the mount server");
        var deadline = DateTime.UtcNow.AddSeconds(30);
        while (DateTime.UtcNow < deadline)
        {
            if (BranchMount.IsMounted(mountpoint))
            {
                Console.Out.WriteLine($"mounted {What(branch)} at {mountpoint} in the background (server pid {child.Id}; log {log}); unmount with 'daxfs unmount {mountpoint}'");
                return Program.Ok;
            }
            if (child.HasExited)
                break;
            Thread.Sleep(20);
        }
        string why = File.Exists(log) ? File.ReadAllText(log).Trim() : "no output";
        throw new IOException($"the mount server did not mount {mountpoint}: {why}");
    }

    public static int Unmount(Context c)
    {
        string mountpoint = c.Get(Verbs.Unmount.Point);
        if (!BranchMount.IsMounted(mountpoint))
            throw new IOException($"{mountpoint}: not mounted");
        BranchMount.Unmount(mountpoint);
        Console.Out.WriteLine($"unmounted {mountpoint}");
        return Program.Ok;
    }
}
