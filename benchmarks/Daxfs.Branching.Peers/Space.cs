using System.Diagnostics;

namespace Daxfs.Branching.Peers;

/// <summary>
/// Space under rewriting workloads (the targets of docs/performance.md, "Space"): what the region uses against
/// what the branch still reads, how fast cleaning copies, how long a reader waits for it, and what compaction
/// leaves. Everything runs through the library; "another store" stands for another process (it has its own
/// picture, re-reads what changed and takes the region lock to do so).
/// </summary>
internal sealed class SpaceScenarios(string work, Report report, bool quick)
{
    private const long MiB = 1L << 20;

    private static long Used(Store s) => s.Usage.ArenaBytes - s.Usage.ArenaFreeBytes;

    private Store Fresh(string name, long capacity)
    {
        string path = Path.Combine(work, name + ".daxfs");
        foreach (var old in Directory.GetFiles(work, "*.daxfs"))
            File.Delete(old); // one region at a time: the machine's memory is the limit here
        Directory.CreateDirectory(work);
        return Store.Create(path, new BaseImageBuilder().AddFile("README.md", "space\n"u8), new StoreOptions { Capacity = capacity });
    }

    public void Run()
    {
        Rewrites();
        AgentLoop();
        CleaningSpeedAndPauses();
        Compaction();
    }

    /// <summary>100 rewrites of one 10 MiB file on one live branch, no user action: peak and final use against 2 × live + 16 MiB.</summary>
    private void Rewrites()
    {
        int rounds = quick ? 1 : 3, rewrites = 100;
        var peak = new List<double>();
        var ratio = new List<double>();
        var perWrite = new List<double>();
        var data = new byte[10 * MiB];
        for (int round = 0; round < rounds; round++)
        {
            using var s = Fresh("rewrite", 512 * MiB);
            var b = s.Main.Fork("agent");
            long max = 0;
            var clock = Stopwatch.StartNew();
            for (int i = 0; i < rewrites; i++)
            {
                Array.Fill(data, (byte)i);
                b.WriteAllBytes("out.bin", data);
                max = Math.Max(max, Used(s));
            }
            perWrite.Add(clock.Elapsed.TotalMilliseconds / rewrites);
            long bound = 2 * data.Length + 16 * MiB;
            peak.Add(max / (double)MiB);
            ratio.Add(max / (double)bound);
        }
        report.Add(new Figure("space: 10 MiB rewritten ×100, peak", "ours", "MiB", peak, "bound 2 × live + 16 MiB = 36 MiB"));
        report.Add(new Figure("space: 10 MiB rewritten ×100, peak / bound", "ours", "ratio", ratio, "≤ 1 meets the target"));
        report.Add(new Figure("space: 10 MiB rewrite, time per write", "ours", "ms", perWrite, "cleaning included"));
    }

    /// <summary>200 build outputs of 64 KiB to 4 MiB, each rewritten 50 times (20 in a quick run): peak use against 2 × live + 16 MiB.</summary>
    private void AgentLoop()
    {
        int outputs = 200, rounds = quick ? 20 : 50;
        var rng = new Random(7);
        var sizes = Enumerable.Range(0, outputs).Select(_ => rng.Next(64 << 10, 4 << 20)).ToArray();
        long live = sizes.Sum(x => (long)x);
        var buffer = new byte[4 << 20];
        using var s = Fresh("agent-loop", 2L << 30);
        var b = s.Main.Fork("agent");
        long max = 0;
        var clock = Stopwatch.StartNew();
        for (int round = 0; round < rounds; round++)
            for (int i = 0; i < outputs; i++)
            {
                buffer.AsSpan(0, sizes[i]).Fill((byte)(round + i));
                b.WriteAllBytes($"o{i}.bin", buffer.AsSpan(0, sizes[i]));
                max = Math.Max(max, Used(s));
            }
        double seconds = clock.Elapsed.TotalSeconds;
        long bound = 2 * live + 16 * MiB;
        report.Add(new Figure($"space: agent loop 200 outputs ×{rounds}, peak", "ours", "MiB", [max / (double)MiB],
            $"live {live / (double)MiB:0} MiB, bound {bound / (double)MiB:0} MiB, {live * rounds / (double)MiB / seconds:0} MiB/s written"));
        report.Add(new Figure($"space: agent loop 200 outputs ×{rounds}, peak / bound", "ours", "ratio", [max / (double)bound], "≤ 1 meets the target"));
    }

