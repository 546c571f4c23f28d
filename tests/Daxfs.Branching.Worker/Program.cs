// A child process for the crash and stress tests.
//   worker op REGION OPERATION [NAME]   one operation (see Ops), typically with DAXFS_FAULT_POINT (kill) or
//                                       DAXFS_PAUSE_POINT (stop) armed
//   worker lease REGION BRANCH PATH     holds a read lease on a file's bytes: prints "leased", waits for a line
//                                       on stdin, prints "same" or "changed" for the bytes under the lease
//   worker hold REGION                  opens the region with a lease, prints "ready", waits for stdin to close,
//                                       then closes the region and prints "closed"
//   worker stress REGION ID SECONDS JOURNAL SEED
//                                       random forks, writes, commits and aborts (worker 0 also compacts about
//                                       once a second) for a bounded time; every
//                                       commit that returned is appended to JOURNAL before the next step
using System.Text;
using Daxfs.Branching;

if (args.Length < 2)
{
    Console.Error.WriteLine("usage: worker op REGION OPERATION | worker stress REGION ID SECONDS JOURNAL SEED");
    return 2;
}
return args[0] switch
{
    "op" => Ops.Run(args[1], args[2], args.Length > 3 ? args[3] : "forked"),
    "lease" => Leases.Hold(args[1], args[2], args[3]),
    "hold" => Leases.Open(args[1]),
    "stress" => Stress.Run(args[1], int.Parse(args[2], System.Globalization.CultureInfo.InvariantCulture),
        double.Parse(args[3], System.Globalization.CultureInfo.InvariantCulture), args[4], int.Parse(args[5], System.Globalization.CultureInfo.InvariantCulture)),
    _ => 2,
};

internal static class Ops
{
    public static int Run(string region, string op, string name)
    {
        using var s = Store.Open(region);
        switch (op)
        {
            case "fork": s.Main.Fork(name); break;
            case "spawn-then-fork":
                // A child started while the region is open must not keep its locks alive after this process dies.
                var psi = new System.Diagnostics.ProcessStartInfo("sleep", "60") { RedirectStandardOutput = true, RedirectStandardError = true };
                using (var child = System.Diagnostics.Process.Start(psi)!)
                    Console.WriteLine($"child {child.Id}");
                Console.Out.Flush();
                s.Main.Fork(name);
                break;
            case "write": s.GetBranch("a").Write("big.bin", 0, new byte[200_000]); break;
            case "write-small": s.GetBranch("a").Append("a.txt", "+"u8); break;
            case "replace": s.GetBranch("a").ReplaceFile("a.txt", new byte[3 << 20]); break;
            case "commit": s.GetBranch("a").Commit("crash test"); break;
            case "commit-parent": s.GetBranch("c").CommitToParent("crash test"); break;
            case "abort": s.GetBranch("c").Abort(); break;
            case "discard": s.GetBranch("other").Discard(); break;
            case "reclaim":
                s.GetBranch("other").Discard();
                s.Main.Fork("after"); // the next change reclaims the parked space
                break;
            case "compact":
                s.GetBranch("a").Commit("to fold");
                s.DiscardInvalidated("p"); // kept for rebase, p would keep version 0 readable
                s.Compact();
                break;
            case "clean":
                for (int i = 1; i <= 5; i++)
                {
                    var data = new byte[200_000];
                    Array.Fill(data, (byte)i);
                    s.GetBranch("a").Write("big.bin", 0, data);
                }
                s.Clean("a");
                break;
            case "resize":
                s.Resize(s.Usage.Capacity * 2);
                break;
            case "checkpoint":
                s.CheckpointEvery = 1; // this commit writes one
                s.GetBranch("a").Commit("checkpointed");
                break;
            case "discard-kept":
                s.GetBranch("a").Commit("keeps p, c and c2");
                s.DiscardInvalidated("p");
                break;
            default: Console.Error.WriteLine($"unknown op {op}"); return 2;
        }
        return 0;
    }
}

internal static class Leases
{
    public static int Hold(string region, string branch, string path)
    {
        using var s = Store.Open(region);
        using (s.BeginRead())
        {
            var range = s.GetBranch(branch).Read(path);
            byte[] before = range.ToArray();
            Console.WriteLine("leased");
            Console.In.ReadLine();
            Console.WriteLine(range.ToArray().AsSpan().SequenceEqual(before) ? "same" : "changed");
        }
        return 0;
    }

