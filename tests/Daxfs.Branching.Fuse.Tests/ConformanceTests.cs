using Xunit.Abstractions;

namespace Daxfs.Branching.Fuse.Tests;

/// <summary>
/// The project's conformance suite: conformance.py checks one system call (a group) in many cases, written from
/// the POSIX and Linux man pages, printing one line per check. Each group runs in a mounted branch and on tmpfs,
/// and every line must be the same on both: each line is one assertion.
/// </summary>
public abstract class Conformance(ITestOutputHelper output, string group)
{
    [Fact]
    public void Every_check_gives_the_same_result_as_tmpfs()
    {
        string script = Path.Combine(AppContext.BaseDirectory, "conformance.py");
        using var m = new Mounted();
        string mp = m.Mount("conf");
        string work = Path.Combine(mp, "w");
        string shm = Path.Combine("/dev/shm", $"daxfs-conf-{Guid.NewGuid():N}");
        Directory.CreateDirectory(work);
        Directory.CreateDirectory(shm);
        try
        {
            var mine = Sh.Run("python3", [script, group], cwd: work);
            var tmpfs = Sh.Run("python3", [script, group], cwd: shm);
            Assert.True(tmpfs.Code == 0, $"the checks failed on tmpfs: {tmpfs.Err}");
            Assert.True(mine.Code == 0, $"the checks failed on the mount: {mine.Err}");
            var a = mine.Out.Split('\n', StringSplitOptions.RemoveEmptyEntries);
            var b = tmpfs.Out.Split('\n', StringSplitOptions.RemoveEmptyEntries);
            Assert.Equal(b.Length, a.Length);
            var differ = a.Zip(b).Where(p => p.First != p.Second).Select(p => $"mount: {p.First}\ntmpfs: {p.Second}").ToList();
            output.WriteLine($"{group}: {a.Length} checks, {differ.Count} differ");
            Assert.True(differ.Count == 0, string.Join("\n", differ));
        }
        finally
        {
            Directory.Delete(shm, recursive: true);
        }
    }
}

public class OpenConformance(ITestOutputHelper o) : Conformance(o, "open");

public class RenameConformance(ITestOutputHelper o) : Conformance(o, "rename");

public class UnlinkRmdirConformance(ITestOutputHelper o) : Conformance(o, "unlink");

public class LinkConformance(ITestOutputHelper o) : Conformance(o, "link");

public class SymlinkConformance(ITestOutputHelper o) : Conformance(o, "symlink");

public class MkdirConformance(ITestOutputHelper o) : Conformance(o, "mkdir");

public class PermissionConformance(ITestOutputHelper o) : Conformance(o, "permission");

public class TruncateConformance(ITestOutputHelper o) : Conformance(o, "truncate");

public class UtimensatConformance(ITestOutputHelper o) : Conformance(o, "times");

public class ReaddirConformance(ITestOutputHelper o) : Conformance(o, "readdir");

public class XattrConformance(ITestOutputHelper o) : Conformance(o, "xattr");

public class FallocateConformance(ITestOutputHelper o) : Conformance(o, "fallocate");
