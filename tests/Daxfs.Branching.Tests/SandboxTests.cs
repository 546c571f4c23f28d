using System.Diagnostics;
using System.Globalization;
using Daxfs.Branching.Coordination;
using Daxfs.Branching.Format;
using Xunit.Abstractions;

namespace Daxfs.Branching.Tests;

/// <summary>
/// Processes in other PID and user namespaces, sharing one region: the lock and the process table hold because
/// the kernel, not a pid read in /proc, says who is alive.
/// </summary>
public class SandboxTests(ITestOutputHelper output)
{
    private const int SigCont = 18;
    private const int SigStop = 19;
    private const int SigKill = 9;

    private static readonly Dictionary<string, string> s_pauseHoldingTheLock = new() { ["DAXFS_PAUSE_POINT"] = "lock.held" };

    [SandboxFact]
    public void A_stopped_holder_in_another_PID_namespace_is_waited_for_and_taken_over_only_once_it_is_dead()
    {
        using var r = new TempRegion();
        var live = r.Store;
        live.Main.Fork("other").WriteAllBytes("o.txt", "o"u8);

        // Stopped while it holds the lock: the others wait, and go on once it runs again.
        Task<Branch> waiter;
        using (var w = Sandbox.Start(Sandbox.PidNamespace, s_pauseHoldingTheLock, "op", r.RegionPath, "fork", "sandboxed"))
        {
            Sandbox.Eventually(() => w.Complained("pause point lock.held"), 60, "the sandboxed worker took the region lock");
            w.Signal(SigStop);
            Sandbox.Eventually(() => Sandbox.State(w.WorkerPid) == 'T', 10, "the sandboxed worker stopped");
            live.LockTimeout = TimeSpan.FromSeconds(1);
            var busy = Assert.Throws<StoreBusyException>(() => live.Main.Fork("while-stopped"));
            Assert.Contains("region lock is held", busy.Message);
            Assert.Equal('T', Sandbox.State(w.WorkerPid)); // still stopped: it was waited for, not overtaken
            live.LockTimeout = TimeSpan.FromMinutes(2);
            waiter = Task.Run(() => live.Main.Fork("after-continue"));
            w.Signal(SigCont);
            w.Process.StandardInput.WriteLine("go on");
            Assert.True(w.WaitForExit() == 0, w.Errors);
        }
        Assert.True(waiter.Wait(TimeSpan.FromMinutes(2)), "the waiting fork did not finish after the holder went on");
        Assert.True(live.BranchExists("sandboxed") && live.BranchExists("after-continue") && !live.BranchExists("while-stopped"));
        var report = live.Verify();
        Assert.Equal(report.ReachableBytes, report.ArenaUsedBytes);

        // Stopped, then killed: its kernel drops its lock, and the next change takes it over within the 1 s it waits.
        using (var w = Sandbox.Start(Sandbox.PidNamespace, s_pauseHoldingTheLock, "op", r.RegionPath, "fork", "killed"))
        {
            Sandbox.Eventually(() => w.Complained("pause point lock.held"), 60, "the sandboxed worker took the region lock");
            w.Signal(SigStop);
            Sandbox.Eventually(() => Sandbox.State(w.WorkerPid) == 'T', 10, "the sandboxed worker stopped");
            w.Signal(SigKill);
            w.WaitForExit();
        }
        live.LockTimeout = TimeSpan.FromSeconds(1);
        var sw = Stopwatch.StartNew();
        live.Main.Fork("after-kill");
        output.WriteLine($"took the lock over from a killed holder of another PID namespace in {sw.Elapsed.TotalMilliseconds:0.0} ms");
        Assert.False(live.BranchExists("killed"));
        Assert.Equal("o", System.Text.Encoding.UTF8.GetString(live.GetBranch("other").ReadAllBytes("o.txt")));
        report = live.Verify();
        Assert.Equal(report.ReachableBytes, report.ArenaUsedBytes);
    }

    [SandboxFact]
    [Trait("Category", "Stress")]
    public Task Half_the_stress_workers_in_PID_namespaces_and_one_in_a_user_namespace_lose_no_committed_write()
        => MultiProcessTests.Stress(output, Sandbox.PidNamespace, null, Sandbox.PidNamespace, Sandbox.UserNamespace);

