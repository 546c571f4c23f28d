using BenchmarkDotNet.Attributes;
using BenchmarkDotNet.Engines;

namespace Daxfs.Branching.Benchmarks;

/// <summary>
/// What an open costs as history grows: main with 0, 200 or 2,000 versions (21 records each), 50 live branches, one
/// of them with a 64 MiB log. Reading main or one branch costs what it touches; listing every branch, or asking for
/// version 1, reads everything.
/// </summary>
[MemoryDiagnoser]
[SimpleJob(RunStrategy.Monitoring, launchCount: 1, warmupCount: 3, iterationCount: 25, invocationCount: 1)]
public class OpenBenchmarks
{
    private string _path = "";

    [Params(0, 200, 2000)]
    public int Versions { get; set; }

    [GlobalSetup]
    public void Setup()
    {
        _path = Regions.NewPath("open");
        var image = new BaseImageBuilder();
        for (int i = 0; i < 200; i++) image.AddFile($"f{i}.txt", Regions.Bytes(2000, i));
        using var s = Store.Create(_path, image, new StoreOptions { Capacity = 1L << 30 });
        s.AutoClean = false; // the 64 MiB log stays 64 MiB
        var buf = Regions.Bytes(64 << 10, 1);
        for (int v = 0; v < Versions; v++)
        {
            var b = s.Main.Fork($"v{v}");
            for (int k = 0; k < 20; k++) b.Write($"f{(v * 7 + k) % 200}.txt", 0, buf.AsSpan(0, 4096));
            b.Write($"big{v % 10}.bin", 0, buf);
            b.Commit($"version {v}");
        }
        for (int i = 0; i < 50; i++) s.Main.Fork($"b{i}").Write($"w{i}", 0, buf.AsSpan(0, 100));
        var churn = s.GetBranch("b0");
        for (int m = 0; m < 1024; m++) churn.Write("churn", m % 16 * buf.Length, buf);
    }

    [GlobalCleanup]
    public void Cleanup() => Regions.Delete(_path);

    [Benchmark(Description = "open, list / of main")]
    public int Main()
    {
        using var s = Store.Open(_path);
        return s.Main.List("/").Count;
    }

    [Benchmark(Description = "open, list / of one branch")]
    public int OneBranch()
    {
        using var s = Store.Open(_path);
        return s.GetBranch("b7").List("/").Count;
    }

    [Benchmark(Description = "open, list every branch")]
    public int Every()
    {
        using var s = Store.Open(_path);
        return s.ListBranches().Count;
    }

    [Benchmark(Description = "open, read version 1 (main's whole history)")]
    public int Oldest()
    {
        using var s = Store.Open(_path);
        return Versions == 0 ? s.Main.List("/").Count : s.AtVersion(1).List("/").Count;
    }
}
