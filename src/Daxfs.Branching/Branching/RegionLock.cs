using System.Globalization;
using Daxfs.Branching.Format;
using Daxfs.Branching.Media;

namespace Daxfs.Branching.Branching;

/// <summary>
/// The region's mutation lock: one 64-bit word in the control block holding the owner's pid, plus the
/// owner's process start time.
/// </summary>
/// <remarks>
/// Why a dead holder cannot wedge the others: a waiter that finds the word held checks whether that pid
/// is alive and started at the recorded time (a reused pid has another start time). If not, the holder
/// died inside its critical section; the waiter takes the lock over with a compare-and-swap on the same
/// word, so two waiters cannot both take it. Everything a holder writes is either published by a single
/// word store (a log tail, a slot state) or derived again on open, so a half-done operation leaves
/// nothing a later holder could misread. Waiting backs off exponentially with jitter and ends in
/// <see cref="StoreBusyException"/> after the timeout.
/// </remarks>
internal sealed class RegionLock
{
    private static readonly long s_pid = Environment.ProcessId;
    private static readonly long s_start = ProcessStartTime(Environment.ProcessId);
    private readonly Region _region;
    private readonly long _owner;
    private readonly long _ownerStart;

    public RegionLock(Region region)
    {
        _region = region;
        _owner = FormatConstants.ControlOffset + ControlBlock.LockOwnerOffset;
        _ownerStart = FormatConstants.ControlOffset + ControlBlock.LockOwnerStartOffset;
    }

    public TimeSpan Timeout { get; set; } = TimeSpan.FromSeconds(30);

    /// <summary>Set when the last acquisition took the lock over from a dead process.</summary>
    public bool TookOverFromDead { get; private set; }

    public void Acquire()
    {
        TookOverFromDead = false;
        ref long owner = ref _region.Word(_owner);
        long deadline = Environment.TickCount64 + (long)Timeout.TotalMilliseconds;
        int delay = 1;
        while (true)
        {
            long holder = Interlocked.CompareExchange(ref owner, s_pid, 0);
            if (holder == 0)
                break;
            // Another store object of this very process may hold it: that holder is alive, so wait.
            long start = Volatile.Read(ref _region.Word(_ownerStart));
            if (holder != s_pid && !IsAlive(holder, start) && Interlocked.CompareExchange(ref owner, s_pid, holder) == holder)
            {
                TookOverFromDead = true;
                break;
            }
            if (Environment.TickCount64 > deadline)
                throw new StoreBusyException($"{_region.Path}: the region lock is held by process {holder}; gave up after {Timeout.TotalSeconds:0.#} s");
            Thread.Sleep(Random.Shared.Next(delay, delay * 2 + 1));
            delay = Math.Min(delay * 2, 50);
        }
        Volatile.Write(ref _region.Word(_ownerStart), s_start);
        Interlocked.Increment(ref _region.Word(FormatConstants.ControlOffset + ControlBlock.LockCountOffset));
    }

    public void Release()
    {
        Volatile.Write(ref _region.Word(_ownerStart), 0);
        Interlocked.CompareExchange(ref _region.Word(_owner), 0, s_pid);
    }

    internal static bool IsAlive(long pid, long start)
    {
        if (pid <= 0 || pid > int.MaxValue)
            return false;
        if (!Directory.Exists($"/proc/{pid}"))
            return false;
        if (start == 0)
            return true; // the holder had not yet recorded its start time
        long actual = ProcessStartTime((int)pid);
        return actual == 0 || actual == start;
    }

    /// <summary>Start time of a process in clock ticks since boot (field 22 of /proc/PID/stat), 0 if unknown.</summary>
    internal static long ProcessStartTime(int pid)
    {
        try
        {
            string stat = File.ReadAllText($"/proc/{pid}/stat");
            int close = stat.LastIndexOf(')');
            if (close < 0) return 0;
            var fields = stat[(close + 2)..].Split(' ');
            // fields[0] is field 3 (state); field 22 is fields[19].
            return fields.Length > 19 && long.TryParse(fields[19], NumberStyles.None, CultureInfo.InvariantCulture, out long t) ? t : 0;
        }
        catch (IOException)
        {
            return 0;
        }
        catch (UnauthorizedAccessException)
        {
            return 0;
        }
    }
}