    [SandboxFact]
    public void A_lease_held_in_another_PID_namespace_stops_reclamation()
    {
        using var r = new TempRegion();
        var payload = TempRegion.Pattern(300_000, 11);
        r.Store.Main.Fork("other").Write("data", 0, payload);
        using var w = Sandbox.Start(Sandbox.PidNamespace, null, "lease", r.RegionPath, "other", "data");
        Sandbox.Eventually(() => w.Said("leased"), 60, $"the sandboxed reader took its lease\n{w.Errors}");

        r.Store.GetBranch("other").Discard();
        long parked = r.Store.Usage.ParkedBytes;
        Assert.True(parked >= payload.Length, $"{parked} bytes parked");
        // Every change tries to reclaim; the lease in the other namespace must hold the space back through all of them.
        var filler = r.Store.Main.Fork("filler");
        for (int i = 0; i < 8; i++)
            filler.Write($"f{i}", 0, TempRegion.Pattern(100_000, 100 + i));
        Assert.Equal(parked, r.Store.Usage.ParkedBytes);

        w.Process.StandardInput.WriteLine("check");
        Assert.True(w.WaitForExit() == 0, w.Errors);
        Assert.True(w.Said("same"), $"the bytes under the sandboxed lease changed: {w.Output}");

        r.Store.Main.Fork("after-the-reader"); // the reader is gone: the next change gives the space back
        Assert.Equal(0, r.Store.Usage.ParkedBytes);
    }

    [Fact]
    [Trait("Category", "Slow")]
    public void A_thousand_and_twenty_four_processes_open_the_region_at_once_and_leave_the_table_empty()
    {
        const int n = ProcessEntry.DefaultSlots;
        using var r = new TempRegion();
        r.Store.Dispose();
        string dir = r.Directory_;
        string gate = Path.Combine(dir, "gate");
        Run("mkfifo", gate);
        // This process holds the only writer of the FIFO every worker reads: closing it lets them all go.
        var writer = new FileStream(gate, FileMode.Open, FileAccess.ReadWrite);
        var sw = Stopwatch.StartNew();
        try
        {
            // bash starts the workers (a fork each; Process.Start from a process with hundreds of children is slow),
            // 32 at a time: each batch has opened the region before the next starts, so two cores are not asked to
            // start a thousand runtimes at once. Every worker stays, with its lease, until the gate closes.
            string script = $$"""
                cd '{{dir}}'
                for b in $(seq 0 32 {{n - 1}}); do
                  for i in $(seq $b $((b + 31))); do
                    DOTNET_gcConcurrent=0 DOTNET_GCgen0size=0x200000 dotnet '{{Sandbox.Worker}}' hold '{{r.RegionPath}}' < gate > out.$i 2>&1 &
                    echo $! >> pids
                  done
                  for i in $(seq $b $((b + 31))); do
                    for t in $(seq 1 6000); do grep -q ready out.$i 2>/dev/null && break; kill -0 $(sed -n "$((i + 1))p" pids) 2>/dev/null || break; sleep 0.05; done
                  done
                done
                """;
            Run("bash", "-c", script);
            int[] pids = File.ReadAllLines(Path.Combine(dir, "pids")).Select(l => int.Parse(l, CultureInfo.InvariantCulture)).ToArray();
            Assert.Equal(n, pids.Length);
            string Out(int i) => File.Exists(Path.Combine(dir, $"out.{i}")) ? File.ReadAllText(Path.Combine(dir, $"out.{i}")) : "";
            var failed = Enumerable.Range(0, n).Where(i => !Out(i).Contains("ready", StringComparison.Ordinal)).Select(i => $"worker {i}: {Out(i)}").FirstOrDefault();
            Assert.True(failed is null, $"a worker failed: {failed}");
            output.WriteLine($"{n} processes had the region open at once, each with a lease, {sw.Elapsed.TotalSeconds:0} s after the first started");

            // The table is full: one more store is refused, and the message says why.
            var full = Assert.Throws<StoreBusyException>(() => Store.Open(r.RegionPath, TimeSpan.FromSeconds(30)));
            Assert.Contains($"all {n} entries of the process table", full.Message);

            // Half are killed and leave their entries behind for the kernel to vouch for; the other half close normally.
            for (int i = 1; i < n; i += 2)
                Media.Libc.Kill(pids[i], SigKill);
            writer.Dispose();
            Sandbox.Eventually(() => pids.All(p => Sandbox.State(p) is null or 'Z'), 600, "every worker exited");
            var unclean = Enumerable.Range(0, n).Where(i => i % 2 == 0 && !Out(i).Contains("closed", StringComparison.Ordinal)).Select(Out).FirstOrDefault();
            Assert.True(unclean is null, $"a worker did not close the region cleanly: {unclean}");
        }
        finally
        {
            writer.Dispose();
            if (File.Exists(Path.Combine(dir, "pids")))
                foreach (var line in File.ReadAllLines(Path.Combine(dir, "pids")))
                    Media.Libc.Kill(int.Parse(line, CultureInfo.InvariantCulture), SigKill);
        }
        Assert.Equal(n / 2, OwnersInTable(r.RegionPath)); // the killed ones' words are still there: nobody cleared them yet
        using (var s = Store.Open(r.RegionPath, TimeSpan.FromSeconds(30)))
        {
            Assert.Equal(1, s.Coordination.Processes.InUse()); // they were cleared on the way in: their kernel dropped their locks
            Assert.False(s.Recovery.LockTakenOver);
        }
        Assert.Equal(0, OwnersInTable(r.RegionPath));
    }

