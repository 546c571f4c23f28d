using System.Diagnostics;

namespace Daxfs.Branching.Fuse;

/// <summary>How a branch is mounted.</summary>
public sealed record MountOptions
{
    /// <summary>Refuse writes (EROFS) even if the branch accepts them. Main is always mounted read-only.</summary>
    public bool ReadOnly { get; init; }

    /// <summary>Threads serving requests (default 2).</summary>
    public int Threads { get; init; } = 2;

    /// <summary>How long the kernel may cache names and attributes (default 1 s). Changes made elsewhere are also pushed.</summary>
    public TimeSpan CacheTimeout { get; init; } = TimeSpan.FromSeconds(1);

    /// <summary>
    /// Files at least this large (default 1 MiB), when opened read-only, are read past the kernel's page cache: each
    /// read is answered by one copy from the region into the reader's buffer, as on a DAX file system, instead of
    /// one copy into the page cache and another out of it, and a file read through N mounts is not held N times in
    /// memory. Smaller files and files opened for writing stay cached (fast re-reads). <see cref="long.MaxValue"/>
    /// caches every file. Needs a kernel that allows mmap of such files (Linux 6.6 or later); older ones cache all.
    /// </summary>
    public long DirectReadSize { get; init; } = 1 << 20;

    /// <summary>Where the server reports failures it cannot answer through the kernel (default: standard error).</summary>
    public TextWriter? Log { get; init; }
}

/// <summary>
/// Mounts a branch of a region as a directory through FUSE, so any program works inside the branch.
/// The server speaks the kernel protocol on /dev/fuse itself (no libfuse needed at run time); mounting
/// uses mount(2) and so needs root.
/// </summary>
public static class BranchMount
{
    /// <summary>Why mounting cannot work on this machine, with what to install; null when it can.</summary>
    public static string? FuseProblem()
    {
        if (!File.Exists("/dev/fuse"))
            return "FUSE is not available: /dev/fuse is missing. Install FUSE 3 (on Debian or Ubuntu: apt-get install fuse3) and load the module (modprobe fuse).";
        if (FuseNative.Geteuid() != 0)
            return "mounting a branch needs root (the mount is made with mount(2)); run as root or through sudo.";
        return null;
    }

    /// <summary>
    /// Mounts branch <paramref name="branchName"/> of the region at <paramref name="mountpoint"/> and serves it
    /// until it is unmounted or <paramref name="cancel"/> is signalled. <paramref name="ready"/> is called once the
    /// mount is in place.
    /// </summary>
    public static void Run(string regionPath, string branchName, string mountpoint, MountOptions? options = null, Action? ready = null, CancellationToken cancel = default)
    {
        options ??= new MountOptions();
        if (FuseProblem() is { } problem)
            throw new InvalidOperationException(problem);
        string target = Path.GetFullPath(mountpoint);
        if (!Directory.Exists(target))
            throw new DirectoryNotFoundException($"{mountpoint}: mount point is not a directory");
        if (IsMounted(target))
            throw new IOException($"{mountpoint}: something is already mounted there (daxfs unmount {mountpoint} first)");
        using var store = Store.Open(regionPath);
        var branch = store.GetBranch(branchName);
        bool readOnly = options.ReadOnly || branch.IsMain;
        int fd = FuseNative.Open("/dev/fuse", FuseNative.ORdwr | FuseNative.OCloexec);
        if (fd < 0)
            throw new IOException($"cannot open /dev/fuse: {FuseNative.Describe(FuseNative.LastError)} (is fuse3 installed and the fuse module loaded?)");
        try
        {
            string data = $"fd={fd},rootmode=40000,user_id={FuseNative.Geteuid()},group_id={FuseNative.Getegid()},allow_other,default_permissions";
            ulong flags = FuseNative.MsNosuid | FuseNative.MsNodev | (readOnly ? FuseNative.MsRdonly : 0);
            if (FuseNative.Mount($"daxfs:{branchName}", target, "fuse.daxfs", flags, data) != 0)
            {
                int errno = FuseNative.LastError;
                throw new IOException($"mounting {branchName} at {mountpoint} failed: {FuseNative.Describe(errno)}");
            }
            using var registration = cancel.Register(() => Unmount(target));
            var server = new FuseServer(fd, store, branch, readOnly, options.Log ?? Console.Error)
            {
                EntryTimeout = options.CacheTimeout,
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

    /// <summary>
    /// Raises the kernel's readahead for this mount from the default 128 KiB to 4 MiB, so sequential reads
    /// arrive as large requests (up to 4 MiB each). Best effort: needs root, as mounting does.
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

    /// <summary>Unmounts <paramref name="mountpoint"/> (lazily, so a busy or crashed mount is cleared too).</summary>
    public static void Unmount(string mountpoint)
    {
        string target = Path.GetFullPath(mountpoint);
        if (FuseNative.Geteuid() == 0)
        {
            if (FuseNative.Umount2(target, FuseNative.MntDetach) != 0)
            {
                int errno = FuseNative.LastError;
                if (errno == FuseNative.EINVAL && !IsMounted(target))
                    throw new IOException($"{mountpoint}: not mounted");
                throw new IOException($"unmounting {mountpoint} failed: {FuseNative.Describe(errno)}");
            }
            return;
        }
        var psi = new ProcessStartInfo("fusermount3", ["-u", "-z", target]) { RedirectStandardError = true };
        using var p = Process.Start(psi) ?? throw new IOException("cannot run fusermount3 (install fuse3)");
        string err = p.StandardError.ReadToEnd();
        p.WaitForExit();
        if (p.ExitCode != 0)
            throw new IOException($"unmounting {mountpoint} failed: {err.Trim()}");
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
