using System.Runtime.InteropServices;

namespace Daxfs.Branching.Branching;

/// <summary>
/// Named places inside fork, write, commit, abort, discard, reclamation and compaction where a crash test can kill the
/// process outright (SIGKILL, as <c>kill -9</c> would), to prove that recovery handles a crash at each.
/// Armed only by the environment variable <c>DAXFS_FAULT_POINT</c>; otherwise each point is one comparison
/// with null.
/// </summary>
internal static partial class FaultPoints
{
    private static readonly string? s_armed = Environment.GetEnvironmentVariable("DAXFS_FAULT_POINT");

    /// <summary>Every fault point, for tests that walk them all.</summary>
    public static readonly string[] All =
    [
        "fork.slot-filled", "fork.published",
        "append.reserved", "append.linked",
        "commit.before-publish", "commit.published", "commit.epoch-stored", "commit.invalidating",
        "commit-parent.published", "commit-parent.invalidating",
        "abort.top-ended", "discard.ended", "reclaim.freeing",
        "compact.written", "compact.published", "discard-kept.freed",
    ];

    public static void Hit(string name)
    {
        if (s_armed is not null && s_armed == name)
        {
            Console.Error.WriteLine($"fault point {name}: killing the process");
            Console.Error.Flush();
            Kill(Environment.ProcessId, 9);
        }
    }

    [LibraryImport("libc", EntryPoint = "kill")]
    private static partial int Kill(int pid, int signal);
}