    /// <summary>Entries of the process table whose owner word is set, read from the file's bytes.</summary>
    private static int OwnersInTable(string path)
    {
        byte[] bytes = File.ReadAllBytes(path);
        long table = BitConverter.ToInt64(bytes, 104);
        int slots = (int)BitConverter.ToUInt32(bytes, 112);
        return Enumerable.Range(0, slots).Count(i => BitConverter.ToInt64(bytes, (int)(table + (long)i * ProcessEntry.Size)) != 0);
    }

    [Fact]
    public void A_holder_on_another_kernel_is_never_taken_over()
    {
        using var r = new TempRegion(sharedAcrossKernels: true);
        var live = r.Store;
        const string foreignBoot = "0b0e5a1d-0000-4000-8000-00000000c0de";
        // A process of "another kernel" dies holding the lock: this kernel cannot tell, and must not take it over.
        var w = MultiProcessTests.Worker(new Dictionary<string, string> { ["DAXFS_BOOT_ID"] = foreignBoot, ["DAXFS_FAULT_POINT"] = "fork.slot-filled" },
            "op", r.RegionPath, "fork");
        Assert.True(w.Code == 137, w.Err);
        live.LockTimeout = TimeSpan.FromSeconds(1);
        var e = Assert.Throws<StoreBusyException>(() => live.Main.Fork("here"));
        Assert.Contains("another kernel", e.Message);
        Assert.Contains(foreignBoot, e.Message);
        Assert.Throws<StoreBusyException>(() => Store.Open(r.RegionPath, TimeSpan.FromSeconds(1)).Dispose());
        // Its process-table entry is kept too: this kernel cannot check it.
        Assert.Equal(2, live.Coordination.Processes.InUse());
    }

    [Fact]
    public void On_a_region_no_other_kernel_shares_a_store_of_another_boot_is_gone()
    {
        // The same "foreign" worker dies holding the lock, but the region is not shared by kernels: a word with
        // another boot id can only be left from an earlier boot (a file or device that outlived a reboot).
        using var r = new TempRegion();
        var w = MultiProcessTests.Worker(new Dictionary<string, string> { ["DAXFS_BOOT_ID"] = "0b0e5a1d-0000-4000-8000-00000000c0de", ["DAXFS_FAULT_POINT"] = "fork.slot-filled" },
            "op", r.RegionPath, "fork");
        Assert.True(w.Code == 137, w.Err);
        r.Store.LockTimeout = TimeSpan.FromSeconds(5);
        r.Store.Main.Fork("after-reboot");
        using (var s = Store.Open(r.RegionPath, TimeSpan.FromSeconds(5)))
            Assert.Equal(2, s.Coordination.Processes.InUse()); // its entry was cleared: only the two stores here remain
    }

