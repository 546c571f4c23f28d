using System.Diagnostics;
using Daxfs.Branching.Fuse;

namespace Daxfs.Branching.Peers;

/// <summary>The scenarios, each run on every system that can run here.</summary>
internal sealed class Peers(string work, string ws, string region, Report report, bool root, bool quick)
{
    private int _n;
    private string Fresh(string name) => Path.Combine(work, $"{name}-{++_n}");

    private static string Daxfs => Path.Combine(AppContext.BaseDirectory, "daxfs.dll");

    private string? NeedRoot(string what) => root ? null : $"{what} needs root";

    private void Try(string scenario, string system, Func<string?> check, Func<Figure> run)
    {
        string? why = check();
        if (why is not null) { report.Skip(scenario, system, why); return; }
        try { report.Add(run()); }
        catch (Exception e)
        {
            // A peer that breaks on this machine is reported, not fatal: the other figures still stand.
            report.Skip(scenario, system, $"failed: {e.GetType().Name}: {e.Message.Split('\n')[0]}");
        }
    }

    // ------------------------------------------------------------------ fork

    public void Fork()
    {
        Console.WriteLine("fork a workspace:");
        int reps = quick ? 5 : 20;
        Try("fork", "ours (library)", () => null, () =>
        {
            using var s = Store.Open(region);
            s.Main.Fork("warm").Discard();
            var samples = new List<double>();
            for (int i = 0; i < 200; i++)
            {
                Branch? b = null;
                samples.Add(Sh.TimeMs(() => b = s.Main.Fork($"f{i}")));
                b!.Discard();
            }
            return new Figure("fork", "ours (library)", "ms", samples);
        });
        Try("fork", "ours (CLI branch create)", () => File.Exists(Daxfs) ? null : "daxfs.dll not beside the runner", () =>
        {
            var samples = new List<double>();
            for (int i = 0; i < reps; i++)
                samples.Add(Sh.TimeMs(() => Sh.Run("dotnet", Daxfs, "branch", "create", $"cli{i}", "-r", region)));
            using (var s = Store.Open(region))
                for (int i = 0; i < reps; i++) s.GetBranch($"cli{i}").Discard();
            return new Figure("fork", "ours (CLI branch create)", "ms", samples, "a whole process: .NET start-up included");
        });
        Try("fork", "cp -a (tmpfs)", () => null, () =>
        {
            var samples = new List<double>();
            for (int i = 0; i < Math.Min(reps, 5); i++)
            {
                string dest = Fresh("copy");
                samples.Add(Sh.TimeMs(() => Sh.Run("cp", "-a", ws, dest)));
                Directory.Delete(dest, true);
            }
            return new Figure("fork", "cp -a (tmpfs)", "ms", samples);
        });
        Try("fork", "overlayfs (mkdir+mount)", () => NeedRoot("mount -t overlay"), () =>
        {
            var samples = new List<double>();
            for (int i = 0; i < reps; i++)
            {
                string o = Fresh("ovl");
                samples.Add(Sh.TimeMs(() => OverlayMount(o)));
                Sh.Run("umount", Path.Combine(o, "m"));
            }
            return new Figure("fork", "overlayfs (mkdir+mount)", "ms", samples);
        });
        Try("fork", "btrfs snapshot", BtrfsCheck, () =>
        {
            string mnt = BtrfsWithWorkspace();
            var samples = new List<double>();
            for (int i = 0; i < reps; i++)
                samples.Add(Sh.TimeMs(() => Sh.Run("btrfs", "subvolume", "snapshot", Path.Combine(mnt, "ws"), Path.Combine(mnt, $"snap{i}"))));
            return new Figure("fork", "btrfs snapshot", "ms", samples, "subvolume snapshot on a loop file in /dev/shm");
        });
        Try("fork", "git worktree add", () => Sh.Has("git") ? null : "git not found", () =>
        {
            string repo = GitRepo();
            var samples = new List<double>();
            for (int i = 0; i < Math.Min(reps, 5); i++)
                samples.Add(Sh.TimeMs(() => Sh.Run("git", "-C", repo, "worktree", "add", "-q", Path.Combine(work, $"wt{i}"))));
            return new Figure("fork", "git worktree add", "ms", samples);
        });
    }

    private void OverlayMount(string o)
    {
        foreach (var d in new[] { "u", "w", "m" }) Directory.CreateDirectory(Path.Combine(o, d));
        Sh.Run("mount", "-t", "overlay", "overlay", "-o", $"lowerdir={ws},upperdir={o}/u,workdir={o}/w", Path.Combine(o, "m"));
    }

    private string? BtrfsCheck() => NeedRoot("a loop mount") ?? (Sh.Has("mkfs.btrfs") ? null : "mkfs.btrfs not found (apt-get install btrfs-progs)");

    private string? _btrfs;

    /// <summary>A btrfs file system on a loop file in /dev/shm holding the workspace as subvolume "ws".</summary>
    private string BtrfsWithWorkspace()
    {
        if (_btrfs is not null) return _btrfs;
        long size = Math.Max(2L << 30, Workspace.Size(ws) * 6);
        string img = Path.Combine(work, "btrfs.img");
        using (var f = new FileStream(img, FileMode.Create)) f.SetLength(size);
        Sh.Run("mkfs.btrfs", "-q", img);
        string mnt = Path.Combine(work, "btrfs");
        Directory.CreateDirectory(mnt);
        Sh.Run("mount", "-o", "loop", img, mnt);
        Sh.Run("btrfs", "subvolume", "create", Path.Combine(mnt, "ws"));
        Sh.Bash($"cp -a '{ws}/.' '{mnt}/ws/'");
        return _btrfs = mnt;
    }

    private string? _repo;

    private string GitRepo()
    {
        if (_repo is not null) return _repo;
        string repo = Path.Combine(work, "repo");
        Sh.Run("cp", "-a", ws, repo);
        Sh.Bash("git init -q . && git add -A && git -c user.email=b@example.org -c user.name=bench commit -qm base", repo);
        return _repo = repo;
    }

    // ------------------------------------------------------------------ scaling