    public static int Open(string region)
    {
        // Hundreds of these start at once on a small machine: wait for the lock as long as that takes.
        using (var s = Store.Open(region, TimeSpan.FromMinutes(10)))
        using (s.BeginRead())
        {
            Console.WriteLine("ready");
            Console.In.ReadToEnd();
        }
        Console.WriteLine("closed");
        return 0;
    }
}

internal static class Stress
{
    public static int Run(string region, int id, double seconds, string journal, int seed)
    {
        var rng = new Random(seed);
        var deadline = DateTime.UtcNow.AddSeconds(seconds);
        using var store = Store.Open(region);
        store.LockTimeout = TimeSpan.FromSeconds(60);
        using var log = new StreamWriter(journal, append: true) { AutoFlush = true };
        int n = 0, commits = 0, invalidated = 0, aborts = 0, compactions = 0, rebased = 0;
        var nextCompaction = DateTime.UtcNow.AddSeconds(1);
        while (DateTime.UtcNow < deadline)
        {
            if (id == 0 && DateTime.UtcNow >= nextCompaction)
            {
                // Worker 0 also folds history about once a second while the others fork, write, read back and commit.
                if (store.Compact(new CompactOptions { Keep = rng.Next(0, 20) }).FoldedVersion > 0)
                    compactions++;
                nextCompaction = DateTime.UtcNow.AddSeconds(1);
            }
            string name = $"w{id}-{n++}";
            bool keep = rng.Next(3) == 0; // a third of the branches keep their changes if they lose the race
            Branch b;
            try
            {
                b = store.Main.Fork(name, new ForkOptions { KeepForRebase = keep });
            }
            catch (BranchTableFullException)
            {
                Thread.Sleep(1);
                continue;
            }
            var written = new List<(string Path, string Content)>();
            try
            {
                int files = rng.Next(1, 6);
                for (int f = 0; f < files; f++)
                {
                    string path = $"/w{id}/{name}-{f}.txt";
                    string content = $"worker {id} branch {name} file {f} {rng.Next()}";
                    b.CreateDirectory($"/w{id}", parents: true);
                    b.WriteAllBytes(path, Encoding.UTF8.GetBytes(content));
                    if (Encoding.UTF8.GetString(b.ReadAllBytes(path)) != content)
                        throw new InvalidOperationException($"read back of {path} differs");
                    written.Add((path, content));
                }
                if (rng.Next(3) > 0)
                {
                    var v = b.Commit($"worker {id} {name}");
                    commits++;
                    foreach (var (path, content) in written)
                        log.WriteLine($"{v.Sequence}\t{path}\t{content}");
                }
                else
                {
                    b.Abort();
                    aborts++;
                }
            }
            catch (BranchInvalidatedException)
            {
                invalidated++; // another worker committed first
                if (keep && written.Count > 0)
                    rebased += RebaseAndCommit(store, name, written, id, log, ref commits, ref invalidated);
                else if (keep)
                    store.DiscardInvalidated(name); // nothing to rebase; a kept loser holds its base version until discarded
            }
        }
        // A worker starved of the lock on a loaded machine can pin the oldest version for the whole run (its
        // kept loser holds its base version); worker 0 then keeps trying a little longer, so every run folds
        // history at least once (the test checks it did).
        var extra = DateTime.UtcNow.AddSeconds(30);
        while (id == 0 && compactions == 0 && DateTime.UtcNow < extra)
        {
            if (store.Compact(new CompactOptions()).FoldedVersion > 0)
                compactions++;
            else
                Thread.Sleep(200);
        }
        Console.WriteLine($"worker {id}: {n} branches, {commits} commits, {aborts} aborts, {invalidated} invalidated, {rebased} rebased, {compactions} compactions");
        return 0;
    }

    /// <summary>
    /// Rebases a kept loser onto main (each worker writes only under its own directory, so nothing collides),
    /// checks its files came along, commits the result, then discards the kept original.
    /// </summary>
    private static int RebaseAndCommit(Store store, string name, List<(string Path, string Content)> written, int id,
        StreamWriter log, ref int commits, ref int invalidated)
    {
        try
        {
            var r = store.Rebase(name, name + "-r");
            foreach (var (path, content) in written)
                if (Encoding.UTF8.GetString(r.ReadAllBytes(path)) != content)
                    throw new InvalidOperationException($"rebased {path} differs");
            var v = r.Commit($"worker {id} {name}, rebased");
            commits++;
            foreach (var (path, content) in written)
                log.WriteLine($"{v.Sequence}\t{path}\t{content}");
            return 1;
        }
        catch (BranchInvalidatedException)
        {
            invalidated++; // the rebased branch lost the next race
            return 1;
        }
        finally
        {
            store.DiscardInvalidated(name);
        }
    }
}