    [Fact]
    public void A_lock_word_of_another_kernel_that_no_entry_holds_is_stale_and_taken_over()
    {
        using var r = new TempRegion(sharedAcrossKernels: true);
        var live = r.Store;
        // A damaged or leftover word: another kernel's tag, but no store of any kernel has an entry with it.
        long stale = ProcessWord.Make(ProcessIdentity.BootTag ^ 0x5A5A5A5A, 4242);
        Volatile.Write(ref live.Region.Word(FormatConstants.ControlOffset + ControlBlock.LockOwnerOffset), stale);
        live.LockTimeout = TimeSpan.FromSeconds(1);
        live.Main.Fork("after-stale-word");
        Assert.True(live.BranchExists("after-stale-word"));
        Assert.Equal(0, Volatile.Read(ref live.Region.Word(FormatConstants.ControlOffset + ControlBlock.LockOwnerOffset)));
    }

    [SandboxFact]
    public void The_lock_holds_across_a_bind_mount_of_the_region_file()
    {
        using var r = new TempRegion();
        string bound = Path.Combine(r.Directory_, "bound.daxfs");
        File.WriteAllBytes(bound, []);
        Run("mount", "--bind", r.RegionPath, bound);
        try
        {
            using var viaBind = Store.Open(bound);
            r.Store.EnterChange(); // holds the region lock through the first path
            try
            {
                viaBind.LockTimeout = TimeSpan.FromMilliseconds(300);
                Assert.Throws<StoreBusyException>(() => viaBind.Main.Fork("b"));
            }
            finally
            {
                r.Store.ExitChange(changed: false);
            }
            viaBind.Main.Fork("b");
            Assert.True(r.Store.BranchExists("b"));
            Assert.Equal(2, r.Store.Coordination.Processes.InUse());
        }
        finally
        {
            Run("umount", bound);
        }
    }

    [Fact]
    public void A_child_started_while_the_region_is_open_does_not_keep_a_dead_holders_lock()
    {
        using var r = new TempRegion();
        var w = MultiProcessTests.Worker(new Dictionary<string, string> { ["DAXFS_FAULT_POINT"] = "fork.slot-filled" }, "op", r.RegionPath, "spawn-then-fork");
        Assert.True(w.Code == 137, w.Err);
        int child = int.Parse(w.Out.Split(' ', '\n')[1], CultureInfo.InvariantCulture);
        try
        {
            Assert.NotNull(Sandbox.State(child)); // the child (sleep 60) outlives the worker that died holding the lock
            r.Store.LockTimeout = TimeSpan.FromSeconds(2);
            r.Store.Main.Fork("after");
            Assert.NotNull(Sandbox.State(child));
        }
        finally
        {
            Media.Libc.Kill(child, SigKill);
        }
    }

    [SandboxFact]
    public void A_region_on_tmpfs_mounted_anywhere_is_memory_and_one_on_a_disk_is_a_file()
    {
        string mount = Directory.CreateTempSubdirectory("daxfs-tmpfs-").FullName;
        Run("mount", "-t", "tmpfs", "-o", "size=128m", "tmpfs", mount);
        try
        {
            using (var s = Store.Create(Path.Combine(mount, "r.daxfs"), TempRegion.SampleImage(), new StoreOptions { Capacity = 64L << 20 }))
                Assert.Equal(Media.RegionKind.Memory, s.Kind); // by what the memory is, not by a /dev/shm path
        }
        finally
        {
            Run("umount", mount);
            Directory.Delete(mount);
        }
        using var onDisk = new TempRegion(onDisk: true);
        Assert.Equal(Libc_FileSystemIsMemory(Path.GetTempPath()) ? Media.RegionKind.Memory : Media.RegionKind.File, onDisk.Store.Kind);
        using var shm = new TempRegion();
        Assert.Equal(Media.RegionKind.Memory, shm.Store.Kind);
    }