    public void Scaling()
    {
        Console.WriteLine("fork scaling:");
        var sizes = quick ? new[] { 10L << 20, 100L << 20 } : new[] { 10L << 20, 100L << 20, 1L << 30, 4L << 30 };
        foreach (long size in sizes)
        {
            string label = size >= 1L << 30 ? $"{size >> 30} GiB" : $"{size >> 20} MiB";
            Try($"fork, workspace {label}", "ours (library)", () => null, () =>
            {
                string dir = Fresh("scale");
                long bytes = Workspace.Generate(dir, (int)Math.Clamp(size / (80 * 1024), 100, 20000), size, seed: 2);
                string r = Fresh("scale.daxfs");
                using var s = Store.Create(r, BaseImageBuilder.FromDirectory(dir), new StoreOptions { Capacity = bytes + (256L << 20) });
                Directory.Delete(dir, true);
                s.Main.Fork("warm").Discard();
                var samples = new List<double>();
                for (int i = 0; i < 100; i++)
                {
                    Branch? b = null;
                    samples.Add(Sh.TimeMs(() => b = s.Main.Fork($"f{i}")));
                    b!.Discard();
                }
                s.Dispose();
                File.Delete(r);
                return new Figure($"fork, workspace {label}", "ours (library)", "ms", samples);
            });
        }
        foreach (int depth in new[] { 1, 8, 64 })
        {
            Try($"fork at depth {depth}", "ours (library)", () => null, () =>
            {
                using var s = Store.Open(region);
                var b = s.Main.Fork($"d1-{depth}");
                for (int d = 2; d < depth; d++) b = b.Fork($"d{d}-{depth}");
                var parent = b;
                var samples = new List<double>();
                for (int i = 0; i < 100; i++)
                {
                    Branch? c = null;
                    samples.Add(Sh.TimeMs(() => c = depth == 1 ? s.Main.Fork($"x{i}") : parent.Fork($"x{i}")));
                    c!.Discard();
                }
                b.Abort();
                return new Figure($"fork at depth {depth}", "ours (library)", "ms", samples);
            });
        }
        // Space: 100 forks, each changing 1 MiB of one file.
        long wsBytes = Workspace.Size(ws);
        var target = Workspace.Pick(ws, 1)[0];
        Try("space for 100 forks × 1 MiB", "ours (library)", () => null, () =>
        {
            using var s = Store.Open(region);
            long before = s.Usage.ArenaBytes - s.Usage.ArenaFreeBytes;
            var payload = new byte[1 << 20];
            new Random(3).NextBytes(payload);
            for (int i = 0; i < 100; i++) s.Main.Fork($"sp{i}").Write(target, 0, payload);
            long grown = s.Usage.ArenaBytes - s.Usage.ArenaFreeBytes - before;
            for (int i = 0; i < 100; i++) s.GetBranch($"sp{i}").Discard();
            double overheadPct = (grown - 100.0 * (1 << 20)) / wsBytes * 100;
            return new Figure("space for 100 forks × 1 MiB", "ours (library)", "MiB", [grown / (double)(1 << 20)],
                $"beyond the 100 MiB changed: {overheadPct:0.###}% of the workspace");
        });
        Try("space for 100 forks × 1 MiB", "overlayfs", () => NeedRoot("mount -t overlay"), () =>
        {
            var dirs = new List<string>();
            for (int i = 0; i < 100; i++)
            {
                string o = Fresh("ovlspace");
                OverlayMount(o);
                using (var f = new FileStream(Path.Combine(o, "m", target), FileMode.Open, FileAccess.Write)) f.Write(new byte[1 << 20]);
                Sh.Run("umount", Path.Combine(o, "m"));
                dirs.Add(o);
            }
            long bytes = long.Parse(Sh.Bash($"du -sb {string.Join(' ', dirs.Select(d => $"'{d}/u'"))} | awk '{{s+=$1}} END {{print s}}'").Trim(), System.Globalization.CultureInfo.InvariantCulture);
            return new Figure("space for 100 forks × 1 MiB", "overlayfs", "MiB", [bytes / (double)(1 << 20)], "copy-up copies the whole file");
        });
        Try("space for 100 forks × 1 MiB", "btrfs snapshot", BtrfsCheck, () =>
        {
            string mnt = BtrfsWithWorkspace();
            Sh.Run("btrfs", "filesystem", "sync", mnt);
            long Used() => long.Parse(Sh.Bash($"df -B1 --output=used '{mnt}' | tail -1").Trim(), System.Globalization.CultureInfo.InvariantCulture);
            long before = Used();
            for (int i = 0; i < 100; i++)
            {
                string snap = Path.Combine(mnt, $"space{i}");
                Sh.Run("btrfs", "subvolume", "snapshot", Path.Combine(mnt, "ws"), snap);
                using var f = new FileStream(Path.Combine(snap, target), FileMode.Open, FileAccess.Write);
                f.Write(new byte[1 << 20]);
            }
            Sh.Run("btrfs", "filesystem", "sync", mnt);
            return new Figure("space for 100 forks × 1 MiB", "btrfs snapshot", "MiB", [(Used() - before) / (double)(1 << 20)]);
        });
        report.Skip("space for 100 forks × 1 MiB", "cp -a (tmpfs)", $"would copy the workspace 100 times ({100 * wsBytes >> 20} MiB); its cost is 100 × the workspace by construction");
    }

    // ------------------------------------------------------------------ reads

