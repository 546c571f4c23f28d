using BenchmarkDotNet.Attributes;
using BenchmarkDotNet.Engines;

namespace Daxfs.Branching.Benchmarks;

/// <summary>Fork a branch of main (and discard it, so the slot is reused and the table never fills).</summary>
[MemoryDiagnoser]
public class ForkBenchmarks
{
    private string _path = "";
    private Store _store = null!;
    private Branch _main = null!;

    [GlobalSetup]
    public void Setup()
    {
        _path = Regions.NewPath("fork");
        var image = new BaseImageBuilder();
        for (int i = 0; i < 1000; i++) image.AddFile($"dir{i % 10}/file{i}", Regions.Bytes(1000, i));
        _store = Store.Create(_path, image, new StoreOptions { Capacity = 64L << 20 });
        _main = _store.Main;
    }

    [GlobalCleanup]
    public void Cleanup()
    {
        _store.Dispose();
        Regions.Delete(_path);
    }

    [Benchmark(Description = "fork + discard")]
    public void ForkAndDiscard() => _main.Fork("b").Discard();
}

/// <summary>Resolve a 4 KiB range of a file at several branch depths and touch each span (no copy).</summary>
[MemoryDiagnoser]
public class ReadBenchmarks
{
    private const int FileSize = 16 << 20;
    private string _path = "";
    private Store _store = null!;
    private FileHandle _handle = null!;
    private long[] _offsets = [];
    private int _next;
    private readonly byte[] _buffer = new byte[4096];

    [Params(1, 8, 64)]
    public int Depth { get; set; }

    [GlobalSetup]
    public void Setup()
    {
        _path = Regions.NewPath("read");
        var image = new BaseImageBuilder().AddFile("data.bin", Regions.Bytes(FileSize, 1));
        _store = Store.Create(_path, image, new StoreOptions { Capacity = FileSize + (256L << 20) });
        var rng = new Random(42);
        var b = _store.Main.Fork("d1");
        // The same 512 scattered 4 KiB writes at every depth, spread evenly over the levels, so reads land on
        // extents of many layers and only the depth differs between the cases.
        const int Writes = 512;
        for (int d = 1; d <= Depth; d++)
        {
            if (d > 1) b = b.Fork($"d{d}");
            for (int i = 0; i < Writes / Depth; i++)
                b.Write("data.bin", rng.Next(0, FileSize / 4096) * 4096L, Regions.Bytes(4096, d * 1000 + i));
        }
        _handle = b.OpenFile("data.bin");
        _offsets = Enumerable.Range(0, 1024).Select(_ => (long)rng.Next(0, FileSize - 4096)).ToArray();
    }

    [GlobalCleanup]
    public void Cleanup()
    {
        _store.Dispose();
        Regions.Delete(_path);
    }

    [Benchmark(Description = "resolve 4 KiB to spans")]
    public int Resolve4K()
    {
        long offset = _offsets[_next++ & 1023];
        int touched = 0;
        foreach (var span in _handle.Read(offset, 4096))
            touched += span[0] + span.Length;
        return touched;
    }

    /// <summary>What the mount does per read request: take a lease, resolve, walk the pieces, end the lease.</summary>
    [Benchmark(Description = "resolve 4 KiB to spans under a lease")]
    public int Resolve4KLeased()
    {
        using (_store.BeginReadScope())
            return Resolve4K();
    }

    [Benchmark(Description = "resolve 4 KiB and copy out")]
    public int ReadCopy4K()
    {
        long offset = _offsets[_next++ & 1023];
        return _handle.Read(offset, _buffer);
    }
}

/// <summary>Sequential read of 64 MiB copied out through the spans, against a plain memory copy of the same size.</summary>
[MemoryDiagnoser]
public class SequentialReadBenchmarks
{
    private const int Size = 64 << 20;
    private string _path = "";
    private Store _store = null!;
    private FileHandle _handle = null!;
    private byte[] _source = [];
    private byte[] _destination = [];

    [GlobalSetup]
    public void Setup()
    {
        _path = Regions.NewPath("seq");
        _source = Regions.Bytes(Size, 3);
        _destination = new byte[Size];
        _store = Store.Create(_path, new BaseImageBuilder().AddFile("big.bin", _source), new StoreOptions { Capacity = Size + (64L << 20) });
        _handle = _store.Main.OpenFile("big.bin");
        _handle.Read(0, _destination); // first touch verifies the chunks' checksums; measure the steady state
    }

    [GlobalCleanup]
    public void Cleanup()
    {
        _store.Dispose();
        Regions.Delete(_path);
    }

    [Benchmark(Baseline = true, Description = "memory copy 64 MiB")]
    public void MemoryCopy() => _source.AsSpan().CopyTo(_destination);

    [Benchmark(Description = "read 64 MiB through spans")]
    public int ReadThroughSpans() => _handle.Read(0, _destination);
}