    /// <summary>
    /// A branch with 1 GiB live (256 MiB in a quick run) and as much dead, cleaned on demand: live bytes copied per
    /// second, and the longest a read of another store waited meanwhile (it re-reads under the region lock).
    /// </summary>
    private void CleaningSpeedAndPauses()
    {
        int files = quick ? 64 : 256;
        var speed = new List<double>();
        var pause = new List<double>();
        var held = new List<double>();
        int steps = 0;
        long copied = 0;
        var appendReread = new List<double>();
        var chunk = new byte[4 * MiB];
        for (int round = 0; round < (quick ? 2 : 3); round++)
        {
            using var s = Fresh("clean", files * 4 * MiB * 2 + 512 * MiB);
            s.AutoClean = false;
            var b = s.Main.Fork("agent");
            // Live and dead interleaved, block by block: every step must copy (half of what it frees).
            for (int i = 0; i < files; i++)
            {
                chunk.AsSpan().Fill((byte)i);
                b.WriteAllBytes($"f{i}", chunk);
                b.WriteAllBytes($"dead{i}", chunk);
            }
            for (int i = 0; i < files; i++) b.Delete($"dead{i}");
            b.WriteAllBytes("tail", "t"u8);
            using var other = Store.Open(s.Path);
            var reader = other.GetBranch("agent");
            var buf = new byte[4096];
            double longest = 0;
            bool stop = false;
            var t = new Thread(() =>
            {
                int i = 0;
                while (!Volatile.Read(ref stop))
                {
                    long t0 = Stopwatch.GetTimestamp();
                    reader.Read($"f{i++ % files}", 0, buf.AsSpan());
                    longest = Math.Max(longest, Stopwatch.GetElapsedTime(t0).TotalMilliseconds);
                }
            });
            t.Start();
            Thread.Sleep(50);
            var r = s.Clean("agent");
            Thread.Sleep(50);
            Volatile.Write(ref stop, true);
            t.Join();
            // What one re-read of the cleaned branch costs another store (walking it from its head again).
            using (var third = Store.Open(s.Path))
            {
                third.GetBranch("agent").Read("f0", 0, buf.AsSpan());
                s.GetBranch("agent").WriteAllBytes("tail", "u"u8);
                long t0 = Stopwatch.GetTimestamp();
                third.GetBranch("agent").Read("f0", 0, buf.AsSpan());
                appendReread.Add(Stopwatch.GetElapsedTime(t0).TotalMilliseconds);
            }
            speed.Add(r.CopiedBytes / (double)MiB / r.Elapsed.TotalSeconds);
            pause.Add(longest);
            held.Add(r.LockHeld.TotalMilliseconds / Math.Max(1, r.Steps));
            steps = r.Steps;
            copied = r.CopiedBytes;
        }
        report.Add(new Figure($"space: cleaning {files * 4} MiB live among as much dead", "ours", "MiB/s", speed, $"{copied / (double)MiB:0} MiB copied in {steps} steps; target ≥ 1024 MiB/s"));
        report.Add(new Figure("space: longest read wait during cleaning", "ours (another store)", "ms", pause, "target ≤ 10 ms"));
        report.Add(new Figure("space: region lock held per cleaning step", "ours", "ms", held));
        report.Add(new Figure("space: another store's re-read after one append (baseline)", "ours (another store)", "ms", appendReread));
    }

    /// <summary>1 GiB of history (256 MiB quick) folded by compaction: arena use after, against live data plus the versions kept.</summary>
    private void Compaction()
    {
        long history = quick ? 256 * MiB : 1024 * MiB;
        int files = 64;
        int fileSize = (int)(history / 4 / files);
        using var s = Fresh("compact", history + history / 2 + 256 * MiB);
        var data = new byte[fileSize];
        for (int v = 0; v < 4; v++)
        {
            var b = s.Main.Fork($"v{v}");
            for (int i = 0; i < files; i++) { data.AsSpan().Fill((byte)(v * files + i)); b.WriteAllBytes($"f{i}", data); }
            b.Commit($"version {v + 1}");
        }
        long before = Used(s);
        var report1 = s.Compact();
        long after = Used(s);
        long live = (long)files * fileSize;
        report.Add(new Figure($"space: compaction of {history / MiB} MiB history, arena use after / live", "ours", "ratio", [after / (double)live],
            $"{before / (double)MiB:0} MiB before, {after / (double)MiB:0} MiB after, {live / (double)MiB:0} MiB live; folded in {report1.Elapsed.TotalMilliseconds:0} ms; target ≤ 1.10"));
    }
}