    public void Read()
    {
        Console.WriteLine("reads:");
        long size = quick ? 128L << 20 : 1L << 30;
        string label = quick ? "128 MiB" : "1 GiB";
        string bigDir = Fresh("big");
        Directory.CreateDirectory(bigDir);
        string bigFile = Path.Combine(bigDir, "big.bin");
        using (var f = new FileStream(bigFile, FileMode.Create))
        {
            var buf = new byte[1 << 20];
            var rng = new Random(4);
            for (long d = 0; d < size; d += buf.Length) { rng.NextBytes(buf); f.Write(buf); }
        }
        string bigRegion = Fresh("big.daxfs");
        Store.Create(bigRegion, BaseImageBuilder.FromDirectory(bigDir), new StoreOptions { Capacity = size + (256L << 20) }).Dispose();
        int reps = quick ? 3 : 5;
        int rounds = quick ? 3 : 9;
        // Page-aligned, as cat, cp and dd read into: through FUSE an unaligned 1 MiB buffer spans 257 pages,
        // and at the kernel's default limit of 256 pages per request every such read becomes two requests.
        using var aligned = new AlignedBuffer(1 << 20);
        var memory = aligned.Memory;

        // A file system is read the classic way, by `dd bs=1M` in a process of its own, timed by dd itself
        // (from its first read to its last). The same reader for every system.
        double DdMs(string path)
        {
            string err = Sh.RunErr("dd", $"if={path}", "of=/dev/null", "bs=1M");
            string line = err.Split('\n').FirstOrDefault(l => l.Contains(" copied, ")) ?? throw new InvalidOperationException($"dd printed no summary: {err}");
            if (!line.StartsWith($"{size} bytes", StringComparison.Ordinal)) throw new InvalidOperationException($"dd read less than the file: {line}");
            string seconds = line[(line.IndexOf(" copied, ", StringComparison.Ordinal) + 9)..].Split(' ')[0];
            return double.Parse(seconds, System.Globalization.CultureInfo.InvariantCulture) * 1000;
        }

        // The same file read by a program that keeps several reads in flight (io_uring, as databases and
        // modern copy tools do): fio, 1 MiB reads, four at a time, buffered like dd's. fio's own bandwidth figure.
        bool fio = Sh.Has("fio");
        double FioMs(string path)
        {
            string terse = Sh.Run("fio", "--name=seq", $"--filename={path}", "--rw=read", "--bs=1M", $"--size={size}", "--ioengine=io_uring",
                "--iodepth=4", "--direct=0", "--readonly", "--output-format=terse");
            var fields = terse.Trim().Split('\n')[^1].Split(';');
            // terse v3: field 6 is the bytes read (KiB), field 7 the bandwidth (KiB/s)
            long kib = long.Parse(fields[5], System.Globalization.CultureInfo.InvariantCulture);
            long kibPerSecond = long.Parse(fields[6], System.Globalization.CultureInfo.InvariantCulture);
            if (kib * 1024 != size) throw new InvalidOperationException($"fio read {kib} KiB of {size >> 10}");
            if (kibPerSecond <= 0) throw new InvalidOperationException($"fio gave no bandwidth: {terse.Trim()}");
            return kib / (double)kibPerSecond * 1000;
        }

        Figure Rand(string system, Func<long, int> read4k)
        {
            var rng = new Random(5);
            var offsets = Enumerable.Range(0, 20000).Select(_ => rng.NextInt64(0, size / 4096) * 4096).ToArray();
            return new Figure("4 KiB random read", system, "ms", Enumerable.Range(0, reps).Select(_ =>
            {
                Sh.DropCaches();
                double ms = Sh.TimeMs(() => { foreach (var o in offsets) if (read4k(o) != 4096) throw new InvalidOperationException("short read"); });
                return ms / offsets.Length;
            }).ToList(), "per read, 20,000 reads at random aligned offsets");
        }

        const string Tmpfs = "tmpfs file", Spans = "ours (spans, copied out)", Mount = "ours (mount)",
            Cached = "ours (mount, page cache)", Overlay = "overlayfs (tmpfs lower)";
        string? problem = BranchMount.FuseProblem() ?? (File.Exists(Daxfs) ? null : "daxfs.dll not beside the runner");
        string ovl = Fresh("ovlread");
        string ovlFile = Path.Combine(ovl, "m", "big.bin");
        bool overlay = false;
        if (root)
        {
            foreach (var d in new[] { "u", "w", "m" }) Directory.CreateDirectory(Path.Combine(ovl, d));
            Sh.Run("mount", "-t", "overlay", "overlay", "-o", $"lowerdir={bigDir},upperdir={ovl}/u,workdir={ovl}/w", Path.Combine(ovl, "m"));
            overlay = true;
        }
        try
        {
            using var store = Store.Open(bigRegion);
            var h = store.Main.OpenFile("big.bin");
            // Every system is mounted at once, and each round reads the file once on each of them (starting
            // with a different one each round), so a slow or fast spell of this shared machine falls on all of
            // them alike; each round's ratio of the mount to tmpfs is kept too.
            WithMountProcess(bigRegion, problem, direct =>
            WithMountProcess(bigRegion, problem, cached =>
            {
                string seq = $"sequential read {label}", seqFio = $"sequential read {label}, 4 reads in flight";
                var passes = new List<(string Scenario, string System, Func<double> TimeMs)>
                {
                    (seq, Spans, () => Sh.TimeMs(() =>
                    {
                        long off = 0;
                        while (off < size) off += h.Read(off, memory.Span);
                    })),
                };
                foreach (var (system, path) in new[] { (Tmpfs, bigFile), (Mount, direct is null ? null : Path.Combine(direct, "big.bin")),
                    (Cached, cached is null ? null : Path.Combine(cached, "big.bin")), (Overlay, overlay ? ovlFile : null) })
                {
                    if (path is null) continue;
                    passes.Add((seq, system, () => DdMs(path)));
                    if (fio) passes.Add((seqFio, system, () => FioMs(path)));
                }
                var samples = passes.ToDictionary(x => (x.Scenario, x.System), _ => new List<double>());
                var failed = new Dictionary<(string, string), string>();
                for (int round = 0; round < rounds; round++)
                    for (int k = 0; k < passes.Count; k++)
                    {
                        var (scenario, system, timeMs) = passes[(k + round) % passes.Count];
                        if (failed.ContainsKey((scenario, system))) continue;
                        try
                        {
                            Sh.DropCaches();
                            samples[(scenario, system)].Add(size / (double)(1 << 20) / (timeMs() / 1000));
                        }
                        catch (Exception e)
                        {
                            failed[(scenario, system)] = $"failed: {e.GetType().Name}: {e.Message.Split('\n')[0]}";
                        }
                    }
                foreach (var (scenario, system, _) in passes)
                {
                    if (failed.TryGetValue((scenario, system), out var why)) report.Skip(scenario, system, why);
                    else report.Add(new Figure(scenario, system, "MiB/s", samples[(scenario, system)],
                        system == Spans ? "in this process" : scenario == seq ? "dd bs=1M" : "fio, io_uring, 1 MiB reads, 4 in flight"));
                }
                foreach (var scenario in new[] { seq, seqFio })
                    foreach (var system in new[] { Mount, Cached, Overlay })
                        if (samples.TryGetValue((scenario, system), out var mine) && mine.Count == rounds
                            && samples.TryGetValue((scenario, Tmpfs), out var t) && t.Count == rounds)
                            report.Add(new Figure($"{scenario}, share of tmpfs in the same round", system, "%",
                                mine.Zip(t, (x, y) => 100 * x / y).ToList()));
                if (!fio)
                    foreach (var system in new[] { Tmpfs, Mount, Cached, Overlay })
                        report.Skip(seqFio, system, "fio is not installed (apt-get install fio)");

                Try("4 KiB random read", Spans, () => null, () => Rand(Spans, o => h.Read(o, memory.Span[..4096])));
                using (var th = File.OpenHandle(bigFile, FileMode.Open, FileAccess.Read))
                    Try("4 KiB random read", Tmpfs, () => null, () => Rand(Tmpfs, o => RandomAccess.Read(th, memory.Span[..4096], o)));
                if (direct is null)
                {
                    report.Skip(seq, Mount, problem ?? "the mount failed (see above)");
                    if (fio) report.Skip(seqFio, Mount, problem ?? "the mount failed (see above)");
                    report.Skip("4 KiB random read", Mount, problem ?? "the mount failed (see above)");
                }
                if (cached is null)
                {
                    report.Skip(seq, Cached, problem ?? "the mount failed (see above)");
                    if (fio) report.Skip(seqFio, Cached, problem ?? "the mount failed (see above)");
                    report.Skip("4 KiB random read", Cached, problem ?? "the mount failed (see above)");
                }
                if (direct is not null)
                {
                    using var mh = File.OpenHandle(Path.Combine(direct, "big.bin"), FileMode.Open, FileAccess.Read);
                    Try("4 KiB random read", Mount, () => null, () => Rand(Mount, o => RandomAccess.Read(mh, memory.Span[..4096], o)));
                }
                if (cached is not null)
                {
                    using var ch = File.OpenHandle(Path.Combine(cached, "big.bin"), FileMode.Open, FileAccess.Read);
                    Try("4 KiB random read", Cached, () => null, () => Rand(Cached, o => RandomAccess.Read(ch, memory.Span[..4096], o)));
                }
                if (overlay)
                {
                    using var oh = File.OpenHandle(ovlFile, FileMode.Open, FileAccess.Read);
                    Try("4 KiB random read", Overlay, () => null, () => Rand(Overlay, o => RandomAccess.Read(oh, memory.Span[..4096], o)));
                }
            }, "--direct-read", "off"));
        }
        finally
        {
            if (overlay) Sh.Run("umount", Path.Combine(ovl, "m"));
        }
        if (!root)
        {
            report.Skip($"sequential read {label}", Overlay, "mount -t overlay needs root");
            report.Skip($"sequential read {label}, 4 reads in flight", Overlay, "mount -t overlay needs root");
            report.Skip("4 KiB random read", Overlay, "mount -t overlay needs root");
        }
        File.Delete(bigRegion);
        Directory.Delete(bigDir, true);
    }

