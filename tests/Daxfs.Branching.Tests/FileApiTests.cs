using System.Text;
using Daxfs.Branching;

namespace Daxfs.Branching.Tests;

public class FileApiTests
{
    private static FileSystemError ErrorOf(Action a) => Assert.Throws<DaxfsIOException>(a).Error;

    [Fact]
    public void Stat_list_and_read_of_the_base_image()
    {
        using var r = new TempRegion();
        var m = r.Store.Main;
        var st = m.Stat("src/a.txt");
        Assert.Equal(Index.NodeKind.File, st.Kind);
        Assert.Equal(6, st.Size);
        Assert.Equal(0x1A4u, st.Mode);
        Assert.Equal(new[] { "README.md", "empty", "link", "src" }, m.List("/").Select(e => e.Name));
        Assert.Equal(Index.NodeKind.Symlink, m.Stat("link").Kind);
        Assert.Equal("src/a.txt", m.ReadLink("link"));
        Assert.Equal(2 + 2, m.Stat("/").LinkCount); // root: 2 + subdirectories (src, empty)
        Assert.Equal("pha", Encoding.UTF8.GetString(m.Read("src/a.txt", 2, 3).ToArray()));
        Assert.Equal(0, m.Read("src/a.txt", 100, 5).Length);
    }

    [Fact]
    public void Writes_at_offsets_holes_and_appends()
    {
        using var r = new TempRegion();
        var b = r.Store.Main.Fork("b");
        b.Write("f", 10, "xyz"u8);
        var data = b.ReadAllBytes("f");
        Assert.Equal(13, data.Length);
        Assert.All(data[..10], x => Assert.Equal(0, x));
        Assert.Equal("xyz", Encoding.UTF8.GetString(data[10..]));
        b.Append("f", "!!"u8);
        Assert.Equal("xyz!!", Encoding.UTF8.GetString(b.ReadAllBytes("f")[10..]));
        b.Write("src/big.bin", 199_999, "END"u8);
        Assert.Equal(200_002, b.Stat("src/big.bin").Size);
        Assert.Equal("END", Encoding.UTF8.GetString(b.Read("src/big.bin", 199_999).ToArray()));
    }

    [Fact]
    public void Truncate_hides_old_bytes_even_after_re_extension()
    {
        using var r = new TempRegion();
        var b = r.Store.Main.Fork("b");
        b.Truncate("src/a.txt", 2);
        b.Truncate("src/a.txt", 6);
        Assert.Equal(new byte[] { (byte)'a', (byte)'l', 0, 0, 0, 0 }, b.ReadAllBytes("src/a.txt"));
        b.Write("g", 0, "0123456789"u8);
        b.Truncate("g", 3);
        b.Write("g", 8, "Z"u8);
        Assert.Equal("012\0\0\0\0\0Z", Encoding.UTF8.GetString(b.ReadAllBytes("g")));
    }

    [Fact]
    public void Rename_follows_posix_overwrite_rules()
    {
        using var r = new TempRegion();
        var b = r.Store.Main.Fork("b");
        b.Rename("src/a.txt", "moved.txt");
        Assert.False(b.Exists("src/a.txt"));
        Assert.Equal("alpha\n", Encoding.UTF8.GetString(b.ReadAllBytes("moved.txt")));
        b.Rename("moved.txt", "src/b.txt"); // file replaces file
        Assert.Equal("alpha\n", Encoding.UTF8.GetString(b.ReadAllBytes("src/b.txt")));
        Assert.Equal(FileSystemError.IsADirectory, ErrorOf(() => b.Rename("README.md", "empty")));
        Assert.Equal(FileSystemError.NotADirectory, ErrorOf(() => b.Rename("empty", "README.md")));
        b.CreateDirectory("full");
        b.CreateFile("full/x");
        Assert.Equal(FileSystemError.NotEmpty, ErrorOf(() => b.Rename("empty", "full")));
        b.Rename("full", "empty"); // directory replaces empty directory
        Assert.True(b.Exists("empty/x"));
        Assert.Equal(FileSystemError.InvalidArgument, ErrorOf(() => b.Rename("src", "src/inner")));
        Assert.Equal(FileSystemError.Exists, ErrorOf(() => b.Rename("README.md", "src/b.txt", noReplace: true)));
        b.Rename("src", "lib");
        Assert.Equal("bravo\n".Length, b.Stat("lib/big.bin").Size > 0 ? 6 : 0);
        Assert.Equal(200_000, b.Stat("lib/big.bin").Size);
        Assert.Equal(FileSystemError.NotFound, ErrorOf(() => b.Rename("nope", "x")));
    }

    [Fact]
    public void Delete_files_directories_and_trees()
    {
        using var r = new TempRegion();
        var b = r.Store.Main.Fork("b");
        Assert.Equal(FileSystemError.NotEmpty, ErrorOf(() => b.Delete("src")));
        b.Delete("empty");
        b.Delete("src", recursive: true);
        b.Delete("link");
        Assert.Equal(new[] { "README.md" }, b.List().Select(e => e.Name));
        Assert.Equal(FileSystemError.NotFound, ErrorOf(() => b.Delete("src")));
        Assert.True(r.Store.Main.Exists("src/b.txt"));
    }

