using System.Diagnostics;

namespace Daxfs.Branching.Fuse;

/// <summary>How a branch is mounted.</summary>
public sealed record MountOptions
{
    /// <summary>Refuse writes (EROFS) even if the branch accepts them. Main is always mounted read-only.</summary>
    public bool ReadOnly { get; init; }

    /// <summary>Threads serving requests (default 2).</summary>
    public int Threads { get; init; } = 2;

    /// <summary>
    /// How long the kernel may cache names (found or missing) and attributes. Changes made by other processes are
    /// pushed to the kernel within 0.1 s whatever this is (each name that changed is dropped), so it only bounds
    /// how long a lookup is saved. Default (null): 60 s.
    /// </summary>
    public TimeSpan? CacheTimeout { get; init; }

    /// <summary>
    /// Files at least this large (default 1 MiB), when opened read-only, are read past the kernel's page cache: each
    /// read is answered by one copy from the region into the reader's buffer, as on a DAX file system, instead of
    /// one copy into the page cache and another out of it, and a file read through N mounts is not held N times in
    /// memory. Smaller files and files opened for writing stay cached (fast re-reads). <see cref="long.MaxValue"/>
    /// caches every file. Needs a kernel that allows mmap of such files (it offers FUSE_DIRECT_IO_ALLOW_MMAP, protocol 7.39); with
    /// an older one every file is cached.
    /// </summary>
    public long DirectReadSize { get; init; } = 1 << 20;

    /// <summary>Where the server reports failures it cannot answer through the kernel (default: standard error).</summary>
    public TextWriter? Log { get; init; }

    /// <summary>
    /// Whether the mount offers the branch lifecycle (default true): the control file's fork, commit, commit-parent,
    /// abort and discard, and mkdir and rmdir of branches. False for a mount handed to code that may change files but
    /// must not publish, end or fork branches (the MCP server's run tool): those operations then fail with EPERM.
    /// </summary>
    public bool Lifecycle { get; init; } = true;

    /// <summary>Whether requests go over io_uring (default <see cref="UringMode.Auto"/>: when the kernel has it switched on).</summary>
    public UringMode Uring { get; init; } = UringMode.Auto;

    /// <summary>As root, switch the kernel's FUSE io_uring on (the fuse module parameter enable_uring) when it is off, and say so.</summary>
    public bool EnableKernelUring { get; init; }
}

/// <summary>
/// Mounts a branch of a region as a directory through FUSE, so any program works inside the branch.
/// The server speaks the kernel protocol on /dev/fuse itself (no libfuse needed at run time). Root mounts
/// with mount(2); any other user through the setuid fusermount3 helper of fuse3, which hands back the
/// /dev/fuse descriptor.
/// </summary>
public static class BranchMount
{
    /// <summary>Why mounting cannot work on this machine, with what to install; null when it can.</summary>
    public static string? FuseProblem()
    {
        if (!File.Exists("/dev/fuse"))
            return "FUSE is not available: /dev/fuse is missing. Install FUSE 3 (on Debian or Ubuntu: apt-get install fuse3) and load the module (modprobe fuse).";
        if (FuseNative.Geteuid() != 0 && Helper() is null)
            return "mounting a branch as a user other than root needs the setuid fusermount3 helper, which is missing. Install FUSE 3 (on Debian or Ubuntu: apt-get install fuse3), or mount as root.";
        if (FuseNative.Geteuid() != 0 && FuseNative.Access("/dev/fuse", FuseNative.ReadWriteOk) != 0)
            return "/dev/fuse is not open to this user (distributions make it mode 0666; here it is not: as root, chmod 666 /dev/fuse), or mount as root.";
        return null;
    }

    /// <summary>The fusermount3 helper's path, or null.</summary>
    private static string? Helper()
        => new[] { "/usr/bin/fusermount3", "/bin/fusermount3", "/usr/local/bin/fusermount3" }.FirstOrDefault(File.Exists);