    /// <summary>
    /// Mounts main with the daxfs tool, as a user would: a server process of its own, not the reader's. Where
    /// there is a <paramref name="problem"/> (FUSE cannot mount here), runs <paramref name="body"/> with null.
    /// </summary>
    private void WithMountProcess(string regionPath, string? problem, Action<string?> body, params string[] options)
    {
        if (problem is not null)
        {
            body(null);
            return;
        }
        string mp = Fresh("mnt");
        Directory.CreateDirectory(mp);
        try
        {
            Sh.Run("dotnet", [Daxfs, "mount", mp, "-r", regionPath, "-b", "main", "--background", .. options]);
        }
        catch (InvalidOperationException e)
        {
            Console.WriteLine($"  mount {string.Join(' ', options)} failed: {e.Message.Split('\n')[0]}");
            body(null);
            return;
        }
        try { body(mp); }
        finally
        {
            try { Sh.Run("dotnet", Daxfs, "unmount", mp); }
            catch (InvalidOperationException e) { Console.WriteLine($"  unmount {mp} failed: {e.Message.Split('\n')[0]}"); }
        }
    }

    /// <summary>
    /// Mounts the whole region with one server process of its own (<c>daxfs mount MNT -r REGION --background</c>, no
    /// <c>-b</c>), as a user would, for the duration of <paramref name="body"/>, which gets the mount point and the
    /// server's pid.
    /// </summary>
    private void WithRegionMount(string regionPath, Action<string, int> body)
    {
        string mp = Fresh("rmnt");
        Directory.CreateDirectory(mp);
        string said = Sh.Run("dotnet", Daxfs, "mount", mp, "-r", regionPath, "--background");
        int pid = int.Parse(System.Text.RegularExpressions.Regex.Match(said, @"server pid (\d+)").Groups[1].Value, System.Globalization.CultureInfo.InvariantCulture);
        try { body(mp, pid); }
        finally
        {
            try { Sh.Run("dotnet", Daxfs, "unmount", mp); }
            catch (InvalidOperationException e) { Console.WriteLine($"  unmount {mp} failed: {e.Message.Split('\n')[0]}"); }
        }
    }

    /// <summary>Writes one command to a branch's control file, as any program would (open, write, close).</summary>
    private static void Control(string branchDir, string command)
    {
        using var f = new FileStream(Path.Combine(branchDir, ".daxfs", "ctl"), FileMode.Open, FileAccess.Write, FileShare.ReadWrite, 1);
        f.Write(System.Text.Encoding.UTF8.GetBytes(command + "\n"));
    }

    /// <summary>A process's anonymous resident memory (its heaps, not the mapped region), in KiB.</summary>
    private static long AnonKiB(int pid) => long.Parse(File.ReadLines($"/proc/{pid}/status").First(l => l.StartsWith("RssAnon:", StringComparison.Ordinal))
        .Split(' ', StringSplitOptions.RemoveEmptyEntries)[1], System.Globalization.CultureInfo.InvariantCulture);

