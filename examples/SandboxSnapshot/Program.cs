// SandboxSnapshot: a host forks a branch and starts a child process that works in it; the host commits the
// branch when the child exits with 0 and aborts it otherwise; a second child then sees the outcome on main.
//   SandboxSnapshot                    run the host (two rounds: one child succeeds, one fails)
//   SandboxSnapshot work REGION BRANCH FAIL
//   SandboxSnapshot observe REGION
using System.Diagnostics;
using System.Text;
using Daxfs.Branching;

if (args.Length > 0 && args[0] == "work")
    return Work(args[1], args[2], args[3] == "fail");
if (args.Length > 0 && args[0] == "observe")
    return Observe(args[1]);

string region = Store.DefaultPath($"sandbox-{Environment.ProcessId}");
try
{
    using (var store = Store.Create(region, new BaseImageBuilder().AddFile("state/counter.txt", "0\n"u8), new StoreOptions { Capacity = 32L << 20 }))
        Console.WriteLine($"host: region {region}, main's counter = {Encoding.UTF8.GetString(store.Main.ReadAllBytes("state/counter.txt")).Trim()}");

    foreach (var (branch, fail) in new[] { ("job-1", false), ("job-2", true) })
    {
        using var store = Store.Open(region);
        store.Main.Fork(branch);
        int code = Child("work", region, branch, fail ? "fail" : "ok");
        // The child is gone; the host decides. Its open store sees the child's writes on its next call.
        var b = store.GetBranch(branch);
        if (code == 0)
        {
            var v = b.Commit($"{branch} succeeded");
            Console.WriteLine($"host: {branch} exited 0 -> committed as version {v.Sequence}");
        }
        else
        {
            b.Abort();
            Console.WriteLine($"host: {branch} exited {code} -> aborted; nothing it wrote reaches main");
        }
        Child("observe", region);
    }
    return 0;
}
finally
{
    File.Delete(region);
}

static int Child(params string[] childArgs)
{
    var psi = new ProcessStartInfo("dotnet") { UseShellExecute = false };
    psi.ArgumentList.Add(typeof(Program).Assembly.Location);
    foreach (var a in childArgs) psi.ArgumentList.Add(a);
    using var p = Process.Start(psi)!;
    p.WaitForExit();
    return p.ExitCode;
}

static int Work(string region, string branch, bool fail)
{
    using var store = Store.Open(region);
    var b = store.GetBranch(branch);
    int counter = int.Parse(Encoding.UTF8.GetString(b.ReadAllBytes("state/counter.txt")).Trim(), System.Globalization.CultureInfo.InvariantCulture);
    b.WriteAllBytes("state/counter.txt", Encoding.UTF8.GetBytes($"{counter + 1}\n"));
    b.WriteAllBytes($"state/{branch}.log", Encoding.UTF8.GetBytes($"{branch} ran in process {Environment.ProcessId}\n"));
    Console.WriteLine($"  child {Environment.ProcessId}: in {branch}, counter {counter} -> {counter + 1}{(fail ? ", then fails" : "")}");
    return fail ? 1 : 0;
}

static int Observe(string region)
{
    using var store = Store.Open(region);
    var files = store.Main.List("state").Select(e => e.Name);
    Console.WriteLine($"  observer {Environment.ProcessId}: main has counter = {Encoding.UTF8.GetString(store.Main.ReadAllBytes("state/counter.txt")).Trim()}, files [{string.Join(", ", files)}], {store.Versions.Count} version(s)");
    return 0;
}

internal static partial class Program;
