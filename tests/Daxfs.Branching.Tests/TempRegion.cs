using Daxfs.Branching;

namespace Daxfs.Branching.Tests;

/// <summary>A fresh region in a temporary directory, removed on dispose; can be closed and reopened.</summary>
public sealed class TempRegion : IDisposable
{
    private static int s_counter;
    private readonly string _dir;

    public TempRegion(BaseImageBuilder? image = null, long capacity = 64L << 20, int slots = 256, bool onDisk = false, bool sharedAcrossKernels = false)
    {
        string root = onDisk || !Directory.Exists("/dev/shm") ? Path.GetTempPath() : "/dev/shm";
        _dir = Path.Combine(root, $"daxfs-test-{Environment.ProcessId}-{Interlocked.Increment(ref s_counter)}");
        Directory.CreateDirectory(_dir);
        RegionPath = Path.Combine(_dir, "region.daxfs");
        Store = Store.Create(RegionPath, image ?? SampleImage(), new StoreOptions { Capacity = capacity, BranchSlots = slots, SharedAcrossKernels = sharedAcrossKernels });
    }

    public string RegionPath { get; }

    public string Directory_ => _dir;

    public Store Store { get; private set; }

    /// <summary>Closes the store and opens the region again, as a new process would.</summary>
    public Store Reopen()
    {
        Store.Dispose();
        Store = Store.Open(RegionPath);
        return Store;
    }

    public static BaseImageBuilder SampleImage() => new BaseImageBuilder()
        .AddFile("README.md", "# sample\n"u8)
        .AddFile("src/a.txt", "alpha\n"u8)
        .AddFile("src/b.txt", "bravo\n"u8)
        .AddFile("src/big.bin", Pattern(200_000, 7))
        .AddDirectory("empty")
        .AddSymlink("link", "src/a.txt");

    /// <summary>Flips the bits of <paramref name="mask"/> in the byte at <paramref name="offset"/> of the file (damage, as a bit flip makes it).</summary>
    public static void Flip(string path, long offset, byte mask)
    {
        using var f = new FileStream(path, FileMode.Open, FileAccess.ReadWrite);
        f.Position = offset;
        int b = f.ReadByte();
        f.Position = offset;
        f.WriteByte((byte)(b ^ mask));
    }

    /// <summary><paramref name="length"/> bytes of <paramref name="value"/>.</summary>
    public static byte[] Filled(int length, byte value)
    {
        var b = new byte[length];
        Array.Fill(b, value);
        return b;
    }

    /// <summary>Bytes of the delta arena in use now.</summary>
    public static long ArenaUsed(Store s) => s.Usage.ArenaBytes - s.Usage.ArenaFreeBytes;

    public static byte[] Pattern(int length, int seed)
    {
        var b = new byte[length];
        var rng = new Random(seed);
        rng.NextBytes(b);
        return b;
    }

    public void Dispose()
    {
        Store.Dispose();
        try { Directory.Delete(_dir, recursive: true); } catch (IOException) { }
    }
}