    // ------------------------------------------------------------------ branch lifecycle through one mount

    /// <summary>
    /// Forks, commits and aborts as file operations on one region mount (mkdir, a write to .daxfs/ctl), timed in this
    /// process against a server process of its own; and the memory one server holds per branch it serves.
    /// </summary>
    public void MountLifecycle()
    {
        Console.WriteLine("branch lifecycle through one mount:");
        if (BranchMount.FuseProblem() is { } problem)
        {
            foreach (var sc in new[] { "fork", "commit 100 files (1 byte each)", "abort after 100 edits (1 byte each)", "idle cost of a mounted branch" })
                report.Skip(sc, "ours (one mount)", problem);
            return;
        }
        var targets = Workspace.Pick(ws, 100);
        int reps = quick ? 3 : 10;
        WithRegionMount(region, (mp, pid) =>
        {
            Try("fork", "ours (one mount: mkdir @NAME)", () => null, () =>
            {
                Directory.CreateDirectory(Path.Combine(mp, "@warm"));
                Directory.Delete(Path.Combine(mp, "@warm"));
                var samples = new List<double>();
                for (int i = 0; i < (quick ? 50 : 200); i++)
                {
                    string b = Path.Combine(mp, $"@mk{_n++}");
                    samples.Add(Sh.TimeMs(() => Directory.CreateDirectory(b)));
                    Directory.Delete(b); // rmdir: discard
                }
                return new Figure("fork", "ours (one mount: mkdir @NAME)", "ms", samples, "mkdir from this process, served by a server process of its own");
            });
            foreach (var (scenario, system, command, note) in new[]
            {
                ("commit 100 files (1 byte each)", "ours (one mount: echo commit > .daxfs/ctl)", "commit edit", "the commit step, as a write to the control file"),
                ("abort after 100 edits (1 byte each)", "ours (one mount: echo abort > .daxfs/ctl)", "abort", (string?)null),
            })
            {
                Try(scenario, system, () => null, () =>
                {
                    var samples = new List<double>();
                    for (int i = 0; i < reps; i++)
                    {
                        string b = Path.Combine(mp, $"@ctl{_n++}");
                        Directory.CreateDirectory(b);
                        foreach (var t in targets)
                            using (var f = new FileStream(Path.Combine(b, t), FileMode.Open, FileAccess.Write)) f.WriteByte(0x5A);
                        samples.Add(Sh.TimeMs(() => Control(b, command)));
                    }
                    return new Figure(scenario, system, "ms", samples, note);
                });
            }
            Try("idle cost of a mounted branch", "ours (one mount, 64 branches)", () => null, () =>
            {
                // Served means used: each branch is forked, a file of it read and its root listed, so the server
                // holds its entry, views and cached listings; then the server's heap is compared.
                var samples = new List<double>();
                for (int round = 0; round < (quick ? 1 : 3); round++)
                {
                    GC.Collect();
                    Thread.Sleep(300);
                    long before = AnonKiB(pid);
                    var made = new List<string>();
                    for (int i = 0; i < 64; i++)
                    {
                        string b = Path.Combine(mp, $"@idle{_n++}");
                        Directory.CreateDirectory(b);
                        File.ReadAllBytes(Path.Combine(b, targets[i]));
                        _ = Directory.GetFileSystemEntries(b);
                        made.Add(b);
                    }
                    Thread.Sleep(500); // the watcher's look at the new branches
                    long after = AnonKiB(pid);
                    samples.Add((after - before) / 64.0 / 1024.0);
                    foreach (var b in made) Directory.Delete(b);
                }
                return new Figure("idle cost of a mounted branch", "ours (one mount, 64 branches)", "MiB", samples, "growth of the server's anonymous memory (RssAnon) per branch served");
            });
        });
    }

    /// <summary>Mounts a branch in this process for the duration of <paramref name="body"/>.</summary>
    private void WithMount(string regionPath, string branch, string? problem, Action<string> body, MountOptions? options = null)
    {
        if (problem is not null)
        {
            report.Skip("mount", "ours (mount)", problem);
            return;
        }
        string mp = Fresh("mnt");
        Directory.CreateDirectory(mp);
        using var ready = new ManualResetEventSlim();
        using var cancel = new CancellationTokenSource();
        Exception? failure = null;
        var server = new Thread(() =>
        {
            try { BranchMount.Run(regionPath, branch, mp, options ?? new MountOptions(), ready.Set, cancel.Token); }
            catch (Exception e) { failure = e; ready.Set(); }
        }) { IsBackground = true };
        server.Start();
        ready.Wait();
        if (failure is not null) throw new InvalidOperationException("mount failed: " + failure.Message);
        try { body(mp); }
        finally
        {
            cancel.Cancel();
            server.Join(TimeSpan.FromSeconds(10));
        }
    }

    // ------------------------------------------------------------------ metadata and git status

