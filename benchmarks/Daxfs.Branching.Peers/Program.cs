using System.Diagnostics;
using System.Runtime.InteropServices;
using Daxfs.Branching;
using Daxfs.Branching.Fuse;
using Daxfs.Branching.Peers;

// The peer comparison: every scenario on every system that can run here, in one run, with medians and spread.
//   dotnet run -c Release --project benchmarks/Daxfs.Branching.Peers -- [--quick] [--json PATH] [--markdown PATH] [--tree DIR] [--only NAME]
var opts = args.ToList();
string? Opt(string name)
{
    int i = opts.IndexOf(name);
    if (i < 0) return null;
    if (i + 1 < opts.Count && !opts[i + 1].StartsWith("--", StringComparison.Ordinal))
        return opts[i + 1];
    Console.Error.WriteLine($"Daxfs.Branching.Peers: option {name} needs a value, not {(i + 1 < opts.Count ? $"the option '{opts[i + 1]}'" : "the end of the line")} (--help for usage)");
    Environment.Exit(2);
    return null;
}
bool quick = opts.Contains("--quick");
string? jsonPath = Opt("--json");
string? markdownPath = Opt("--markdown");
string? tree = Opt("--tree");
string? only = Opt("--only");
if (opts.Contains("--help") || opts.Contains("-h"))
{
    Console.WriteLine("usage: Daxfs.Branching.Peers [--quick] [--json PATH] [--markdown PATH] [--tree DIR] [--only fork|scaling|read|metadata|edit|lifecycle|agents|space|remote (comma-separated)]");
    return 0;
}
bool root = Geteuid() == 0;
string work = Path.Combine("/dev/shm", $"daxfs-peers-{Environment.ProcessId}");
Directory.CreateDirectory(work);
var report = new Report();
var machine = new Dictionary<string, string>
{
    ["os"] = RuntimeInformation.OSDescription,
    ["kernel"] = File.ReadAllText("/proc/sys/kernel/osrelease").Trim(),
    ["cpu"] = File.ReadLines("/proc/cpuinfo").FirstOrDefault(l => l.StartsWith("model name", StringComparison.Ordinal))?.Split(':')[1].Trim() ?? "unknown",
    ["cores"] = Environment.ProcessorCount.ToString(System.Globalization.CultureInfo.InvariantCulture),
    ["memory"] = File.ReadLines("/proc/meminfo").First().Split(':')[1].Trim(),
    ["runtime"] = RuntimeInformation.FrameworkDescription,
    ["mode"] = quick ? "quick" : "full",
};
Console.WriteLine($"machine: {string.Join("; ", machine.Select(kv => $"{kv.Key} {kv.Value}"))}");

bool Want(string s) => only is null || only.Split(',').Contains(s);
try
{
    if (only == "remote")
    {
        // Remote needs no shared workspace: it builds its own (the issue's 5,000 files, 1 GiB).
        new RemoteScenarios(work, report, quick).Run();
        return Finish();
    }
    if (only == "space")
    {
        // Space needs no workspace: it builds its own regions, one at a time.
        new SpaceScenarios(work, report, quick).Run();
        return Finish();
    }
    string ws = Path.Combine(work, "ws");
    long wsBytes;
    if (tree is not null)
    {
        Sh.Run("cp", "-a", Path.GetFullPath(tree), ws);
        wsBytes = Workspace.Size(ws);
    }
    else
    {
        wsBytes = Workspace.Generate(ws, quick ? 1000 : 5000, quick ? 40L << 20 : 400L << 20, seed: 1);
    }
    int files = Directory.EnumerateFiles(ws, "*", SearchOption.AllDirectories).Count();
    Console.WriteLine($"workspace: {files} files, {wsBytes / (1 << 20)} MiB ({(tree is null ? "generated" : tree)})");
    machine["workspace"] = $"{files} files, {wsBytes / (1 << 20)} MiB";
    string region = Path.Combine(work, "ws.daxfs");
    double mkfsMs = Sh.TimeMs(() => Store.Create(region, BaseImageBuilder.FromDirectory(ws), new StoreOptions { Capacity = wsBytes + (4L << 30) }).Dispose());
    Console.WriteLine($"built the region in {mkfsMs:0} ms");
    var peers = new Peers(work, ws, region, report, root, quick);
    if (Want("fork")) peers.Fork();
    if (Want("scaling")) peers.Scaling();
    if (Want("read")) peers.Read();
    if (Want("metadata")) peers.Metadata();
    if (Want("edit")) peers.EditCommitAbort();
    if (Want("lifecycle")) peers.MountLifecycle();
    if (Want("agents")) peers.Agents();
    if (Want("space")) new SpaceScenarios(work, report, quick).Run();
    if (Want("remote")) new RemoteScenarios(work, report, quick).Run();
}
finally
{
    Cleanup(work);
}
return Finish();