/// <summary>Write 4 KiB at a random offset of a file in a branch. The branch is replaced between iterations.</summary>
[MemoryDiagnoser]
[SimpleJob(RunStrategy.Throughput, launchCount: 1, warmupCount: 3, iterationCount: 15, invocationCount: 8192)]
public class WriteBenchmarks
{
    private string _path = "";
    private Store _store = null!;
    private Branch _branch = null!;
    private readonly byte[] _payload = Regions.Bytes(4096, 5);
    private int _i;
    private int _generation;

    [GlobalSetup]
    public void Setup()
    {
        _path = Regions.NewPath("write");
        _store = Store.Create(_path, new BaseImageBuilder().AddFile("f.bin", Regions.Bytes(1 << 20, 1)), new StoreOptions { Capacity = 1L << 30 });
        _branch = _store.Main.Fork("w0");
    }

    [IterationCleanup]
    public void NewBranch()
    {
        _branch.Discard();
        _branch = _store.Main.Fork($"w{++_generation}");
    }

    [GlobalCleanup]
    public void Cleanup()
    {
        _store.Dispose();
        Regions.Delete(_path);
    }

    [Benchmark(Description = "write 4 KiB")]
    public void Write4K() => _branch.Write("f.bin", (_i++ & 255) * 4096L, _payload);
}

/// <summary>Commit to main a branch holding 1,000 writes (each iteration commits a fresh branch).</summary>
[MemoryDiagnoser]
[SimpleJob(RunStrategy.Monitoring, launchCount: 1, warmupCount: 3, iterationCount: 30, invocationCount: 1)]
public class CommitBenchmarks
{
    private string _path = "";
    private Store _store = null!;
    private Branch _branch = null!;
    private int _generation;
    private readonly byte[] _payload = Regions.Bytes(100, 9);

    [GlobalSetup]
    public void Setup()
    {
        _path = Regions.NewPath("commit");
        var image = new BaseImageBuilder();
        for (int i = 0; i < 100; i++) image.AddFile($"f{i}", Regions.Bytes(4096, i));
        _store = Store.Create(_path, image, new StoreOptions { Capacity = 1L << 30 });
    }

    [IterationSetup]
    public void Prepare()
    {
        _branch = _store.Main.Fork($"c{++_generation}");
        for (int i = 0; i < 1000; i++)
            _branch.Write($"f{i % 100}", i * 7 % 4000, _payload);
    }

    [GlobalCleanup]
    public void Cleanup()
    {
        _store.Dispose();
        Regions.Delete(_path);
    }

    [Benchmark(Description = "commit 1,000 writes")]
    public VersionInfo Commit() => _branch.Commit("bench");
}

/// <summary>Open a region holding 1 GiB of delta logs (replay with checksum checks, recovery, index build).</summary>
[MemoryDiagnoser]
[SimpleJob(RunStrategy.Monitoring, launchCount: 1, warmupCount: 1, iterationCount: 10, invocationCount: 1)]
public class ReopenBenchmarks
{
    private string _path = "";

    [GlobalSetup]
    public void Setup()
    {
        _path = Regions.NewPath("reopen");
        using var s = Store.Create(_path, new BaseImageBuilder().AddFile("f.bin", Regions.Bytes(1 << 20, 1)), new StoreOptions { Capacity = 3L << 30 });
        var payload = Regions.Bytes(1 << 20, 2);
        // 512 MiB committed to main in 8 versions, 512 MiB in live branches.
        for (int v = 0; v < 8; v++)
        {
            var b = s.Main.Fork($"v{v}");
            for (int i = 0; i < 64; i++) b.Write($"file{v}-{i}", 0, payload);
            b.Commit($"v{v}");
        }
        for (int k = 0; k < 8; k++)
        {
            var b = s.Main.Fork($"live{k}");
            for (int i = 0; i < 64; i++) b.Write($"live{k}-{i}", 0, payload);
        }
    }

    [GlobalCleanup]
    public void Cleanup() => Regions.Delete(_path);

    [Benchmark(Description = "reopen 1 GiB of logs")]
    public long Reopen()
    {
        using var s = Store.Open(_path);
        return s.Usage.ArenaFreeBytes;
    }
}

/// <summary>Diff of two versions that differ in 100 files of a 10,000-file tree, and time-travel reads against main.</summary>
[MemoryDiagnoser]
public class VersionBenchmarks
{
    private string _path = "";
    private Store _store = null!;
    private Branch _v1 = null!;
    private Branch _v2 = null!;
    private FileHandle _mainFile = null!;
    private FileHandle _oldFile = null!;
    private readonly byte[] _buffer = new byte[4096];

    [GlobalSetup]
    public void Setup()
    {
        _path = Regions.NewPath("versions");
        var image = new BaseImageBuilder();
        for (int i = 0; i < 10_000; i++) image.AddFile($"d{i % 100:000}/f{i:00000}", Regions.Bytes(2048, i));
        _store = Store.Create(_path, image, new StoreOptions { Capacity = 256L << 20 });
        var a = _store.Main.Fork("a");
        a.WriteAllBytes("marker", "1"u8);
        a.Commit("v1");
        var b = _store.Main.Fork("b");
        for (int i = 0; i < 100; i++) b.Write($"d{i:000}/f{i:00000}", 100, "changed"u8);
        b.Commit("v2");
        _v1 = _store.AtVersion(1);
        _v2 = _store.AtVersion(2);
        _mainFile = _store.Main.OpenFile("d005/f00005");
        _oldFile = _store.AtVersion(1).OpenFile("d005/f00005");
    }

