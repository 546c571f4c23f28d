using Daxfs.Branching.Index;

namespace Daxfs.Branching.Tests;

public class ExtentMapTests
{
    /// <summary>Reads the map into bytes: each byte is the low byte of its source offset, holes are 0xFF.</summary>
    private static byte[] Render(LongMapNode<Extent>? root, int size)
    {
        var b = new byte[size];
        for (int i = 0; i < size; i++)
        {
            bool data = ExtentMap.Locate(root, i, size, out long src, out long avail);
            Assert.True(avail > 0);
            b[i] = data ? (byte)(src & 0x7F) : (byte)0xFF;
        }
        return b;
    }

    [Fact]
    public void Random_writes_and_truncates_match_a_byte_model()
    {
        for (int seed = 0; seed < 40; seed++)
        {
            var rng = new Random(seed);
            const int size = 512;
            var model = Enumerable.Repeat((byte)0xFF, size).ToArray();
            LongMapNode<Extent>? root = null;
            var snapshots = new List<(LongMapNode<Extent>? Root, byte[] Model)>();
            for (int step = 0; step < 200; step++)
            {
                if (rng.Next(10) == 0)
                {
                    int t = rng.Next(size);
                    root = ExtentMap.Truncate(root, t);
                    for (int i = t; i < size; i++) model[i] = 0xFF;
                }
                else
                {
                    int start = rng.Next(size - 1);
                    int len = rng.Next(1, Math.Min(64, size - start));
                    long source = rng.Next(0, 1 << 20) * 128L; // low 7 bits = offset within the extent
                    root = ExtentMap.Write(root, start, len, source, record: 0);
                    for (int i = 0; i < len; i++) model[start + i] = (byte)((source + i) & 0x7F);
                }
                if (step % 20 == 0) snapshots.Add((root, (byte[])model.Clone()));
                Assert.Equal(model, Render(root, size));
            }
            // Persistence: older roots still read as they did.
            foreach (var (r, m) in snapshots)
                Assert.Equal(m, Render(r, size));
            // Extents never overlap and are sorted.
            long end = -1;
            foreach (var n in LongMap.InOrder(root))
            {
                Assert.True(n.Key >= end, $"seed {seed}: overlap at {n.Key}");
                Assert.True(n.Value.Length > 0);
                end = n.Key + n.Value.Length;
            }
        }
    }

    [Fact]
    public void Truncate_then_extend_reads_a_hole()
    {
        var root = ExtentMap.Write(null, 0, 100, 1000, record: 0);
        root = ExtentMap.Truncate(root, 10);
        Assert.True(ExtentMap.Locate(root, 5, 200, out long src, out long avail));
        Assert.Equal(1005, src);
        Assert.Equal(5, avail);
        Assert.False(ExtentMap.Locate(root, 50, 200, out _, out avail));
        Assert.Equal(150, avail);
    }

    [Fact]
    public void LongMap_set_get_remove_keeps_old_versions()
    {
        LongMapNode<string>? m = null;
        var versions = new List<LongMapNode<string>?>();
        for (int i = 0; i < 1000; i++)
        {
            m = LongMap.Set(m, i * 7 % 1000, $"v{i}");
            versions.Add(m);
        }
        Assert.Equal(1000, LongMap.Count(m));
        Assert.True(LongMap.TryGet(m, 0, out var v0));
        Assert.Equal("v0", v0);
        Assert.Equal(1, LongMap.Count(versions[0]));
        var removed = LongMap.Remove(m, 7);
        Assert.False(LongMap.TryGet(removed, 7, out _));
        Assert.True(LongMap.TryGet(m, 7, out _));
        Assert.Equal(999, LongMap.Count(removed));
    }
}
