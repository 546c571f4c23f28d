using Daxfs.Branching.Format;
using Daxfs.Branching.Media;
using Polly;
using Polly.Retry;
using Polly.Timeout;

namespace Daxfs.Branching.Coordination;

/// <summary>
/// The region's mutation lock: an open-file-description lock on the first byte of the control block's
/// <c>LockOwner</c> word, and that word, which holds the holder's process word while a change runs.
/// </summary>
/// <remarks>
/// <para>
/// Why the kernel, not a pid, decides who is alive: a process in another PID namespace (a container, a
/// sandbox made with <c>unshare</c>) records a pid that means nothing, or another process, in this
/// process's <c>/proc</c>. A file lock has no such problem. The kernel keeps it for the open file
/// description that took it, in whatever namespace the taker runs, and drops it when the last descriptor
/// of that description is closed, which always happens when the process exits or is killed. A stopped,
/// slow or swapped-out holder keeps its lock and is waited for; it is never overtaken.
/// </para>
/// <para>
/// The word stays as the marker of a change that died half-way: a holder stores its store word (see
/// <see cref="ProcessTable"/>) after it got the byte lock and clears it before it lets the byte lock go. So a
/// taker that gets the byte lock and still finds a word it can check in <c>LockOwner</c> knows the holder died
/// inside its change, and re-reads the whole region before it writes (<see cref="TookOverFromDead"/>).
/// </para>
/// <para>
/// Other kernels sharing the memory (multikernel, CXL) do not see this kernel's locks, nor it theirs. The
/// word is therefore also taken by compare-and-swap, so processes of two kernels still exclude each other
/// while both are alive; and on a region created as shared by several kernels, a word that carries another
/// kernel's boot tag is never taken over, since no process here can tell whether its holder lives. (On any
/// other region such a word is a holder of an earlier boot, and is taken over.) The waiter ends in <see cref="StoreBusyException"/>
/// naming that holder (docs/concurrency.md says what a multi-kernel deployment needs beyond this). A holder
/// always holds an entry of the process table with its word (it registers before it locks and leaves after
/// it unlocks), so a word of another kernel that no entry holds is stale or damaged, and is taken over.
/// </para>
/// <para>
/// Waiting uses a Polly pipeline: exponential backoff with jitter under an overall timeout that ends in
/// <see cref="StoreBusyException"/>. Within one process, the store's own gate keeps its threads from
/// competing for the byte lock (it belongs to the open file, not to a thread).
/// </para>
/// </remarks>
internal sealed class RegionLock
{
    private readonly Region _region;
    private readonly ProcessTable _processes;
    private readonly long _owner;
    private ResiliencePipeline<bool>? _pipeline; // built at the first wait: building one costs milliseconds a free lock never needs
    private TimeSpan _timeout = TimeSpan.FromSeconds(30);
    private long _foreign;

    public RegionLock(Region region, ProcessTable processes)
    {
        _region = region;
        _processes = processes;
        _owner = FormatConstants.ControlOffset + ControlBlock.LockOwnerOffset;
    }

    /// <summary>How long to wait; kept between 10 ms and 24 h (the range the retry pipeline accepts).</summary>
    public TimeSpan Timeout
    {
        get => _timeout;
        set
        {
            _timeout = value < TimeSpan.FromMilliseconds(10) ? TimeSpan.FromMilliseconds(10) : value > TimeSpan.FromHours(24) ? TimeSpan.FromHours(24) : value;
            _pipeline = null;
        }
    }

    /// <summary>Set when the last acquisition took the lock over from a process that died holding it.</summary>
    public bool TookOverFromDead { get; private set; }

    private static ResiliencePipeline<bool> Build(TimeSpan timeout) => new ResiliencePipelineBuilder<bool>()
        .AddTimeout(new TimeoutStrategyOptions { Timeout = timeout })
        .AddRetry(new RetryStrategyOptions<bool>
        {
            // Only "not yet" is retried: an exception (an I/O error of fcntl, a closed region) ends the wait at once.
            ShouldHandle = args => ValueTask.FromResult(args.Outcome.Exception is null && !args.Outcome.Result),
            MaxRetryAttempts = int.MaxValue,
            BackoffType = DelayBackoffType.Exponential,
            UseJitter = true,
            Delay = TimeSpan.FromMilliseconds(0.5),
            MaxDelay = TimeSpan.FromMilliseconds(50),
        })
        .Build();

    public void Acquire()
    {
        if (_processes.OwnWord == 0)
            throw new InvalidOperationException("a store takes the region lock only once it holds a process-table entry");
        TookOverFromDead = false;
        _foreign = 0;
        if (!TryAcquire())
        {
            try
            {
                (_pipeline ??= Build(_timeout)).Execute(_ => TryAcquire());
            }
            catch (TimeoutRejectedException)
            {
                long word = _foreign != 0 ? _foreign : Volatile.Read(ref _region.Word(_owner));
                string holder = word == 0 ? "another store" : _processes.Describe(word);
                throw new StoreBusyException($"{_region.Path}: the region lock is held by {holder}; gave up after {_timeout.TotalSeconds:0.#} s");
            }
            Interlocked.Increment(ref _region.Word(FormatConstants.ControlOffset + ControlBlock.LockCountOffset));
        }
        FaultPoints.Hit("lock.held");
    }

    private bool TryAcquire()
    {
        if (!_region.TryLock(_owner))
            return false; // a live holder of this kernel (or another store of this process)
        long self = _processes.OwnWord;
        ref long owner = ref _region.Word(_owner);
        long word = Volatile.Read(ref owner);
        if (word == 0)
        {
            if (Interlocked.CompareExchange(ref owner, self, 0) == 0)
                return true;
            word = Volatile.Read(ref owner); // a process of another kernel took the word in between
        }
        else if (_processes.Checkable(word) || !_processes.Holds(word))
        {
            // The byte lock is ours, yet the word is set: by a holder of this kernel (or of an earlier boot) that
            // died inside a change, or by another kernel's store that no entry holds, as every holder's entry
            // does while it holds the lock (a stale or damaged word). Either way nobody holds it: take it over.
            if (Interlocked.CompareExchange(ref owner, self, word) == word)
            {
                TookOverFromDead = true;
                return true;
            }
            word = Volatile.Read(ref owner);
        }
        if (word != 0 && !_processes.Checkable(word))
            _foreign = word;
        _region.Unlock(_owner);
        return false;
    }

    /// <summary>
    /// Takes the byte lock shared, for a read-only snapshot (its file is open for reading only, and it writes
    /// no word): it excludes holders of the lock, not other snapshots, and waits as <see cref="Acquire"/> does.
    /// </summary>
    public void AcquireShared()
    {
        try
        {
            if (!_region.TryLockShared(_owner))
                (_pipeline ??= Build(_timeout)).Execute(_ => _region.TryLockShared(_owner));
        }
        catch (TimeoutRejectedException)
        {
            throw new StoreBusyException($"{_region.Path}: a change is under way (the region lock is held); a read-only snapshot waited {_timeout.TotalSeconds:0.#} s");
        }
    }

    /// <summary>Lets a shared byte lock go.</summary>
    public void ReleaseShared() => _region.Unlock(_owner);

    /// <summary>Clears the word, then lets the byte lock go: a crash between the two leaves a word a later taker re-derives after.</summary>
    public void Release()
    {
        Interlocked.CompareExchange(ref _region.Word(_owner), 0, _processes.OwnWord);
        _region.Unlock(_owner);
    }
}
