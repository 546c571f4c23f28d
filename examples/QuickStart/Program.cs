// QuickStart: build a region under /dev/shm, fork three branches, write, commit one, show the others invalidated.
using System.Diagnostics;
using System.Text;
using Daxfs.Branching;

string path = args.Length > 0 ? args[0] : Store.DefaultPath($"quickstart-{Environment.ProcessId}");
bool keep = args.Contains("--keep");

var image = new BaseImageBuilder()
    .AddFile("README.md", "# workspace\n"u8)
    .AddFile("src/app.py", "print('hello')\n"u8)
    .AddFile("src/util.py", "def add(a, b):\n    return a + b\n"u8)
    .AddDirectory("tests");

using (var store = Store.Create(path, image, new StoreOptions { Capacity = 64L << 20, Overwrite = true }))
{
    Console.WriteLine($"region {store.Path}: {store.Usage.BaseInodes} inodes in the base image, {store.Usage.ArenaBytes >> 20} MiB arena");

    var sw = Stopwatch.StartNew();
    var agents = new[] { "agent-a", "agent-b", "agent-c" }.Select(n => store.Main.Fork(n)).ToArray();
    Console.WriteLine($"forked {agents.Length} branches in {sw.Elapsed.TotalMicroseconds:0} µs");

    for (int i = 0; i < agents.Length; i++)
    {
        agents[i].Write("src/app.py", 0, Encoding.UTF8.GetBytes($"print('hello from {agents[i].Name}')\n"));
        agents[i].WriteAllBytes($"tests/test_{i}.py", Encoding.UTF8.GetBytes($"assert {i} == {i}\n"));
    }
    foreach (var a in agents)
        Console.WriteLine($"  {a.Name,-8} sees src/app.py = {Encoding.UTF8.GetString(a.ReadAllBytes("src/app.py")).Trim()}");

    sw.Restart();
    var version = agents[1].Commit("agent-b wins");
    Console.WriteLine($"committed {agents[1].Name} as version {version.Sequence} in {sw.Elapsed.TotalMicroseconds:0} µs");
    Console.WriteLine($"main now sees src/app.py = {Encoding.UTF8.GetString(store.Main.ReadAllBytes("src/app.py")).Trim()}");
    foreach (var loser in new[] { agents[0], agents[2] })
    {
        try { loser.ReadAllBytes("src/app.py"); Console.WriteLine($"  {loser.Name}: still readable (unexpected)"); }
        catch (BranchInvalidatedException e) { Console.WriteLine($"  {loser.Name}: {e.Message}"); }
    }
}

using (var reopened = Store.Open(path))
{
    Console.WriteLine($"reopened: {reopened.Versions.Count} version(s); main lists {string.Join(", ", reopened.Main.List("/tests").Select(e => e.Name))} under /tests");
}
if (!keep)
    File.Delete(path);
return 0;