    public void Metadata()
    {
        Console.WriteLine("metadata:");
        string? problem = BranchMount.FuseProblem();
        string meta = Fresh("meta");
        for (int i = 0; i < 10000; i++)
        {
            string d = Path.Combine(meta, $"d{i % 100:000}");
            Directory.CreateDirectory(d);
            File.WriteAllBytes(Path.Combine(d, $"f{i:00000}"), [(byte)i]);
        }
        string metaRegion = Fresh("meta.daxfs");
        Store.Create(metaRegion, BaseImageBuilder.FromDirectory(meta), new StoreOptions { Capacity = 256L << 20 }).Dispose();
        int reps = quick ? 3 : 7;
        Figure StatAll(string system, string dir) => new("stat+readdir of 10,000 files", system, "ms", Enumerable.Range(0, reps).Select(rep =>
        {
            Sh.DropCaches();
            return Sh.TimeMs(() =>
            {
                int n = 0;
                foreach (var f in Directory.EnumerateFiles(dir, "*", SearchOption.AllDirectories)) { _ = File.GetUnixFileMode(f); n++; }
                if (n != 10000) throw new InvalidOperationException($"saw {n} files");
            });
        }).ToList(), "first walk after dropping caches");
        Try("stat+readdir of 10,000 files", "tmpfs", () => null, () => StatAll("tmpfs", meta));
        WithMount(metaRegion, "main", problem, mp => Try("stat+readdir of 10,000 files", "ours (mount)", () => null, () => StatAll("ours (mount)", mp)));

        if (!Sh.Has("git")) { report.Skip("git status", "all", "git not found"); return; }
        // A real tree with history: this repository's own sources, or the workspace.
        string repo = Fresh("gitrepo");
        string source = Path.GetFullPath(Path.Combine(AppContext.BaseDirectory, "..", "..", "..", "..", ".."));
        if (Directory.Exists(Path.Combine(source, ".git")))
            Sh.Run("git", "clone", "-q", source, repo);
        else
            Sh.Bash($"cp -a '{GitRepo()}' '{repo}'");
        Sh.Bash("git status --porcelain >/dev/null", repo); // refresh the index so both start clean
        string gitRegion = Fresh("git.daxfs");
        Store.Create(gitRegion, BaseImageBuilder.FromDirectory(repo), new StoreOptions { Capacity = Workspace.Size(repo) + (256L << 20) }).Dispose();
        Figure Status(string system, string dir) => new("git status", system, "ms", Enumerable.Range(0, reps).Select(_ =>
            Sh.TimeMs(() => Sh.Bash("git status --porcelain >/dev/null", dir))).ToList(), $"{Directory.EnumerateFiles(dir, "*", SearchOption.AllDirectories).Count()} files incl. .git; warm");
        Try("git status", "tmpfs", () => null, () => Status("tmpfs", repo));
        using (var s = Store.Open(gitRegion)) s.Main.Fork("status");
        WithMount(gitRegion, "status", problem, mp =>
        {
            Sh.Bash("git status --porcelain >/dev/null", mp); // the index is rewritten once for the new inode numbers
            Try("git status", "ours (mount)", () => null, () => Status("ours (mount)", mp));
        });
        Build(problem, reps);
    }

    /// <summary>
    /// A build inside the mount: a generated C project (200 sources, one shared header, a Makefile) built from clean
    /// with make -j2, on tmpfs and in a branch through the mount. It reads every source and header, writes every
    /// object and links: the mix of lookups, small reads and small writes a build makes.
    /// </summary>
    private void Build(string? problem, int reps)
    {
        const string Row = "build: make -j2 of 200 C files, from clean";
        if (!Sh.Has("make") || !Sh.Has("gcc")) { report.Skip(Row, "all", "make or gcc not found"); return; }
        string project = Fresh("cproject");
        Directory.CreateDirectory(project);
        File.WriteAllText(Path.Combine(project, "common.h"), "#include <stdint.h>\n#include <string.h>\nstatic inline uint64_t mix(uint64_t x) { x ^= x >> 33; x *= 0xff51afd7ed558ccdULL; return x ^ (x >> 33); }\n");
        var main = new System.Text.StringBuilder("#include <stdio.h>\n#include \"common.h\"\n");
        for (int i = 0; i < 200; i++)
        {
            File.WriteAllText(Path.Combine(project, $"u{i:000}.c"),
                $"#include \"common.h\"\nuint64_t f{i}(uint64_t s) {{ uint64_t a[16]; for (int k = 0; k < 16; k++) a[k] = mix(s + k + {i}); uint64_t r = 0; for (int k = 0; k < 16; k++) r += a[k] * (k + 1); return r; }}\n");
            main.Append($"uint64_t f{i}(uint64_t);\n");
        }
        main.Append("int main(void) { uint64_t r = 0;\n");
        for (int i = 0; i < 200; i++) main.Append($"  r += f{i}(r);\n");
        main.Append("  printf(\"%llu\\n\", (unsigned long long)r); return 0; }\n");
        File.WriteAllText(Path.Combine(project, "main.c"), main.ToString());
        File.WriteAllText(Path.Combine(project, "Makefile"),
            "SRCS := $(wildcard *.c)\nOBJS := $(SRCS:.c=.o)\nprog: $(OBJS)\n\tgcc -o $@ $^\n%.o: %.c common.h\n\tgcc -O1 -c -o $@ $<\nclean:\n\trm -f prog *.o\n");
        string buildRegion = Fresh("build.daxfs");
        Store.Create(buildRegion, BaseImageBuilder.FromDirectory(project), new StoreOptions { Capacity = 256L << 20 }).Dispose();
        Figure Make(string system, string dir) => new(Row, system, "ms", Enumerable.Range(0, reps).Select(_ =>
        {
            Sh.Bash("make -s clean", dir);
            double ms = Sh.TimeMs(() => Sh.Bash("make -s -j2 prog >/dev/null", dir));
            if (!File.Exists(Path.Combine(dir, "prog"))) throw new InvalidOperationException("the build made no program");
            return ms;
        }).ToList(), "gcc -O1, 201 objects and a link");
        Try(Row, "tmpfs", () => null, () => Make("tmpfs", project));
        using (var s = Store.Open(buildRegion)) s.Main.Fork("build");
        WithMount(buildRegion, "build", problem, mp => Try(Row, "ours (mount)", () => null, () => Make("ours (mount)", mp)));
    }

    // ------------------------------------------------------------------ edit, commit, abort

