using System.Text;
using Daxfs.Branching;
using Daxfs.Branching.Index;

namespace Daxfs.Branching.Tests;

public class DiffExportTests
{
    [Fact]
    public void A_file_replaced_at_its_path_diffs_as_modified_and_rebases_as_a_change_of_its_bytes()
    {
        using var r = new TempRegion();
        var b = r.Store.Main.Fork("b", new ForkOptions { KeepForRebase = true });
        b.ReplaceFile("src/a.txt", "alpha\nbeta\n"u8); // a new inode at the same path
        var change = Assert.Single(b.Diff());
        Assert.Equal((ChangeKind.Modified, "/src/a.txt"), (change.Kind, change.Path));
        Assert.Equal(new[] { new ByteRange(0, 11) }, change.Ranges); // every byte was written anew
        // Main moves on elsewhere; the replaced file comes along in a rebase as a change of its bytes.
        var other = r.Store.Main.Fork("other");
        other.WriteAllBytes("src/b.txt", "bravo!\n"u8);
        other.Commit("b.txt");
        var rebased = r.Store.Rebase("b", "b2");
        Assert.Equal("alpha\nbeta\n", Encoding.UTF8.GetString(rebased.ReadAllBytes("src/a.txt")));
        Assert.Equal("bravo!\n", Encoding.UTF8.GetString(rebased.ReadAllBytes("src/b.txt")));
    }

    [Fact]
    public void Diff_reports_added_deleted_modified_ranges_renamed_and_attributes()
    {
        using var r = new TempRegion();
        var b = r.Store.Main.Fork("b");
        b.WriteAllBytes("added.txt", "new"u8);
        b.Delete("README.md");
        b.Write("src/big.bin", 1000, new byte[10]);
        b.Write("src/big.bin", 5000, new byte[3]);
        b.Rename("src/a.txt", "renamed.txt");
        b.Chmod("src/b.txt", 0x180);
        var changes = b.Diff();
        Assert.Contains(changes, c => c is { Kind: ChangeKind.Added, Path: "/added.txt", NodeKind: NodeKind.File });
        Assert.Contains(changes, c => c is { Kind: ChangeKind.Deleted, Path: "/README.md" });
        var mod = Assert.Single(changes, c => c.Kind == ChangeKind.Modified);
        Assert.Equal("/src/big.bin", mod.Path);
        Assert.Equal(new[] { new ByteRange(1000, 10), new ByteRange(5000, 3) }, mod.Ranges);
        Assert.Contains(changes, c => c is { Kind: ChangeKind.Renamed, Path: "/renamed.txt", OldPath: "/src/a.txt" });
        var attr = Assert.Single(changes, c => c.Kind == ChangeKind.AttributesChanged);
        Assert.Equal("/src/b.txt", attr.Path);
        Assert.Contains("mode 644 -> 600", attr.Detail);
        Assert.Equal(5, changes.Count);
        // A child diffs against its parent only.
        var c = b.Fork("c");
        c.Truncate("added.txt", 1);
        var only = Assert.Single(c.Diff());
        Assert.Equal(ChangeKind.Modified, only.Kind);
        Assert.Equal(new[] { new ByteRange(1, 2) }, only.Ranges);
        Assert.Empty(r.Store.Main.Fork("fresh").Diff());
    }

    [Fact]
    public void Export_materializes_the_branch_view()
    {
        using var r = new TempRegion();
        var b = r.Store.Main.Fork("b");
        b.WriteAllBytes("src/new.txt", "fresh"u8);
        b.Chmod("src/new.txt", 0x1C0);
        string dest = Path.Combine(r.Directory_, "export");
        var reports = new List<ExportProgress>();
        b.Export(dest, new Progress<ExportProgress>(reports.Add));
        Assert.Equal("fresh", File.ReadAllText(Path.Combine(dest, "src/new.txt")));
        Assert.Equal(TempRegion.Pattern(200_000, 7), File.ReadAllBytes(Path.Combine(dest, "src/big.bin")));
        Assert.Equal("src/a.txt", new FileInfo(Path.Combine(dest, "link")).LinkTarget);
        Assert.Equal(UnixFileMode.UserRead | UnixFileMode.UserWrite | UnixFileMode.UserExecute, File.GetUnixFileMode(Path.Combine(dest, "src/new.txt")));
        Assert.True(Directory.Exists(Path.Combine(dest, "empty")));
        // A non-empty destination is refused and left alone.
        var ex = Assert.Throws<IOException>(() => b.Export(dest));
        Assert.Contains(dest, ex.Message);
        Assert.Equal("fresh", File.ReadAllText(Path.Combine(dest, "src/new.txt")));
    }

    [Fact]
    public void A_handle_on_a_removed_base_file_reports_not_found()
    {
        using var r = new TempRegion();
        var b = r.Store.Main.Fork("b");
        var h = b.OpenFile("src/a.txt");
        Assert.Equal(6, h.Length);
        b.Delete("src/a.txt");
        Assert.Equal(FileSystemError.NotFound, Assert.Throws<DaxfsIOException>(() => h.Read()).Error);
        Assert.Equal(6, r.Store.Main.OpenFile("src/a.txt").Length);
    }
}