int Finish()
{
    Console.WriteLine();
    string md = report.Markdown("ours");
    Console.WriteLine(md);
    if (markdownPath is not null) File.WriteAllText(markdownPath, md);
    if (jsonPath is not null) report.WriteJson(jsonPath, "ours", machine);
    return 0;
}

static void Cleanup(string work)
{
    foreach (var line in File.ReadAllLines("/proc/self/mountinfo").Reverse())
    {
        var mp = line.Split(' ')[4];
        if (mp.StartsWith(work, StringComparison.Ordinal))
            try { Sh.Run("umount", "-l", mp); } catch (InvalidOperationException) { }
    }
    try { Directory.Delete(work, recursive: true); } catch (IOException) { } catch (UnauthorizedAccessException) { }
}

[DllImport("libc", EntryPoint = "geteuid")]
static extern uint Geteuid();

namespace Daxfs.Branching.Peers
{
    internal static class Workspace
    {
        /// <summary>A deterministic tree: mostly small files, some medium, a few large, in nested directories.</summary>
        public static long Generate(string root, int files, long totalBytes, int seed)
        {
            var rng = new Random(seed);
            var sizes = new long[files];
            long small = 0;
            for (int i = 0; i < files; i++)
            {
                double r = rng.NextDouble();
                sizes[i] = r < 0.80 ? rng.Next(1024, 16 * 1024) : r < 0.98 ? rng.Next(16 * 1024, 512 * 1024) : 0;
                small += sizes[i];
            }
            var large = Enumerable.Range(0, files).Where(i => sizes[i] == 0).ToList();
            long remaining = Math.Max(0, totalBytes - small);
            foreach (int i in large) sizes[i] = Math.Max(1 << 20, remaining / Math.Max(1, large.Count));
            var buffer = new byte[1 << 20];
            long total = 0;
            for (int i = 0; i < files; i++)
            {
                string dir = Path.Combine(root, $"pkg{i % 20:00}", $"mod{i % 7}");
                Directory.CreateDirectory(dir);
                using var f = new FileStream(Path.Combine(dir, $"file{i:0000}.dat"), FileMode.Create);
                for (long left = sizes[i]; left > 0;)
                {
                    int n = (int)Math.Min(left, buffer.Length);
                    rng.NextBytes(buffer.AsSpan(0, n));
                    f.Write(buffer, 0, n);
                    left -= n;
                }
                total += sizes[i];
            }
            return total;
        }

        public static long Size(string root) => Directory.EnumerateFiles(root, "*", SearchOption.AllDirectories).Sum(f => new FileInfo(f).Length);

        /// <summary>The first <paramref name="n"/> files, as paths relative to the root (sorted, so every system edits the same ones).</summary>
        public static List<string> Pick(string root, int n) => Directory.EnumerateFiles(root, "*", SearchOption.AllDirectories)
            .Select(f => Path.GetRelativePath(root, f)).Order(StringComparer.Ordinal).Take(n).ToList();
    }
}
