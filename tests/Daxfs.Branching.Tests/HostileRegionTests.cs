using System.Runtime.InteropServices;
using System.Text;
using Daxfs.Branching;
using Daxfs.Branching.Format;
using Xunit.Abstractions;

namespace Daxfs.Branching.Tests;

/// <summary>
/// Damaged and hostile regions: random mutations (10,000 cases by default; DAXFS_FUZZ_CASES for more) and
/// hand-made attacks with their checksums recomputed, so the structural checks behind the checksums are
/// exercised too. Every case must end in a typed error or a consistent region: no crash, no hang, no
/// unbounded allocation.
/// </summary>
public class HostileRegionTests(ITestOutputHelper output)
{
    private sealed class Sample : IDisposable
    {
        public Sample(bool compacted = false)
        {
            Dir = Path.Combine("/dev/shm", $"daxfs-hostile-{Environment.ProcessId}-{Guid.NewGuid():N}");
            Directory.CreateDirectory(Dir);
            Path_ = System.IO.Path.Combine(Dir, "r.daxfs");
            var image = new BaseImageBuilder()
                .AddFile("a.txt", "alpha"u8).AddFile("d/b.txt", "bravo"u8).AddFile("d/e/c.bin", TempRegion.Pattern(70_000, 2))
                .AddDirectory("d/empty").AddSymlink("l", "a.txt");
            using (var s = Store.Create(Path_, image, new StoreOptions { Capacity = 2L << 20, BranchSlots = 8 }))
            {
                var v = s.Main.Fork("v");
                v.WriteAllBytes("d/new.txt", "committed"u8);
                v.Rename("a.txt", "d/a.txt");
                v.Commit("v1");
                var p = s.Main.Fork("p");
                p.Write("d/e/c.bin", 100, "patched"u8);
                var c = p.Fork("c");
                c.CreateSymlink("sl", "x/y");
                c.Truncate("d/b.txt", 2);
                c.CommitToParent("c");
                p.Fork("leaf").Delete("d/empty");
                if (compacted)
                {
                    // A second version, then fold the first into a base image in the arena (sparse file included).
                    var w = s.Main.Fork("w");
                    w.Write("d/sparse.bin", 20_000, "tail"u8);
                    w.Commit("v2");
                    var again = s.Main.Fork("again");
                    again.WriteAllBytes("after.txt", "after"u8);
                    again.Commit("v3");
                    s.Compact(new CompactOptions { Keep = 1 });
                }
            }
            Original = File.ReadAllBytes(Path_);
            Super = MemoryMarshal.Read<Superblock>(Original);
            Base = MemoryMarshal.Read<BaseHeader>(Original.AsSpan((int)Super.BaseOffset));
            for (long at = Super.ArenaOffset; compacted && at < Original.Length; at += FormatConstants.PageSize)
            {
                if (MemoryMarshal.Read<ulong>(Original.AsSpan((int)at)) != BaseHeader.MagicValue) continue;
                var h = MemoryMarshal.Read<BaseHeader>(Original.AsSpan((int)at));
                Compacted = (at, h.DataOffset + Math.Min(h.DataLength, 4096));
                break;
            }
            if (compacted && Compacted is null)
                throw new InvalidOperationException("the compacted image was not found");
        }

        public string Dir { get; }
        public string Path_ { get; }
        public byte[] Original { get; }
        public Superblock Super { get; }
        public BaseHeader Base { get; }
        /// <summary>A compacted base image's metadata and first data page, when the sample was compacted.</summary>
        public (long Start, long End)? Compacted { get; }

        public void Dispose() => Directory.Delete(Dir, recursive: true);
    }