    /// <summary>
    /// Mounts branch <paramref name="branchName"/> of the region at <paramref name="mountpoint"/> and serves it
    /// until it is unmounted or <paramref name="cancel"/> is signalled. <paramref name="ready"/> is called once the
    /// mount is in place. With <paramref name="branchName"/> null the whole region is served by this one server: main read-only at
    /// the root, every live branch as the directory <c>@NAME</c> there (mkdir forks main, rmdir discards), appearing
    /// and going within 0.1 s of a change by any process.
    /// Either way each branch directory holds the hidden control entry <c>.daxfs</c> (see docs/mount.md).
    /// </summary>
    public static void Run(string regionPath, string? branchName, string mountpoint, MountOptions? options = null, Action? ready = null, CancellationToken cancel = default)
    {
        options ??= new MountOptions();
        if (options.CacheTimeout is { } timeout && (timeout < TimeSpan.Zero || timeout > TimeSpan.FromDays(1)))
            throw new ArgumentOutOfRangeException(nameof(options), $"CacheTimeout {timeout} is outside 0 to 1 day");
        if (FuseProblem() is { } problem)
            throw new InvalidOperationException(problem);
        string target = Path.GetFullPath(mountpoint);
        if (!Directory.Exists(target))
            throw new DirectoryNotFoundException(File.Exists(target) ? $"{mountpoint}: mount point is not a directory" : $"{mountpoint}: mount point does not exist (create it with mkdir)");
        RequireNotMounted(mountpoint);
        var log = options.Log ?? Console.Error;
        UringPreflight(options, log);
        // A damaged region is still served: what the damage reaches is fenced (EIO), the rest reads as usual.
        using var store = Store.OpenFenced(regionPath);
        bool regionMode = branchName is null;
        var branch = regionMode ? store.Main : store.GetBranch(branchName!);
        _ = branch.Info; // a fenced branch: its damage, now, rather than EIO on every request
        var fenced = store.Fenced;
        if (fenced.Count > 0)
            (options.Log ?? Console.Error).WriteLine($"daxfs mount: {regionPath} is damaged ({fenced.Count} damaged log(s), first: {fenced[0].Structure} at offset {fenced[0].Offset}: {fenced[0].Detail}); "
                + "what it reaches answers EIO, and the mount is read-only until the region is repaired (daxfs verify, daxfs repair)");
        bool readOnly = options.ReadOnly || fenced.Count > 0;
        // Main at the root of a region mount stays read-only per node (EROFS), not per mount: mkdir @NAME there forks.
        bool mountReadOnly = readOnly || (!regionMode && branch.IsMain);
        string name = branchName ?? System.IO.Path.GetFileName(regionPath);
        int fd = FuseNative.Geteuid() == 0 ? MountAsRoot(name, target, mountpoint, mountReadOnly) : MountWithHelper(name, target, mountpoint, mountReadOnly);
        try
        {
            using var registration = cancel.Register(() => Unmount(target));
            var server = new FuseServer(fd, store, branch, readOnly || (!regionMode && branch.IsMain), options.Log ?? Console.Error, regionMode)
            {
                Uring = options.Uring,
                Lifecycle = options.Lifecycle,
                CacheTimeout = options.CacheTimeout,
                DirectReadSize = options.DirectReadSize,
                Initialized = () => TuneReadahead(target), // after INIT: the kernel sets readahead from the reply then
            };
            ready?.Invoke();
            server.Run(Math.Max(1, options.Threads));
        }
        finally
        {
            if (IsMounted(target))
                Unmount(target);
            FuseNative.Close(fd);
        }
    }

    /// <summary>Opens /dev/fuse and mounts it with mount(2); returns the descriptor.</summary>
    private static int MountAsRoot(string branchName, string target, string mountpoint, bool readOnly)
    {
        int fd = FuseNative.Open("/dev/fuse", FuseNative.ORdwr | FuseNative.OCloexec);
        if (fd < 0)
            throw new IOException($"cannot open /dev/fuse: {FuseNative.Describe(FuseNative.LastError)} (is fuse3 installed and the fuse module loaded?)");
        string data = $"fd={fd},rootmode=40000,user_id={FuseNative.Geteuid()},group_id={FuseNative.Getegid()},allow_other,default_permissions";
        ulong flags = FuseNative.MsNosuid | FuseNative.MsNodev | (readOnly ? FuseNative.MsRdonly : 0);
        // The source names the server (daxfs:BRANCH:PID:PIDNS), so an unmount can tell a busy server from a dead or frozen
        // one. The PID namespace goes with the pid: a pid means that process only in the namespace it was taken in.
        if (FuseNative.Mount($"daxfs:{branchName}:{Environment.ProcessId}:{PidNamespace()}", target, "fuse.daxfs", flags, data) != 0)
        {
            int errno = FuseNative.LastError;
            FuseNative.Close(fd);
            throw new IOException($"mounting {branchName} at {mountpoint} failed: {FuseNative.Describe(errno)}");
        }
        return fd;
    }

