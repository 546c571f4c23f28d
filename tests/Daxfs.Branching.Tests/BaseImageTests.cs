using System.Diagnostics;
using System.Runtime.InteropServices;
using System.Text;
using Daxfs.Branching;

namespace Daxfs.Branching.Tests;

public partial class BaseImageTests
{
    private static string MakeTree()
    {
        string dir = Path.Combine(Path.GetTempPath(), $"daxfs-src-{Environment.ProcessId}-{Guid.NewGuid():N}");
        Directory.CreateDirectory(dir);
        File.WriteAllText(Path.Combine(dir, "a.txt"), "hello");
        File.WriteAllText(Path.Combine(dir, "dup1.txt"), "same content");
        File.WriteAllText(Path.Combine(dir, "dup2.txt"), "same content");
        File.WriteAllBytes(Path.Combine(dir, "empty.bin"), []);
        File.WriteAllBytes(Path.Combine(dir, "big.bin"), TempRegion.Pattern(300_000, 1));
        Directory.CreateDirectory(Path.Combine(dir, "emptydir"));
        string deep = dir;
        for (int i = 0; i < 40; i++) deep = Path.Combine(deep, $"d{i}");
        Directory.CreateDirectory(deep);
        File.WriteAllText(Path.Combine(deep, "leaf.txt"), "deep");
        File.WriteAllText(Path.Combine(dir, new string('L', 255)), "long name");
        File.WriteAllText(Path.Combine(dir, "ünïcødé ✓ 名前.txt"), "unicode");
        File.CreateSymbolicLink(Path.Combine(dir, "link"), "a.txt");
        File.SetUnixFileMode(Path.Combine(dir, "a.txt"), UnixFileMode.UserRead | UnixFileMode.UserWrite | UnixFileMode.UserExecute);
        return dir;
    }

    [Fact]
    public void A_directory_tree_round_trips_with_attributes()
    {
        string src = MakeTree();
        try
        {
            var builder = BaseImageBuilder.FromDirectory(src);
            Assert.Empty(builder.Warnings);
            using var r = new TempRegion(builder);
            var m = r.Store.Main;
            Assert.Equal("hello", Encoding.UTF8.GetString(m.ReadAllBytes("a.txt")));
            Assert.Equal(0x1C0u, m.Stat("a.txt").Mode);
            Assert.Equal(0, m.Stat("empty.bin").Size);
            Assert.Empty(m.ReadAllBytes("empty.bin"));
            Assert.Empty(m.List("emptydir"));
            Assert.Equal(TempRegion.Pattern(300_000, 1), m.ReadAllBytes("big.bin"));
            Assert.Equal("deep", Encoding.UTF8.GetString(m.ReadAllBytes(string.Join('/', Enumerable.Range(0, 40).Select(i => $"d{i}")) + "/leaf.txt")));
            Assert.Equal("long name", Encoding.UTF8.GetString(m.ReadAllBytes(new string('L', 255))));
            Assert.Equal("unicode", Encoding.UTF8.GetString(m.ReadAllBytes("ünïcødé ✓ 名前.txt")));
            Assert.Equal("a.txt", m.ReadLink("link"));
            var info = new FileInfo(Path.Combine(src, "a.txt"));
            Assert.Equal(info.LastWriteTimeUtc, m.Stat("a.txt").ModifiedTime.UtcDateTime, TimeSpan.FromMilliseconds(1));
            // Reading from disk again gives the same listing.
            var expected = Directory.EnumerateFileSystemEntries(src).Select(Path.GetFileName).Order(StringComparer.Ordinal);
            Assert.Equal(expected, m.List().Select(e => e.Name));
        }
        finally
        {
            Directory.Delete(src, recursive: true);
        }
    }

    [Fact]
    public void Identical_contents_are_stored_once()
    {
        var one = new BaseImageBuilder();
        var payload = TempRegion.Pattern(1 << 20, 5);
        one.AddFile("a", payload);
        var many = new BaseImageBuilder();
        for (int i = 0; i < 8; i++) many.AddFile($"copy{i}", payload);
        using var r1 = new TempRegion(one);
        using var r8 = new TempRegion(many);
        long size1 = r1.Store.Usage.BaseImageBytes, size8 = r8.Store.Usage.BaseImageBytes;
        Assert.True(size8 < size1 + 8192, $"8 identical files took {size8} bytes, one took {size1}");
        Assert.Equal(payload, r8.Store.Main.ReadAllBytes("copy7"));
    }

    [Fact]
    public void FIFOs_and_hard_links_are_kept_and_what_cannot_be_stored_is_reported()
    {
        string src = Path.Combine(Path.GetTempPath(), $"daxfs-special-{Guid.NewGuid():N}");
        Directory.CreateDirectory(src);
        try
        {
            File.WriteAllText(Path.Combine(src, "file"), "x");
            Process.Start("mkfifo", Path.Combine(src, "fifo"))!.WaitForExit();
            Process.Start("ln", [Path.Combine(src, "file"), Path.Combine(src, "hardlink")])!.WaitForExit();
            File.WriteAllText(Path.Combine(src, "bad\udcff"), "x"); // a name that is not UTF-8 cannot be stored
            var b = BaseImageBuilder.FromDirectory(src);
            Assert.DoesNotContain(b.Warnings, w => w.Contains("fifo", StringComparison.Ordinal) || w.Contains("hard link", StringComparison.Ordinal));
            Assert.Contains(b.Warnings, w => w.Contains("not valid UTF-8", StringComparison.Ordinal));
            using var r = new TempRegion(b);
            Assert.Equal(Index.NodeKind.Fifo, r.Store.Main.Stat("fifo").Kind);
            Assert.Equal(r.Store.Main.Stat("file").Inode, r.Store.Main.Stat("hardlink").Inode);
            Assert.Equal("x", Encoding.UTF8.GetString(r.Store.Main.ReadAllBytes("hardlink")));
            var ex = Assert.Throws<IOException>(() => BaseImageBuilder.FromDirectory(src, UnsupportedEntryPolicy.Refuse));
            Assert.Contains(src, ex.Message);
        }
        finally
        {
            Directory.Delete(src, recursive: true);
        }
    }