    /// <summary>Opens the region and reads everything; returns "corrupt", "version" or a snapshot of a consistent region.</summary>
    internal static string Outcome(string path)
    {
        var task = Task.Run(() =>
        {
            long before = GC.GetAllocatedBytesForCurrentThread();
            try
            {
                using var s = Store.Open(path);
                s.Verify();
                return ReopenAndRecoveryTests.Snapshot(s);
            }
            catch (CorruptionException e)
            {
                Assert.False(string.IsNullOrEmpty(e.Structure));
                return "corrupt";
            }
            catch (FormatVersionException)
            {
                return "version";
            }
            catch (NotARegionException)
            {
                return "corrupt"; // both headers gone: as far as the file shows, not a region
            }
            finally
            {
                long allocated = GC.GetAllocatedBytesForCurrentThread() - before;
                Assert.True(allocated < 256L << 20, $"a 2 MiB region made the reader allocate {allocated} bytes");
            }
        });
        if (!task.Wait(TimeSpan.FromSeconds(30)))
            throw new TimeoutException("opening a damaged region did not finish (a hang)");
        return task.Result;
    }

    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public void Random_mutations_give_typed_errors_or_consistent_regions(bool compacted)
    {
        int cases = int.TryParse(Environment.GetEnvironmentVariable("DAXFS_FUZZ_CASES"), out int n) ? n : compacted ? 5_000 : 10_000;
        using var sample = new Sample(compacted);
        var rng = new Random(20261122);
        var o = sample.Original;
        long arena = sample.Super.ArenaOffset;
        // Where the metadata lives: header, control block, slot table, base metadata, the used part of the arena.
        var areas = new (long Start, long End)[]
        {
            (0, Superblock.Size), (FormatConstants.ControlOffset, FormatConstants.ControlOffset + 1024),
            (sample.Super.SlotTableOffset, sample.Super.SlotTableOffset + 8 * BranchSlot.Size),
            (sample.Super.BaseOffset, sample.Base.DataOffset), (sample.Base.ChunkCrcOffset, sample.Base.ChunkCrcOffset + sample.Base.ChunkCount * 4),
            (arena, arena + 64 * 1024),
        };
        if (sample.Compacted is { } image)
            areas = [.. areas, image];
        int corrupt = 0, consistent = 0, same = 0;
        string clean = Outcome(sample.Path_);
        using var file = new FileStream(sample.Path_, FileMode.Open, FileAccess.ReadWrite, FileShare.ReadWrite);
        var touched = new List<long>();
        for (int i = 0; i < cases; i++)
        {
            var (start, end) = areas[rng.Next(areas.Length)];
            int flips = 1 + rng.Next(4);
            touched.Clear();
            for (int k = 0; k < flips; k++)
            {
                long at = start + rng.NextInt64(end - start);
                byte value = (rng.Next(4)) switch
                {
                    0 => (byte)(o[at] ^ (1 << rng.Next(8))),
                    1 => 0xFF,
                    2 => 0,
                    _ => (byte)rng.Next(256),
                };
                // Sometimes set a whole 8-byte field to an extreme.
                if (rng.Next(8) == 0 && at + 8 <= end)
                {
                    long extreme = rng.Next(4) switch { 0 => long.MaxValue, 1 => long.MinValue, 2 => -1, _ => 0 };
                    file.Position = at & ~7L;
                    file.Write(BitConverter.GetBytes(extreme));
                    for (long b = at & ~7L; b < (at & ~7L) + 8; b++) touched.Add(b);
                    continue;
                }
                file.Position = at;
                file.WriteByte(value);
                touched.Add(at);
            }
            file.Flush();
            string result = Outcome(sample.Path_);
            if (result is "corrupt" or "version") corrupt++;
            else if (result == clean) { consistent++; same++; }
            else consistent++;
            // Restore the original bytes (opening may also have repaired derived words: restore the whole metadata).
            foreach (var (s, e) in areas)
            {
                file.Position = s;
                file.Write(o, (int)s, (int)(e - s));
            }
            file.Flush();
        }
        output.WriteLine($"{(compacted ? "compacted, " : "")}{cases} mutated regions: {corrupt} typed corruption errors, {consistent} consistent ({same} reading exactly as the undamaged region)");
        Assert.Equal(cases, corrupt + consistent);
        Assert.True(corrupt > cases / 4);
    }