    /// <summary>
    /// A region larger than its tmpfs can hold (a container's 64 MiB /dev/shm) is refused when created, with a
    /// message that says so; one that fits is reserved up front, fills up to "region full", and never dies of SIGBUS.
    /// </summary>
    [SandboxFact]
    public void On_a_small_tmpfs_a_region_is_refused_up_front_or_fills_up_cleanly()
    {
        string mount = Directory.CreateTempSubdirectory("daxfs-small-shm-").FullName;
        Run("mount", "-t", "tmpfs", "-o", "size=64m", "tmpfs", mount);
        try
        {
            string tooBig = Path.Combine(mount, "big.daxfs");
            var e = Assert.Throws<IOException>(() => Store.Create(tooBig, TempRegion.SampleImage(), new StoreOptions { Capacity = 256L << 20 }).Dispose());
            Assert.Contains("is more than the", e.Message);
            Assert.Contains("MiB) free", e.Message);
            Assert.False(File.Exists(tooBig)); // nothing half-made is left behind

            // Replacing a region with one the file system cannot back fails and leaves the old region whole.
            string kept = Path.Combine(mount, "kept.daxfs");
            using (var k = Store.Create(kept, TempRegion.SampleImage(), new StoreOptions { Capacity = 8L << 20 }))
                k.Main.Fork("k").WriteAllBytes("k.txt", "still here"u8);
            Assert.Throws<IOException>(() => Store.Create(kept, TempRegion.SampleImage(), new StoreOptions { Capacity = 256L << 20, Overwrite = true }).Dispose());
            using (var k = Store.Open(kept))
                Assert.Equal("still here", System.Text.Encoding.UTF8.GetString(k.GetBranch("k").ReadAllBytes("k.txt")));
            Assert.Single(Directory.GetFiles(mount)); // no half-built file beside it
            File.Delete(kept);

            using var s = Store.Create(Path.Combine(mount, "fits.daxfs"), TempRegion.SampleImage(), new StoreOptions { Capacity = 48L << 20 });
            var b = s.Main.Fork("filler");
            var chunk = TempRegion.Pattern(1 << 20, 5);
            Assert.Throws<RegionFullException>(() =>
            {
                for (int i = 0; i < 1000; i++)
                    b.Write($"f{i}", 0, chunk);
            });
            Assert.Equal(chunk, b.ReadAllBytes("f0"));
        }
        finally
        {
            Run("umount", mount);
            Directory.Delete(mount);
        }
    }

    private static bool Libc_FileSystemIsMemory(string path) => Media.Libc.FileSystemType(path) is Media.Libc.TmpfsMagic or Media.Libc.RamfsMagic;

    [Fact]
    public async Task Dispose_waits_for_a_lease_of_another_thread_and_fails_rather_than_unmap_under_one()
    {
        using var r = new TempRegion();
        var payload = TempRegion.Pattern(100_000, 3);
        r.Store.Main.Fork("b").Write("f", 0, payload);
        var store = Store.Open(r.RegionPath);
        var b = store.GetBranch("b");

        // A lease that stays open: Dispose fails and leaves the mapping, so the spans stay readable.
        var lease = store.BeginRead();
        var range = b.Read("f");
        store.LeaseWaitOnDispose = TimeSpan.FromMilliseconds(200);
        var e = Assert.Throws<InvalidOperationException>(store.Dispose);
        Assert.Contains("read lease", e.Message);
        Assert.Equal(payload, range.ToArray());

        // A lease another thread ends while Dispose waits: Dispose waits for it, then closes.
        store.LeaseWaitOnDispose = TimeSpan.FromSeconds(60);
        using var started = new ManualResetEventSlim();
        var ender = Task.Run(() =>
        {
            started.Wait();
            Assert.Equal(payload, range.ToArray()); // still mapped while Dispose waits
            lease.Dispose();
        });
        var disposer = Task.Run(store.Dispose);
        Sandbox.Eventually(() => disposer.Status == TaskStatus.Running, 10, "Dispose began");
        started.Set();
        await disposer.WaitAsync(TimeSpan.FromSeconds(60));
        await ender.WaitAsync(TimeSpan.FromSeconds(60));
        Assert.Throws<ObjectDisposedException>(() => store.GetBranch("b"));
        Assert.Throws<ObjectDisposedException>(() => store.BeginRead());
    }

    [Fact]
    public void Two_stores_of_one_process_hold_entries_and_words_of_their_own()
    {
        using var r = new TempRegion();
        using var second = Store.Open(r.RegionPath);
        var (a, b) = (r.Store.Coordination.Processes, second.Coordination.Processes);
        Assert.NotEqual(a.Own, b.Own);
        Assert.NotEqual(a.OwnWord, b.OwnWord); // never confused: one clearing or taking over the other's is impossible
        Assert.Equal(ProcessWord.BootTag(a.OwnWord), ProcessWord.BootTag(b.OwnWord));
        // Each sees the other as live (the kernel holds the other's entry lock), so neither clears it.
        Assert.False(a.TryClear(b.Own, b.OwnWord));
        Assert.False(b.TryClear(a.Own, a.OwnWord));
        Assert.Equal(2, a.InUse());
    }

    private static void Run(string file, params string[] args) => Sandbox.Run(file, args);
}