    [GlobalCleanup]
    public void Cleanup()
    {
        _store.Dispose();
        Regions.Delete(_path);
    }

    [Benchmark(Description = "diff v1..v2 (100 of 10,000 files)")]
    public int Diff() => _v1.DiffTo(_v2).Count;

    [Benchmark(Description = "read 4 KiB from main")]
    public int ReadMain() => _mainFile.Read(0, _buffer);

    [Benchmark(Description = "read 4 KiB from version 1")]
    public int ReadOld() => _oldFile.Read(0, _buffer);
}

/// <summary>
/// Compaction of 1 GiB of history: 16 versions of 64 MiB each, half of every version rewriting the files the
/// version before wrote, half adding new ones. Folding all of it copies the 544 MiB still live into a new
/// base image and gives the rest back.
/// </summary>
[MemoryDiagnoser]
[SimpleJob(RunStrategy.Monitoring, launchCount: 1, warmupCount: 1, iterationCount: 5, invocationCount: 1)]
public class CompactionBenchmarks
{
    private string _path = "";
    private Store _store = null!;

    [IterationSetup]
    public void Setup()
    {
        _path = Regions.NewPath("compact");
        _store = Store.Create(_path, new BaseImageBuilder().AddFile("readme", "compaction benchmark"u8), new StoreOptions { Capacity = 3L << 30 });
        var payload = Regions.Bytes(1 << 20, 3);
        for (int v = 0; v < 16; v++)
        {
            var b = _store.Main.Fork($"v{v}");
            for (int i = 0; i < 32; i++) b.Write($"rewritten-{i}", 0, payload);   // replaces the version before's bytes
            for (int i = 0; i < 32; i++) b.Write($"added-{v}-{i}", 0, payload);
            b.Commit($"v{v}");
        }
    }

    [IterationCleanup]
    public void Cleanup()
    {
        _store.Dispose();
        Regions.Delete(_path);
    }

    [Benchmark(Description = "compact 1 GiB of history (544 MiB live)")]
    public long Compact() => _store.Compact().CopiedBytes;
}

/// <summary>
/// The checksum every base data chunk (64 KiB) is verified with on its first read, and every log record on
/// open: three interleaved streams against one stream of the same CRC instruction.
/// </summary>
[MemoryDiagnoser]
public class ChecksumBenchmarks
{
    private readonly byte[] _chunk = Regions.Bytes(64 * 1024, 3);

    [Benchmark(Baseline = true, Description = "CRC-32C of 64 KiB, one stream")]
    public uint OneStream()
    {
        uint crc = Format.Crc32C.Seed;
        foreach (ulong w in System.Runtime.InteropServices.MemoryMarshal.Cast<byte, ulong>(_chunk))
            crc = System.Numerics.BitOperations.Crc32C(crc, w);
        return ~crc;
    }

    [Benchmark(Description = "CRC-32C of 64 KiB, three streams")]
    public uint ThreeStreams() => Format.Crc32C.Compute(_chunk);
}

/// <summary>
/// What the process table costs: opening and closing a store (registration scans the table and asks the kernel
/// about each entry in use) with tables of several sizes and other stores holding entries, and a read lease
/// (which touches only the store's own entry).
/// </summary>
[MemoryDiagnoser]
public class ProcessTableBenchmarks
{
    private string _path = "";
    private Store _store = null!;
    private readonly List<Store> _others = [];

    [Params(64, 1024, 65536)]
    public int ProcessSlots { get; set; }

    [Params(0, 255)]
    public int OtherStores { get; set; }

    [GlobalSetup]
    public void Setup()
    {
        _path = Regions.NewPath("proc");
        _store = Store.Create(_path, new BaseImageBuilder().AddFile("f", "x"u8), new StoreOptions { Capacity = 64L << 20, ProcessSlots = ProcessSlots });
        _store.Main.Fork("b").WriteAllBytes("g", "y"u8);
        for (int i = 0; i < OtherStores; i++)
            _others.Add(Store.Open(_path)); // each an open of its own: a byte lock the kernel is asked about
    }

    [GlobalCleanup]
    public void Cleanup()
    {
        foreach (var s in _others) s.Dispose();
        _store.Dispose();
        Regions.Delete(_path);
    }

    [Benchmark(Description = "open + close")]
    public long OpenAndClose()
    {
        using var s = Store.Open(_path);
        return s.Versions.Count;
    }

    [Benchmark(Description = "read lease begin + end")]
    public void Lease()
    {
        using var lease = _store.BeginReadScope();
    }
}