    private static void Patch(Sample s, Action<byte[]> change, string expectStructure)
    {
        var bytes = (byte[])s.Original.Clone();
        change(bytes);
        File.WriteAllBytes(s.Path_, bytes);
        var ex = Assert.Throws<CorruptionException>(() => Store.Open(s.Path_).Dispose());
        Assert.Contains(expectStructure, ex.Message, StringComparison.Ordinal);
    }

    /// <summary>Recomputes the base image's checksums after a hand-made change, so only structure can catch it.</summary>
    private static void Reseal(byte[] bytes, Sample s)
    {
        var h = s.Base;
        long bo = s.Super.BaseOffset;
        uint meta = Crc32C.Seed;
        meta = Crc32C.Append(meta, bytes.AsSpan((int)h.InodeTableOffset, (int)(h.InodeCount * BaseInode.Size)));
        meta = Crc32C.Append(meta, bytes.AsSpan((int)h.DirentOffset, (int)(h.DirentCount * BaseDirent.Size)));
        meta = Crc32C.Append(meta, bytes.AsSpan((int)h.NamePoolOffset, (int)h.NamePoolLength));
        BitConverter.GetBytes(Crc32C.Finish(meta)).CopyTo(bytes, bo + 88);
        BitConverter.GetBytes(Crc32C.Compute(bytes.AsSpan((int)bo, 124))).CopyTo(bytes, bo + 124);
    }

    private static BaseDirent Dirent(byte[] b, Sample s, int i) => MemoryMarshal.Read<BaseDirent>(b.AsSpan((int)(s.Base.DirentOffset + i * BaseDirent.Size)));

    private static void SetDirent(byte[] b, Sample s, int i, BaseDirent d) => MemoryMarshal.Write(b.AsSpan((int)(s.Base.DirentOffset + i * BaseDirent.Size)), in d);

    [Fact]
    public void Hand_made_attacks_on_the_base_image_are_named()
    {
        using var s = new Sample();
        // A directory entry that names the root: a cycle.
        Patch(s, b => { var d = Dirent(b, s, 0); d.ChildIno = 1; SetDirent(b, s, 0, d); Reseal(b, s); }, "base dirent 0");
        // Two entries that name the same inode where its link count (and the directory's subdirectory count) says
        // one: a hard link is legal only when the counts agree.
        Patch(s, b => { var d0 = Dirent(b, s, 0); var d1 = Dirent(b, s, 1); d1.ChildIno = d0.ChildIno; SetDirent(b, s, 1, d1); Reseal(b, s); }, "does not match");
        // Duplicate names in one directory.
        Patch(s, b => { var d0 = Dirent(b, s, 0); var d1 = Dirent(b, s, 1); d1.NameOffset = d0.NameOffset; d1.NameLength = d0.NameLength; SetDirent(b, s, 1, d1); Reseal(b, s); }, "strictly sorted");
        // A name containing '/', then one containing NUL.
        Patch(s, b => { b[s.Base.NamePoolOffset] = (byte)'/'; Reseal(b, s); }, "'/' or NUL");
        Patch(s, b => { b[s.Base.NamePoolOffset] = 0; Reseal(b, s); }, "'/' or NUL");
        // A name running out of the name pool.
        Patch(s, b => { var d = Dirent(b, s, 0); d.NameOffset = uint.MaxValue - 2; SetDirent(b, s, 0, d); Reseal(b, s); }, "outside the name pool");
        // File data pointing far outside the data area.
        Patch(s, b =>
        {
            long at = s.Base.InodeTableOffset + 1 * BaseInode.Size; // inode 2
            var n = MemoryMarshal.Read<BaseInode>(b.AsSpan((int)at));
            n.DataOffset = long.MaxValue - 10;
            n.ByteSize = 100;
            if ((n.Mode & 0xF000) == 0x4000) n.Mode = 0x81A4; // make it a file if it was a directory
            MemoryMarshal.Write(b.AsSpan((int)at), in n);
            Reseal(b, s);
        }, "base");
        // Table offsets set to extremes in the base header.
        Patch(s, b => { BitConverter.GetBytes(long.MaxValue).CopyTo(b, s.Super.BaseOffset + 16); Reseal(b, s); }, "base inode table");
        Patch(s, b => { BitConverter.GetBytes(-1L).CopyTo(b, s.Super.BaseOffset + 32); Reseal(b, s); }, "base header");
        Patch(s, b => { BitConverter.GetBytes(uint.MaxValue).CopyTo(b, s.Super.BaseOffset + 8); Reseal(b, s); }, "base inode table");
    }