    public void EditCommitAbort()
    {
        Console.WriteLine("edit 100 files, then commit or abort:");
        var targets = Workspace.Pick(ws, 100);
        int reps = quick ? 3 : 5;
        foreach (bool rewrite in new[] { false, true })
        {
            string how = rewrite ? "rewrite each" : "1 byte each";
            void Edit(Func<string, string> pathOf)
            {
                foreach (var t in targets)
                {
                    string p = pathOf(t);
                    if (rewrite) { var len = new FileInfo(p).Length; File.WriteAllBytes(p, new byte[len]); }
                    else using (var f = new FileStream(p, FileMode.Open, FileAccess.Write)) f.WriteByte(0x5A);
                }
            }
            Try($"commit 100 files ({how})", "ours (library)", () => null, () =>
            {
                using var s = Store.Open(region);
                var samples = new List<double>();
                for (int i = 0; i < reps; i++)
                {
                    var b = s.Main.Fork($"edit{_n++}");
                    foreach (var t in targets)
                    {
                        if (rewrite) b.Write(t, 0, new byte[b.Stat(t).Size]);
                        else b.Write(t, 0, [0x5A]);
                    }
                    samples.Add(Sh.TimeMs(() => b.Commit("edit")));
                }
                return new Figure($"commit 100 files ({how})", "ours (library)", "ms", samples, "the commit step: the chain becomes main");
            });
            Try($"abort after 100 edits ({how})", "ours (library)", () => null, () =>
            {
                using var s = Store.Open(region);
                var samples = new List<double>();
                for (int i = 0; i < reps; i++)
                {
                    var b = s.Main.Fork($"abort{_n++}");
                    foreach (var t in targets) b.Write(t, 0, rewrite ? new byte[b.Stat(t).Size] : [0x5A]);
                    samples.Add(Sh.TimeMs(b.Abort));
                }
                return new Figure($"abort after 100 edits ({how})", "ours (library)", "ms", samples);
            });
            Try($"commit 100 files ({how})", "cp back (tmpfs)", () => null, () =>
            {
                var samples = new List<double>();
                for (int i = 0; i < reps; i++)
                {
                    string copy = Fresh("cpedit");
                    Sh.Run("cp", "-a", ws, copy);
                    Edit(t => Path.Combine(copy, t));
                    string main = Fresh("cpmain");
                    Sh.Run("cp", "-a", ws, main);
                    samples.Add(Sh.TimeMs(() => { foreach (var t in targets) File.Copy(Path.Combine(copy, t), Path.Combine(main, t), overwrite: true); }));
                    Directory.Delete(copy, true);
                    Directory.Delete(main, true);
                }
                return new Figure($"commit 100 files ({how})", "cp back (tmpfs)", "ms", samples, "copying the 100 edited files back into the main tree");
            });
            Try($"abort after 100 edits ({how})", "cp -a copy (rm -rf)", () => null, () =>
            {
                var samples = new List<double>();
                for (int i = 0; i < reps; i++)
                {
                    string copy = Fresh("cpabort");
                    Sh.Run("cp", "-a", ws, copy);
                    Edit(t => Path.Combine(copy, t));
                    samples.Add(Sh.TimeMs(() => Directory.Delete(copy, true)));
                }
                return new Figure($"abort after 100 edits ({how})", "cp -a copy (rm -rf)", "ms", samples);
            });
            Try($"commit 100 files ({how})", "overlayfs (copy upper down)", () => NeedRoot("mount -t overlay"), () =>
            {
                var samples = new List<double>();
                for (int i = 0; i < reps; i++)
                {
                    string lower = Fresh("ovllower");
                    Sh.Run("cp", "-a", ws, lower);
                    string o = Fresh("ovledit");
                    foreach (var d in new[] { "u", "w", "m" }) Directory.CreateDirectory(Path.Combine(o, d));
                    Sh.Run("mount", "-t", "overlay", "overlay", "-o", $"lowerdir={lower},upperdir={o}/u,workdir={o}/w", Path.Combine(o, "m"));
                    Edit(t => Path.Combine(o, "m", t));
                    Sh.Run("umount", Path.Combine(o, "m"));
                    samples.Add(Sh.TimeMs(() => Sh.Run("cp", "-a", $"{o}/u/.", $"{lower}/")));
                    Directory.Delete(lower, true);
                }
                return new Figure($"commit 100 files ({how})", "overlayfs (copy upper down)", "ms", samples);
            });
            Try($"abort after 100 edits ({how})", "overlayfs (umount, rm upper)", () => NeedRoot("mount -t overlay"), () =>
            {
                var samples = new List<double>();
                for (int i = 0; i < reps; i++)
                {
                    string o = Fresh("ovlabort");
                    OverlayMount(o);
                    Edit(t => Path.Combine(o, "m", t));
                    samples.Add(Sh.TimeMs(() => { Sh.Run("umount", Path.Combine(o, "m")); Directory.Delete(o, true); }));
                }
                return new Figure($"abort after 100 edits ({how})", "overlayfs (umount, rm upper)", "ms", samples);
            });
            Try($"commit 100 files ({how})", "btrfs (snapshot swap)", BtrfsCheck, () =>
            {
                string mnt = BtrfsWithWorkspace();
                var samples = new List<double>();
                for (int i = 0; i < reps; i++)
                {
                    string snap = Path.Combine(mnt, $"edit{_n++}");
                    Sh.Run("btrfs", "subvolume", "snapshot", Path.Combine(mnt, "ws"), snap);
                    Edit(t => Path.Combine(snap, t));
                    string old = Path.Combine(mnt, $"old{_n++}");
                    samples.Add(Sh.TimeMs(() =>
                    {
                        Directory.Move(Path.Combine(mnt, "ws"), old);
                        Directory.Move(snap, Path.Combine(mnt, "ws"));
                        Sh.Run("btrfs", "subvolume", "delete", old);
                    }));
                }
                return new Figure($"commit 100 files ({how})", "btrfs (snapshot swap)", "ms", samples, "rename the snapshot over the original, delete the old one");
            });
            Try($"abort after 100 edits ({how})", "btrfs (subvolume delete)", BtrfsCheck, () =>
            {
                string mnt = BtrfsWithWorkspace();
                var samples = new List<double>();
                for (int i = 0; i < reps; i++)
                {
                    string snap = Path.Combine(mnt, $"ab{_n++}");
                    Sh.Run("btrfs", "subvolume", "snapshot", Path.Combine(mnt, "ws"), snap);
                    Edit(t => Path.Combine(snap, t));
                    samples.Add(Sh.TimeMs(() => Sh.Run("btrfs", "subvolume", "delete", snap)));
                }
                return new Figure($"abort after 100 edits ({how})", "btrfs (subvolume delete)", "ms", samples);
            });
            Try($"abort after 100 edits ({how})", "git worktree remove", () => Sh.Has("git") ? null : "git not found", () =>
            {
                string repo = GitRepo();
                var samples = new List<double>();
                for (int i = 0; i < Math.Min(reps, 3); i++)
                {
                    string wt = Path.Combine(work, $"wtab{_n++}");
                    Sh.Run("git", "-C", repo, "worktree", "add", "-q", wt);
                    Edit(t => Path.Combine(wt, t));
                    samples.Add(Sh.TimeMs(() => Sh.Run("git", "-C", repo, "worktree", "remove", "--force", wt)));
                }
                return new Figure($"abort after 100 edits ({how})", "git worktree remove", "ms", samples);
            });
        }
    }

