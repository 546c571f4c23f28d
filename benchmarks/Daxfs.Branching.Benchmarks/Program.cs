using BenchmarkDotNet.Columns;
using BenchmarkDotNet.Configs;
using BenchmarkDotNet.Running;

namespace Daxfs.Branching.Benchmarks;

public static class Program
{
    public static int Main(string[] args)
    {
        var config = DefaultConfig.Instance
            .AddColumn(StatisticColumn.Median, StatisticColumn.Min, StatisticColumn.Max)
            .WithOptions(ConfigOptions.JoinSummary);
        BenchmarkSwitcher.FromAssembly(typeof(Program).Assembly).Run(args, config);
        return 0;
    }
}

/// <summary>Regions for benchmarks live under /dev/shm and are removed afterwards.</summary>
internal static class Regions
{
    public static string NewPath(string name) => Store.DefaultPath($"bench-{name}-{Environment.ProcessId}-{Guid.NewGuid():N}");

    public static void Delete(string path)
    {
        try { File.Delete(path); } catch (IOException) { }
    }

    public static byte[] Bytes(int length, int seed)
    {
        var b = new byte[length];
        new Random(seed).NextBytes(b);
        return b;
    }
}