    /// <summary>Changes a slot and recomputes its identity checksum, so only the structural checks can catch it.</summary>
    private static void SetSlot(byte[] b, Sample s, int i, Func<BranchSlot, BranchSlot> f)
    {
        long at = s.Super.SlotTableOffset + (long)i * BranchSlot.Size;
        var slot = MemoryMarshal.Read<BranchSlot>(b.AsSpan((int)at));
        slot = f(slot);
        slot.IdentityCrc = BranchSlot.ComputeIdentityCrc(in slot);
        MemoryMarshal.Write(b.AsSpan((int)at), in slot);
    }

    [Fact]
    public void Hostile_branch_tables_cannot_loop_or_escape()
    {
        using var s = new Sample();
        // Find the live slots of p and leaf.
        int FindSlot(string name)
        {
            for (int i = 0; i < 8; i++)
            {
                var slot = MemoryMarshal.Read<BranchSlot>(s.Original.AsSpan((int)(s.Super.SlotTableOffset + i * BranchSlot.Size)));
                unsafe
                {
                    if (slot.State == 1 && Encoding.ASCII.GetString(slot.Name, (int)slot.NameLength) == name) return i;
                }
            }
            throw new InvalidOperationException(name);
        }
        int p = FindSlot("p"), leaf = FindSlot("leaf");
        // Parent links forming a loop: p's parent is leaf, leaf's parent is p.
        var bytes = (byte[])s.Original.Clone();
        SetSlot(bytes, s, p, x => { x.ParentSlot = (uint)leaf; x.Depth = 2; return x; });
        SetSlot(bytes, s, leaf, x => { x.ParentSlot = (uint)p; x.Depth = 3; return x; });
        File.WriteAllBytes(s.Path_, bytes);
        string outcome = Outcome(s.Path_);
        Assert.NotEqual("version", outcome);
        if (outcome != "corrupt")
            Assert.DoesNotContain("# p ", outcome, StringComparison.Ordinal); // neither survives as a live branch
        // A slot naming itself as parent, a parent beyond the table, a name with '/' and with NUL.
        Patch(s, b => SetSlot(b, s, p, x => { x.ParentSlot = 1_000_000; return x; }), "branch slot");
        Patch(s, b => SetSlot(b, s, p, x => { unsafe { x.Name[0] = (byte)'/'; } return x; }), "bad name");
        Patch(s, b => SetSlot(b, s, p, x => { unsafe { x.Name[0] = 0; } return x; }), "bad name");
        Patch(s, b => SetSlot(b, s, p, x => { x.NameLength = 200; return x; }), "name length");
        Patch(s, b => SetSlot(b, s, p, x => { x.Tail = long.MaxValue; return x; }), "outside the arena");
        var self = (byte[])s.Original.Clone();
        SetSlot(self, s, p, x => { x.ParentSlot = (uint)p; return x; });
        File.WriteAllBytes(s.Path_, self);
        Assert.NotEqual("version", Outcome(s.Path_));
    }
}