    /// <summary>
    /// Mounts as a user other than root: the setuid fusermount3 helper opens /dev/fuse, mounts it (nosuid,
    /// nodev, owned by this user), and passes the descriptor back over a socket named by _FUSE_COMMFD.
    /// Other users get access only if /etc/fuse.conf allows it (user_allow_other).
    /// </summary>
    private static unsafe int MountWithHelper(string branchName, string target, string mountpoint, bool readOnly)
    {
        string helper = Helper() ?? throw new IOException("mounting as a user other than root needs fusermount3: apt-get install fuse3");
        int* pair = stackalloc int[2];
        if (FuseNative.SocketPair(FuseNative.AfUnix, FuseNative.SockStream, 0, pair) != 0)
            throw new IOException($"cannot create a socket pair for fusermount3: {FuseNative.Describe(FuseNative.LastError)}");
        try
        {
            bool allowOther = File.Exists("/etc/fuse.conf")
                && File.ReadLines("/etc/fuse.conf").Any(l => l.Trim() == "user_allow_other");
            string opts = $"default_permissions,fsname=daxfs:{branchName},subtype=daxfs{(allowOther ? ",allow_other" : "")}{(readOnly ? ",ro" : "")}";
            var psi = new ProcessStartInfo(helper) { UseShellExecute = false, RedirectStandardError = true, RedirectStandardOutput = true };
            foreach (var a in new[] { "-o", opts, "--", target }) psi.ArgumentList.Add(a);
            psi.Environment["_FUSE_COMMFD"] = pair[1].ToString(System.Globalization.CultureInfo.InvariantCulture);
            using var p = Process.Start(psi) ?? throw new IOException($"cannot run {helper}");
            FuseNative.Close(pair[1]); // the helper holds its end; ours sees end-of-file if it exits without sending
            pair[1] = -1;
            int fd = FuseNative.ReceiveDescriptor(pair[0]);
            string err = p.StandardError.ReadToEnd().Trim();
            p.WaitForExit();
            if (fd < 0)
                throw new IOException($"mounting {branchName} at {mountpoint} through fusermount3 failed: {(err.Length > 0 ? err : $"exit code {p.ExitCode}")}");
            return fd;
        }
        finally
        {
            FuseNative.Close(pair[0]);
            if (pair[1] >= 0) FuseNative.Close(pair[1]);
        }
    }

    /// <summary>
    /// Raises the kernel's readahead for this mount from the default 128 KiB to 4 MiB, so sequential reads
    /// arrive as large requests (up to 4 MiB each). Best effort: needs root (a mount by another user keeps the default).
    /// </summary>
    private static void TuneReadahead(string target)
    {
        try
        {
            foreach (var line in File.ReadLines("/proc/self/mountinfo"))
            {
                var fields = line.Split(' ');
                if (fields.Length > 4 && Unescape(fields[4]) == target)
                {
                    string bdi = $"/sys/class/bdi/{fields[2]}/read_ahead_kb";
                    if (!File.Exists(bdi)) continue;
                    using var f = new FileStream(bdi, FileMode.Open, FileAccess.Write, FileShare.ReadWrite, 1);
                    f.Write("4096\n"u8); // sysfs: a plain write, no truncation
                }
            }
        }
        catch (IOException) { }
        catch (UnauthorizedAccessException) { }
    }

    /// <summary>
    /// Unmounts <paramref name="mountpoint"/> (lazily, so a busy or crashed mount is cleared too). As root, a
    /// connection whose server does not end within 2 s of the unmount (it died, or hangs) is then aborted through
    /// the kernel's fusectl, so no process stays blocked on it.
    /// </summary>
    public static void Unmount(string mountpoint)
    {
        string target = Path.GetFullPath(mountpoint);
        if (FuseNative.Geteuid() == 0)
        {
            string? connection = ConnectionOf(target, out int? server);
            if (FuseNative.Umount2(target, FuseNative.MntDetach) != 0)
            {
                int errno = FuseNative.LastError;
                if (errno == FuseNative.EINVAL && !IsMounted(target))
                    throw new IOException($"{mountpoint}: not mounted");
                throw new IOException($"unmounting {mountpoint} failed: {FuseNative.Describe(errno)}");
            }
            if (connection is not null)
                AbortIfStuck(connection, server);
            return;
        }
        var psi = new ProcessStartInfo("fusermount3", ["-u", "-z", target]) { RedirectStandardError = true };
        using var p = Process.Start(psi) ?? throw new IOException("cannot run fusermount3 (install fuse3)");
        string err = p.StandardError.ReadToEnd();
        p.WaitForExit();
        if (p.ExitCode != 0)
            throw new IOException($"unmounting {mountpoint} failed: {err.Trim()}");
    }