    [LibraryImport("libc", EntryPoint = "getxattr", StringMarshalling = StringMarshalling.Utf8, SetLastError = true)]
    private static partial int GetXattr(string path, string name, byte[] value, nuint size);

    [LibraryImport("libc", EntryPoint = "setxattr", StringMarshalling = StringMarshalling.Utf8, SetLastError = true)]
    private static partial int SetXattr(string path, string name, byte[] value, nuint size, int flags);

    [Fact]
    public void A_POSIX_ACL_is_kept_with_its_mask_in_the_group_bits_and_exported_as_it_was()
    {
        // tmpfs keeps POSIX ACLs; with an extended ACL, stat's group bits are the mask, not the owning group's bits.
        string src = Path.Combine("/dev/shm", $"daxfs-acl-{Guid.NewGuid():N}");
        Directory.CreateDirectory(src);
        try
        {
            string file = Path.Combine(src, "shared.txt");
            File.WriteAllText(file, "x");
            File.SetUnixFileMode(file, (UnixFileMode)0x1A0); // 0640
            // version 2; user_obj rw-, user 1000 r--, group_obj r--, mask rwx, other ---
            var acl = new List<byte>(BitConverter.GetBytes(2u));
            foreach (var (tag, perm, id) in new (ushort, ushort, uint)[] { (0x01, 6, uint.MaxValue), (0x02, 4, 1000), (0x04, 4, uint.MaxValue), (0x10, 7, uint.MaxValue), (0x20, 0, uint.MaxValue) })
                acl.AddRange([.. BitConverter.GetBytes(tag), .. BitConverter.GetBytes(perm), .. BitConverter.GetBytes(id)]);
            if (SetXattr(file, "system.posix_acl_access", [.. acl], (nuint)acl.Count, 0) != 0)
                Assert.Fail($"setting an ACL on tmpfs failed (errno {Marshal.GetLastPInvokeError()})");
            Assert.Equal((UnixFileMode)0x1B8, File.GetUnixFileMode(file)); // 0670: the mask shows as the group bits

            var b = BaseImageBuilder.FromDirectory(src);
            Assert.Empty(b.Warnings);
            using var r = new TempRegion(b);
            // Kept as Linux keeps it: the mode's group bits are the mask, and the ACL (stored beside it) says the
            // owning group may only read.
            Assert.Equal(0x1B8u, r.Store.Main.Stat("shared.txt").Mode);
            Assert.Equal([.. acl], r.Store.Main.GetExtendedAttributes("shared.txt")["system.posix_acl_access"]);
            string dest = Path.Combine(r.Directory_, "out");
            r.Store.Main.Export(dest);
            Assert.Equal((UnixFileMode)0x1B8, File.GetUnixFileMode(Path.Combine(dest, "shared.txt")));
            var back = new byte[256];
            int n = GetXattr(Path.Combine(dest, "shared.txt"), "system.posix_acl_access", back, (nuint)back.Length);
            Assert.Equal([.. acl], back.AsSpan(0, n).ToArray());
        }
        finally
        {
            Directory.Delete(src, recursive: true);
        }
    }

    [Fact]
    public void Builder_rejects_bad_paths_and_names()
    {
        var b = new BaseImageBuilder();
        Assert.Throws<ArgumentException>(() => b.AddFile("../x", "1"u8));
        Assert.Throws<ArgumentException>(() => b.AddFile(new string('x', 256), "1"u8));
        Assert.Throws<ArgumentException>(() => b.AddFile("/", "1"u8));
        b.AddFile("f", "1"u8);
        Assert.Throws<ArgumentException>(() => b.AddFile("f", "2"u8));
        Assert.Throws<ArgumentException>(() => b.AddFile("f/g", "2"u8));
    }

    [Fact]
    public void Capacity_too_small_is_refused_with_the_needed_size()
    {
        var b = new BaseImageBuilder().AddFile("big", new byte[4 << 20]);
        string path = Path.Combine(Path.GetTempPath(), $"daxfs-small-{Guid.NewGuid():N}");
        var ex = Assert.Throws<ArgumentOutOfRangeException>(() => Store.Create(path, b, new StoreOptions { Capacity = 1 << 20 }));
        Assert.Contains("needs at least", ex.Message);
        Assert.False(File.Exists(path));
    }

    [Fact]
    public void Creating_over_an_existing_region_needs_overwrite()
    {
        using var r = new TempRegion();
        r.Store.Dispose();
        Assert.Throws<IOException>(() => Store.Create(r.RegionPath, TempRegion.SampleImage()));
        r.Reopen();
    }
}