    [Fact]
    public void Create_mkdir_symlink_and_their_errors()
    {
        using var r = new TempRegion();
        var b = r.Store.Main.Fork("b");
        b.CreateDirectory("a/b/c", parents: true);
        b.CreateDirectory("a/b/c", parents: true);
        Assert.Equal(FileSystemError.Exists, ErrorOf(() => b.CreateDirectory("a")));
        Assert.Equal(FileSystemError.NotFound, ErrorOf(() => b.CreateFile("nope/x")));
        Assert.Equal(FileSystemError.NotADirectory, ErrorOf(() => b.CreateFile("README.md/x")));
        Assert.Equal(FileSystemError.Exists, ErrorOf(() => b.CreateFile("README.md")));
        Assert.Equal(FileSystemError.IsADirectory, ErrorOf(() => b.Write("a", 0, "x"u8)));
        Assert.Equal(FileSystemError.InvalidArgument, ErrorOf(() => b.CreateFile("../escape")));
        Assert.Equal(FileSystemError.NameTooLong, ErrorOf(() => b.CreateFile(new string('n', 256))));
        b.CreateFile(new string('n', 255));
        b.CreateFile("héllo wörld ✓");
        Assert.True(b.Exists("héllo wörld ✓"));
        b.CreateSymlink("ln", "../target");
        Assert.Equal("../target", b.ReadLink("ln"));
        Assert.Equal(FileSystemError.InvalidArgument, ErrorOf(() => b.ReadLink("README.md")));
    }

    [Fact]
    public void Chmod_chown_and_times()
    {
        using var r = new TempRegion();
        var b = r.Store.Main.Fork("b");
        b.Chmod("src/a.txt", 0x180); // 0600
        b.Chown("src/a.txt", 1000, 1001);
        var t = new DateTimeOffset(2020, 1, 2, 3, 4, 5, TimeSpan.Zero);
        b.SetModifiedTime("src/a.txt", t);
        var st = b.Stat("src/a.txt");
        Assert.Equal(0x180u, st.Mode);
        Assert.Equal(1000u, st.Uid);
        Assert.Equal(1001u, st.Gid);
        Assert.Equal(t, st.ModifiedTime);
        Assert.Equal(0x1A4u, r.Store.Main.Stat("src/a.txt").Mode);
    }

    [Fact]
    public void Reads_through_a_handle_see_later_writes_and_allocate_nothing()
    {
        using var r = new TempRegion();
        var b = r.Store.Main.Fork("b");
        b.Write("src/big.bin", 4096, TempRegion.Pattern(4096, 9));
        var h = b.OpenFile("src/big.bin");
        long sum = 0;
        for (int i = 0; i < 3; i++)
            foreach (var span in h.Read(4000, 4096)) sum += span.Length; // warm up
        long before = GC.GetAllocatedBytesForCurrentThread();
        for (int i = 0; i < 1000; i++)
            foreach (var span in h.Read(4000, 4096)) sum += span[0];
        long allocated = GC.GetAllocatedBytesForCurrentThread() - before;
        Assert.Equal(0, allocated);
        Assert.True(sum > 0);
        b.Write("src/big.bin", 0, "NEW"u8);
        Assert.Equal("NEW", Encoding.UTF8.GetString(h.Read(0, 3).ToArray()));
    }

    [Fact]
    public void Read_sequence_spans_the_pieces_without_copying()
    {
        using var r = new TempRegion();
        var b = r.Store.Main.Fork("b");
        b.Write("src/big.bin", 100, "abc"u8);
        var seq = b.Read("src/big.bin", 0, 1000).ToSequence();
        Assert.False(seq.IsSingleSegment);
        Assert.Equal(1000, seq.Length);
        var expect = TempRegion.Pattern(200_000, 7)[..1000];
        "abc"u8.CopyTo(expect.AsSpan(100));
        Assert.Equal(expect, System.Buffers.BuffersExtensions.ToArray(seq));
    }

    [Fact]
    public void A_closed_store_refuses_calls_instead_of_touching_unmapped_memory()
    {
        using var r = new TempRegion();
        var main = r.Store.Main;
        var h = main.OpenFile("src/a.txt");
        r.Store.Dispose();
        Assert.Throws<ObjectDisposedException>(() => main.ReadAllBytes("src/a.txt"));
        Assert.Throws<ObjectDisposedException>(() => h.Read(0, 1));
        Assert.Throws<ObjectDisposedException>(() => r.Store.AtVersion(0));
        Assert.Throws<ObjectDisposedException>(() => r.Store.Versions);
        r.Reopen();
    }

    [Fact]
    public void Invalid_ranges_are_rejected_with_the_path()
    {
        using var r = new TempRegion();
        var ex = Assert.Throws<DaxfsIOException>(() => r.Store.Main.Read("src/a.txt", -1, 3));
        Assert.Contains("src/a.txt", ex.Message);
        Assert.Equal(FileSystemError.IsADirectory, ErrorOf(() => r.Store.Main.Read("src")));
        Assert.Equal(FileSystemError.NotFound, ErrorOf(() => r.Store.Main.Read("missing")));
    }
}