    /// <summary>The fusectl directory of the FUSE connection mounted at <paramref name="target"/> (by its device minor), or null.</summary>
    private static string? ConnectionOf(string target, out int? server)
    {
        server = null;
        foreach (var line in File.ReadLines("/proc/self/mountinfo"))
        {
            var fields = line.Split(' ');
            int dash = Array.IndexOf(fields, "-");
            if (fields.Length > 4 && Unescape(fields[4]) == target && dash > 0 && dash + 1 < fields.Length && fields[dash + 1].StartsWith("fuse", StringComparison.Ordinal))
            {
                // Our mounts' source is daxfs:BRANCH:PID:PIDNS (a server of this tool). Its pid is used only in the PID
                // namespace it was taken in (this one): elsewhere it may name any process.
                if (dash + 2 < fields.Length && Unescape(fields[dash + 2]) is { } source && source.StartsWith("daxfs:", StringComparison.Ordinal)
                    && source.Split(':') is { Length: >= 4 } parts && parts[^1] != "?" && parts[^1] == PidNamespace()
                    && int.TryParse(parts[^2], System.Globalization.NumberStyles.None, System.Globalization.CultureInfo.InvariantCulture, out int pid))
                    server = pid;
                return $"/sys/fs/fuse/connections/{fields[2].Split(':')[1]}";
            }
        }
        return null;
    }

    /// <summary>This process's PID namespace (the inode number of /proc/self/ns/pid), or "?" when it cannot be told.</summary>
    private static string PidNamespace()
    {
        try
        {
            string? link = new FileInfo("/proc/self/ns/pid").LinkTarget; // "pid:[4026531836]"
            return link is not null && link.StartsWith("pid:[", StringComparison.Ordinal) ? link[5..^1] : "?";
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            return "?";
        }
    }

    /// <summary>The state letter of process <paramref name="pid"/> (R, S, D, T, t, Z…) and its CPU time in ticks, when it is a daxfs mount server; null otherwise.</summary>
    private static (char State, long Ticks)? ServerState(int pid)
    {
        try
        {
            string cmdline = File.ReadAllText($"/proc/{pid}/cmdline");
            if (!cmdline.Contains("mount", StringComparison.Ordinal) || !cmdline.Contains("daxfs", StringComparison.Ordinal))
                return null; // the pid was reused: not our server
            if (!Directory.EnumerateFileSystemEntries($"/proc/{pid}/fd").Any(fd => new FileInfo(fd).LinkTarget == "/dev/fuse"))
                return null; // it holds no FUSE connection: not a server
            string stat = File.ReadAllText($"/proc/{pid}/stat");
            var rest = stat[(stat.LastIndexOf(')') + 2)..].Split(' ');
            return (rest[0][0], long.Parse(rest[11], System.Globalization.CultureInfo.InvariantCulture) + long.Parse(rest[12], System.Globalization.CultureInfo.InvariantCulture));
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException or FormatException or IndexOutOfRangeException)
        {
            return null;
        }
    }

    /// <summary>
    /// Aborts the connection <paramref name="dir"/> names when, 2 s after its unmount, it still has requests no
    /// server answers. A connection that lives on only because processes still use the detached tree (a working
    /// directory, an open file) has none waiting and is left alone, and so is one whose server (named by the mount's
    /// source) is alive and working: a busy server has requests waiting all the time, and it ends after the last user.
    /// A server that is stopped, or makes no progress for 2 s more, is stuck: the connection is aborted and the server
    /// killed (requests an io_uring queue had taken are released only when their server goes).
    /// </summary>
    private static void AbortIfStuck(string dir, int? server)
    {
        try
        {
            if (!Directory.Exists("/sys/fs/fuse/connections") || !File.Exists("/proc/filesystems")) return;
            if (!Directory.EnumerateFileSystemEntries("/sys/fs/fuse/connections").Any()
                && File.ReadAllText("/proc/filesystems").Contains("fusectl", StringComparison.Ordinal))
                FuseNative.Mount("fusectl", "/sys/fs/fuse/connections", "fusectl", 0, ""); // where it is not mounted yet
            int Waiting() => Directory.Exists(dir) && int.TryParse(File.ReadAllText(Path.Combine(dir, "waiting")).Trim(), out int n) ? n : 0;
            for (int i = 0; i < 20 && Waiting() > 0; i++)
                Thread.Sleep(100);
            if (Waiting() == 0)
                return;
            if (server is int pid && ServerState(pid) is { } first)
            {
                if (first.State is not ('T' or 't' or 'Z'))
                {
                    // Alive: stuck only if it does no work at all while requests wait.
                    for (int i = 0; i < 20; i++)
                    {
                        Thread.Sleep(100);
                        if (Waiting() == 0 || ServerState(pid) is not { } now || now.Ticks != first.Ticks && now.State is not ('T' or 't'))
                            return;
                    }
                }
                File.WriteAllText(Path.Combine(dir, "abort"), "1");
                _ = FuseNative.Kill(pid, 9);
                return;
            }
            File.WriteAllText(Path.Combine(dir, "abort"), "1");
        }
        catch (IOException) { }
        catch (UnauthorizedAccessException) { }
    }

