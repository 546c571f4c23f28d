using System.Globalization;
using Daxfs.Branching.Format;
using Daxfs.Branching.Media;
using Polly;
using Polly.Retry;
using Polly.Timeout;

namespace Daxfs.Branching.Branching;

/// <summary>
/// The region's mutation lock: one 64-bit word in the control block holding the owner's process word
/// (pid and start time together, see <see cref="ProcessWord"/>).
/// </summary>
/// <remarks>
/// Why a dead holder cannot wedge the others: a waiter that finds the word held checks whether that
/// process is alive and started at the recorded time (a reused pid has another start time). If not, the
/// holder died inside its critical section; the waiter takes the lock over with a compare-and-swap from
/// exactly the word it judged dead, so two waiters cannot both take it, and a holder that released and
/// took the lock again in between has another word only if it is another process. Everything a holder
/// writes is either published by a single word store (a log tail, a slot state) or derived again by the
/// next holder (which re-reads the region after a takeover), so a half-done operation leaves nothing a
/// later holder could misread. Waiting uses a Polly pipeline: exponential backoff with jitter under an
/// overall timeout that ends in <see cref="StoreBusyException"/>.
/// </remarks>
internal sealed class RegionLock
{
    internal static readonly long s_pid = Environment.ProcessId;
    internal static readonly long s_start = ProcessStartTime(Environment.ProcessId);
    internal static readonly long s_self = ProcessWord.Make(s_pid, s_start);
    private readonly Region _region;
    private readonly long _owner;
    private ResiliencePipeline<bool> _pipeline;
    private TimeSpan _timeout = TimeSpan.FromSeconds(30);

    public RegionLock(Region region)
    {
        _region = region;
        _owner = FormatConstants.ControlOffset + ControlBlock.LockOwnerOffset;
        _pipeline = Build(_timeout);
    }

    /// <summary>How long to wait; kept between 10 ms and 24 h (the range the retry pipeline accepts).</summary>
    public TimeSpan Timeout
    {
        get => _timeout;
        set
        {
            _timeout = value < TimeSpan.FromMilliseconds(10) ? TimeSpan.FromMilliseconds(10) : value > TimeSpan.FromHours(24) ? TimeSpan.FromHours(24) : value;
            _pipeline = Build(_timeout);
        }
    }

    /// <summary>Set when the last acquisition took the lock over from a dead process.</summary>
    public bool TookOverFromDead { get; private set; }

    private static ResiliencePipeline<bool> Build(TimeSpan timeout) => new ResiliencePipelineBuilder<bool>()
        .AddTimeout(new TimeoutStrategyOptions { Timeout = timeout })
        .AddRetry(new RetryStrategyOptions<bool>
        {
            ShouldHandle = args => ValueTask.FromResult(args.Outcome.Result == false),
            MaxRetryAttempts = int.MaxValue,
            BackoffType = DelayBackoffType.Exponential,
            UseJitter = true,
            Delay = TimeSpan.FromMilliseconds(0.5),
            MaxDelay = TimeSpan.FromMilliseconds(50),
        })
        .Build();

    public void Acquire()
    {
        TookOverFromDead = false;
        if (TryAcquire())
        {
            Interlocked.Increment(ref _region.Word(FormatConstants.ControlOffset + ControlBlock.LockCountOffset));
            return;
        }
        long holder = 0;
        try
        {
            _pipeline.Execute(_ =>
            {
                holder = Volatile.Read(ref _region.Word(_owner));
                return TryAcquire();
            });
        }
        catch (TimeoutRejectedException)
        {
            throw new StoreBusyException($"{_region.Path}: the region lock is held by process {ProcessWord.Pid(holder)}; gave up after {_timeout.TotalSeconds:0.#} s");
        }
        Interlocked.Increment(ref _region.Word(FormatConstants.ControlOffset + ControlBlock.LockCountOffset));
    }

    private bool TryAcquire()
    {
        ref long owner = ref _region.Word(_owner);
        long holder = Interlocked.CompareExchange(ref owner, s_self, 0);
        if (holder == 0)
            return true;
        // Another store object of this very process may hold it: that holder is alive, so wait.
        if (holder != s_self && !IsAlive(holder) && Interlocked.CompareExchange(ref owner, s_self, holder) == holder)
        {
            TookOverFromDead = true;
            return true;
        }
        return false;
    }

    public void Release() => Interlocked.CompareExchange(ref _region.Word(_owner), 0, s_self);

    /// <summary>True when the process a <see cref="ProcessWord"/> names is running (and is the same process).</summary>
    internal static bool IsAlive(long word)
    {
        int pid = ProcessWord.Pid(word);
        if (pid <= 0)
            return false;
        if (pid == s_pid)
            return ProcessWord.Start(word) == (s_start & ((1L << 42) - 1));
        long actual = ProcessStartTime(pid);
        return actual != 0 && (actual & ((1L << 42) - 1)) == ProcessWord.Start(word);
    }

    /// <summary>Start time of a process in clock ticks since boot (field 22 of /proc/PID/stat), 0 if it does not exist.</summary>
    internal static long ProcessStartTime(int pid)
    {
        try
        {
            string stat = File.ReadAllText($"/proc/{pid}/stat");
            int close = stat.LastIndexOf(')');
            if (close < 0) return 0;
            var fields = stat[(close + 2)..].Split(' ');
            // fields[0] is field 3 (state); field 22 is fields[19]. A zombie has exited: treat it as dead.
            if (fields.Length > 0 && fields[0] is "Z" or "X") return 0;
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
