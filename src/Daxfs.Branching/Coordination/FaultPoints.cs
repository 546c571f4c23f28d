using Daxfs.Branching.Media;

namespace Daxfs.Branching.Coordination;

/// <summary>
/// Named places inside fork, write, commit, abort, discard, reclamation and compaction where a crash test can kill the
/// process outright (SIGKILL, as <c>kill -9</c> would), to prove that recovery handles a crash at each.
/// Armed only by the environment variable <c>DAXFS_FAULT_POINT</c>; otherwise each point is one comparison
/// with null.
/// </summary>
internal static class FaultPoints
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
        "compact.written", "compact.published", "discard-kept.freed", "lock.held",
        "clean.written", "clean.published", "resize.extended", "checkpoint.written", "checkpoint.published",
    ];

    /// <summary>
    /// A point armed by <c>DAXFS_PAUSE_POINT</c> instead holds the process there until a line arrives on its
    /// standard input, so a test can stop it from outside (SIGSTOP, as a debugger or a frozen sandbox would
    /// leave it), check that the others wait for it, and let it go on or kill it. (The process does not stop
    /// itself: as the first process of a PID namespace it would not receive its own SIGSTOP.)
    /// </summary>
    private static readonly string? s_pause = Environment.GetEnvironmentVariable("DAXFS_PAUSE_POINT");
    private static int s_paused;

    public static void Hit(string name)
    {
        if (s_armed is not null && s_armed == name)
        {
            Console.Error.WriteLine($"fault point {name}: killing the process");
            Console.Error.Flush();
            Libc.Kill(Environment.ProcessId, Libc.SigKill);
        }
        if (s_pause is not null && s_pause == name && Interlocked.Exchange(ref s_paused, 1) == 0) // the first time only
        {
            Console.Error.WriteLine($"pause point {name}: waiting for a line on standard input");
            Console.Error.Flush();
            Console.In.ReadLine();
        }
    }
}