    /// <summary>The kernel's switch for FUSE over io_uring.</summary>
    internal const string UringParameter = "/sys/module/fuse/parameters/enable_uring";

    /// <summary>
    /// Why this kernel will not carry FUSE requests over io_uring now, with the one command that would change it; null
    /// when it will (the module parameter is on and io_uring is not disabled).
    /// </summary>
    public static string? UringProblem()
    {
        if (!File.Exists(UringParameter))
            return "this kernel has no FUSE over io_uring (it needs Linux 6.14 or later built with CONFIG_FUSE_IO_URING)";
        if (File.Exists("/proc/sys/kernel/io_uring_disabled") && File.ReadAllText("/proc/sys/kernel/io_uring_disabled").Trim() != "0")
            return "io_uring is disabled on this machine (as root: sysctl kernel.io_uring_disabled=0)";
        if (File.ReadAllText(UringParameter).Trim() != "Y")
            return $"the fuse module's io_uring is off (as root: echo Y > {UringParameter}, or mount with --enable-kernel-uring)";
        return null;
    }

    /// <summary>Before mounting: switches the kernel's io_uring on when asked and allowed, refuses --uring on when it is off, and says what auto will do.</summary>
    private static void UringPreflight(MountOptions options, TextWriter log)
    {
        if (options.Uring == UringMode.Off || UringProblem() is not { } problem)
            return;
        if (options.EnableKernelUring && FuseNative.Geteuid() == 0 && File.Exists(UringParameter) && problem.StartsWith("the fuse module", StringComparison.Ordinal))
        {
            File.WriteAllText(UringParameter, "Y");
            log.WriteLine($"daxfs mount: switched the kernel's FUSE io_uring on ({UringParameter} = Y; it stays on until the module reloads or echo N > {UringParameter})");
            return;
        }
        if (options.Uring == UringMode.On)
            throw new IOException($"--uring on: {problem}");
        log.WriteLine($"daxfs mount: serving through /dev/fuse: {problem}");
    }

    /// <summary>Throws <see cref="IOException"/> naming <paramref name="mountpoint"/> when something is mounted there.</summary>
    public static void RequireNotMounted(string mountpoint)
    {
        if (!IsMounted(mountpoint))
            return;
        // A mount whose server died stays in the mount table, and every access to it fails (ENOTCONN).
        if (!Directory.Exists(mountpoint) && !File.Exists(mountpoint))
            throw new IOException($"{mountpoint}: not connected: a mount whose server is gone is still there (run daxfs unmount {mountpoint})");
        throw new IOException($"{mountpoint}: something is already mounted there (daxfs unmount {mountpoint} first)");
    }

    /// <summary>True when something is mounted at <paramref name="mountpoint"/> (from /proc/self/mountinfo).</summary>
    public static bool IsMounted(string mountpoint)
    {
        string target = Path.GetFullPath(mountpoint).TrimEnd('/');
        if (target.Length == 0) target = "/";
        foreach (var line in File.ReadLines("/proc/self/mountinfo"))
        {
            var fields = line.Split(' ');
            if (fields.Length > 4 && Unescape(fields[4]) == target)
                return true;
        }
        return false;
    }

    private static string Unescape(string s) => s.Replace("\\040", " ", StringComparison.Ordinal).Replace("\\011", "\t", StringComparison.Ordinal)
        .Replace("\\012", "\n", StringComparison.Ordinal).Replace("\\134", "\\", StringComparison.Ordinal);
}
