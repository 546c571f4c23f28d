using System.Text;
using Daxfs.Branching;
using Daxfs.Branching.Format;

namespace Daxfs.Branching.Tests;

/// <summary>A damaged or hostile region gives a typed error naming the structure, never a crash, hang or wrong data.</summary>
public class CorruptionTests
{
    private static (string Path, byte[] Bytes, long BaseOffset, long ArenaOffset) MakeRegion(string dir)
    {
        string path = Path.Combine(dir, "r.daxfs");
        using (var s = Store.Create(path, TempRegion.SampleImage(), new StoreOptions { Capacity = 2L << 20, BranchSlots = 16 }))
        {
            var a = s.Main.Fork("a");
            a.WriteAllBytes("new.txt", "new"u8);
            a.Commit("v1");
            var b = s.Main.Fork("b");
            b.Write("src/a.txt", 2, "XY"u8);
            var c = b.Fork("c");
            c.Rename("src", "lib");
        }
        var bytes = File.ReadAllBytes(path);
        var sb = System.Runtime.InteropServices.MemoryMarshal.Read<Superblock>(bytes);
        return (path, bytes, sb.BaseOffset, sb.ArenaOffset);
    }

    private static string OpenAndReadAll(string path) => HostileRegionTests.Outcome(path);

    [Fact]
    public void Damaged_headers_name_the_structure()
    {
        using var r = new TempRegion();
        r.Store.Dispose();
        var original = File.ReadAllBytes(r.RegionPath);

        void Expect(int offset, string structure)
        {
            var bytes = (byte[])original.Clone();
            bytes[offset] ^= 0x40;
            File.WriteAllBytes(r.RegionPath, bytes);
            var ex = Assert.Throws<CorruptionException>(() => Store.Open(r.RegionPath));
            Assert.Contains(structure, ex.Structure, StringComparison.Ordinal);
        }

        var sb = System.Runtime.InteropServices.MemoryMarshal.Read<Superblock>(original);
        Expect(0, "superblock");
        Expect(20, "superblock");
        Expect((int)FormatConstants.ControlOffset, "control block");
        Expect((int)sb.BaseOffset + 3, "base header");
        Expect((int)sb.BaseOffset + BaseHeader.Size + 1, "base metadata");
        File.WriteAllBytes(r.RegionPath, original);
        r.Reopen();
    }

    [Fact]
    public void A_newer_format_version_is_refused_as_such()
    {
        using var r = new TempRegion();
        r.Store.Dispose();
        var bytes = File.ReadAllBytes(r.RegionPath);
        BitConverter.GetBytes(99u).CopyTo(bytes, 8);
        BitConverter.GetBytes(Crc32C.Compute(bytes.AsSpan(0, 252))).CopyTo(bytes, 252);
        File.WriteAllBytes(r.RegionPath, bytes);
        var ex = Assert.Throws<FormatVersionException>(() => Store.Open(r.RegionPath));
        Assert.Equal(99u, ex.Found);
        File.WriteAllBytes(r.RegionPath, new byte[100]);
        Assert.Throws<NotARegionException>(() => Store.Open(r.RegionPath)); // no header: not a region at all
        File.Delete(r.RegionPath);
        Assert.Throws<FileNotFoundException>(() => Store.Open(r.RegionPath));
    }

    [Fact]
    public void Damaged_base_file_data_fails_the_read_not_silently()
    {
        using var r = new TempRegion();
        var st = r.Store.Main.Stat("src/big.bin");
        r.Store.Dispose();
        var bytes = File.ReadAllBytes(r.RegionPath);
        var sb = System.Runtime.InteropServices.MemoryMarshal.Read<Superblock>(bytes);
        var bh = System.Runtime.InteropServices.MemoryMarshal.Read<BaseHeader>(bytes.AsSpan((int)sb.BaseOffset));
        bytes[bh.DataOffset + bh.DataLength - 10] ^= 1; // inside the last data chunk
        File.WriteAllBytes(r.RegionPath, bytes);
        var s = r.Reopen();
        Assert.Equal("alpha\n", Encoding.UTF8.GetString(s.Main.ReadAllBytes("src/a.txt")));
        var ex = Assert.Throws<CorruptionException>(() => s.Verify());
        Assert.StartsWith("base data chunk", ex.Structure);
        Assert.True(st.Size > 0);
    }

    [Fact]
    public void Random_damage_gives_a_typed_error_or_a_consistent_region()
    {
        string dir = Path.Combine(Path.GetTempPath(), $"daxfs-fuzz-{Guid.NewGuid():N}");
        Directory.CreateDirectory(dir);
        try
        {
            var (path, original, baseOffset, arena) = MakeRegion(dir);
            string clean = OpenAndReadAll(path);
            Assert.NotEqual("corrupt", clean);
            var rng = new Random(1234);
            int corrupt = 0, consistent = 0;
            // Metadata areas: superblock, control block, slot table, base image metadata, the first arena blocks.
            long baseMetaEnd = baseOffset + 4096;
            var areas = new (long Start, long End)[] { (0, 256), (4096, 4096 + 128), (8192, 8192 + 16 * 256), (baseOffset, baseMetaEnd), (arena, arena + 64 * 1024) };
            for (int i = 0; i < 400; i++)
            {
                var bytes = (byte[])original.Clone();
                var (start, end) = areas[i % areas.Length];
                int flips = 1 + rng.Next(3);
                for (int k = 0; k < flips; k++)
                {
                    long at = start + rng.NextInt64(end - start);
                    switch (rng.Next(3))
                    {
                        case 0: bytes[at] ^= (byte)(1 << rng.Next(8)); break;
                        case 1: bytes[at] = 0xFF; break;
                        default: bytes[at] = 0; break;
                    }
                }
                File.WriteAllBytes(path, bytes);
                string outcome = OpenAndReadAll(path);
                if (outcome is "corrupt" or "version") corrupt++;
                else consistent++;
            }
            Assert.True(corrupt > 100, $"only {corrupt} of 400 damaged regions were reported corrupt");
            // Truncated files.
            foreach (long len in new[] { 0L, 100, 4096, 8192, baseOffset + 10, arena + 100, original.Length - 4096 })
            {
                File.WriteAllBytes(path, original.AsSpan(0, (int)len).ToArray());
                var ex = Record.Exception(() => Store.Open(path).Dispose());
                // Cut below its first page, a region cannot be told from a file that never was one.
                Assert.True(ex is CorruptionException || len < 4096 && ex is NotARegionException, $"truncated to {len}: {ex?.GetType().Name}: {ex?.Message}");
            }
        }
        finally
        {
            Directory.Delete(dir, recursive: true);
        }
    }
}