    // ------------------------------------------------------------------ agents

    public void Agents()
    {
        Console.WriteLine("agent workload:");
        if (BranchMount.FuseProblem() is { } problem) { report.Skip("8 agents: fork, edit, git status, commit one", "ours (mounts)", problem); return; }
        if (!Sh.Has("git")) { report.Skip("8 agents: fork, edit, git status, commit one", "ours (mounts)", "git not found"); return; }
        string repo = GitRepo();
        Sh.Bash("git status --porcelain >/dev/null", repo);
        string agentRegion = Fresh("agents.daxfs");
        Store.Create(agentRegion, BaseImageBuilder.FromDirectory(repo), new StoreOptions { Capacity = Workspace.Size(repo) + (2L << 30) }).Dispose();
        // git's index records inode numbers: refresh it once in the region (as a user would after mkfs), so
        // every agent starts with a clean, fast git status, as on the overlay (which keeps the lower inode numbers).
        using (var s = Store.Open(agentRegion)) s.Main.Fork("prime");
        WithMount(agentRegion, "prime", null, mp => Sh.Bash("git status --porcelain >/dev/null", mp));
        using (var s = Store.Open(agentRegion)) s.GetBranch("prime").Commit("refresh git's index");
        var targets = Workspace.Pick(ws, 80);
        int reps = quick ? 1 : 3;
        Try("8 agents: fork, edit, git status, commit one", "ours (mounts)", () => null, () =>
        {
            var samples = new List<double>();
            for (int rep = 0; rep < reps; rep++)
            {
                samples.Add(Sh.TimeMs(() =>
                {
                    using var s = Store.Open(agentRegion);
                    var names = Enumerable.Range(0, 8).Select(i => $"agent{rep}-{i}").ToList();
                    foreach (var n in names) s.Main.Fork(n);
                    Parallel.ForEach(names, new ParallelOptions { MaxDegreeOfParallelism = 8 }, n =>
                        WithMount(agentRegion, n, null, mp =>
                        {
                            foreach (var t in targets.Skip(names.IndexOf(n) * 10).Take(10))
                                using (var f = new FileStream(Path.Combine(mp, t), FileMode.Open, FileAccess.Write)) f.WriteByte(1);
                            Sh.Bash("git status --porcelain >/dev/null", mp);
                        }));
                    s.GetBranch(names[0]).Commit("agent 0 wins");
                }));
            }
            return new Figure("8 agents: fork, edit, git status, commit one", "ours (mounts)", "ms", samples, "mount, 10 edits and git status per agent, in parallel");
        });
        Try("8 agents: fork, edit, git status, commit one", "ours (one mount, file operations)", () => null, () =>
        {
            var samples = new List<double>();
            WithRegionMount(agentRegion, (mp, _) =>
            {
                for (int rep = 0; rep < reps; rep++)
                {
                    samples.Add(Sh.TimeMs(() =>
                    {
                        var dirs = Enumerable.Range(0, 8).Select(i => Path.Combine(mp, $"@one{rep}-{i}")).ToList();
                        foreach (var d in dirs) Directory.CreateDirectory(d); // fork main
                        Parallel.ForEach(dirs, new ParallelOptions { MaxDegreeOfParallelism = 8 }, d =>
                        {
                            foreach (var t in targets.Skip(dirs.IndexOf(d) * 10).Take(10))
                                using (var f = new FileStream(Path.Combine(d, t), FileMode.Open, FileAccess.Write)) f.WriteByte(1);
                            Sh.Bash("git status --porcelain >/dev/null", d);
                        });
                        Control(dirs[0], "commit agent 0 wins"); // the others are invalidated by it
                    }));
                }
            });
            return new Figure("8 agents: fork, edit, git status, commit one", "ours (one mount, file operations)", "ms", samples, "one server; mkdir, 10 edits and git status per agent in parallel, commit through .daxfs/ctl");
        });
        Try("8 agents: fork, edit, git status, commit one", "overlayfs", () => NeedRoot("mount -t overlay"), () =>
        {
            var samples = new List<double>();
            for (int rep = 0; rep < reps; rep++)
            {
                string lower = Fresh("agentlower");
                Sh.Run("cp", "-a", repo, lower);
                samples.Add(Sh.TimeMs(() =>
                {
                    var dirs = Enumerable.Range(0, 8).Select(_ => Fresh("agentovl")).ToList();
                    Parallel.ForEach(dirs, new ParallelOptions { MaxDegreeOfParallelism = 8 }, o =>
                    {
                        foreach (var d in new[] { "u", "w", "m" }) Directory.CreateDirectory(Path.Combine(o, d));
                        Sh.Run("mount", "-t", "overlay", "overlay", "-o", $"lowerdir={lower},upperdir={o}/u,workdir={o}/w", Path.Combine(o, "m"));
                        foreach (var t in targets.Skip(dirs.IndexOf(o) * 10).Take(10))
                            using (var f = new FileStream(Path.Combine(o, "m", t), FileMode.Open, FileAccess.Write)) f.WriteByte(1);
                        Sh.Bash("git status --porcelain >/dev/null", Path.Combine(o, "m"));
                        Sh.Run("umount", Path.Combine(o, "m"));
                    });
                    Sh.Run("cp", "-a", $"{dirs[0]}/u/.", $"{lower}/");
                    foreach (var o in dirs) Directory.Delete(o, true);
                }));
                Directory.Delete(lower, true);
            }
            return new Figure("8 agents: fork, edit, git status, commit one", "overlayfs", "ms", samples, "8 overlay mounts, the winner's upper copied down");
        });
    }
}
