using Amazon.Runtime;
using Amazon.S3;
using Amazon.S3.Model;
using Daxfs.Branching;
using Daxfs.Branching.Remote;

namespace Daxfs.Branching.Peers;

/// <summary>
/// Push, clone and pull through the S3 endpoint in DAXFS_S3_ENDPOINT (a local Ceph gateway in CI), beside the store's
/// own PUT and GET of one 64 MiB object in the same run, so the ratios show what the tool adds.
/// </summary>
internal sealed class RemoteScenarios(string work, Report report, bool quick)
{
    private const long MiB = 1L << 20;

    public void Run()
    {
        Console.WriteLine("remote (S3):");
        string? endpoint = Environment.GetEnvironmentVariable("DAXFS_S3_ENDPOINT");
        if (string.IsNullOrEmpty(endpoint))
        {
            report.Skip("remote: clone", "ours", "no S3 endpoint: set DAXFS_S3_ENDPOINT and AWS credentials (eval \"$(.ci/ceph-s3 start)\")");
            return;
        }
        string bucket = $"daxfs-bench-{Guid.NewGuid().ToString("N")[..10]}";
        using var s3 = new AmazonS3Client(new AmazonS3Config
        {
            ServiceURL = endpoint, ForcePathStyle = true, AuthenticationRegion = "us-east-1",
            RequestChecksumCalculation = RequestChecksumCalculation.WHEN_REQUIRED, ResponseChecksumValidation = ResponseChecksumValidation.WHEN_REQUIRED,
        });
        s3.PutBucketAsync(bucket).GetAwaiter().GetResult();
        int reps = quick ? 2 : 5;

        // The store itself: one 64 MiB object up and down.
        var blob = new byte[64 * MiB];
        new Random(1).NextBytes(blob);
        var put = new List<double>();
        var get = new List<double>();
        for (int i = 0; i < reps; i++)
        {
            put.Add(MBps(blob.Length, Sh.TimeMs(() => s3.PutObjectAsync(new PutObjectRequest { BucketName = bucket, Key = $"raw/{i}", InputStream = new MemoryStream(blob) }).GetAwaiter().GetResult())));
            get.Add(MBps(blob.Length, Sh.TimeMs(() =>
            {
                using var r = s3.GetObjectAsync(bucket, $"raw/{i}").GetAwaiter().GetResult();
                r.ResponseStream.CopyTo(Stream.Null);
            })));
        }
        report.Add(new Figure("remote: the store's PUT of a 64 MiB object", "object store", "MB/s", put));
        report.Add(new Figure("remote: the store's GET of a 64 MiB object", "object store", "MB/s", get));

        // The workspace of the issue's targets: 5,000 files, 1 GiB (quick: 500 files, 100 MiB).
        string ws = Path.Combine(work, "remote-ws");
        long bytes = Workspace.Generate(ws, quick ? 500 : 5000, quick ? 100 * MiB : 1024 * MiB, seed: 7);
        string label = $"{(quick ? 500 : 5000)} files, {bytes / MiB} MiB";
        string regionA = Path.Combine(work, "remote-a.daxfs");
        using var a = Store.Create(regionA, BaseImageBuilder.FromDirectory(ws), new StoreOptions { Capacity = bytes + 512 * MiB });
        Directory.Delete(ws, recursive: true);
        var target = new RemoteTarget(RemoteUrl.Parse($"s3://{bucket}/ws"), endpoint, "us-east-1");
        Remotes.Add(a, "origin", target);
        PushReport first = default;
        double firstMs = Sh.TimeMs(() => { using var c = new RemoteClient(a, "origin"); first = c.PushMainAsync().GetAwaiter().GetResult(); });
        report.Add(new Figure("remote: first push of the workspace", "ours", "MB/s", [MBps(bytes, firstMs)], $"{label}; {first.ObjectsUploaded} objects, {first.BytesUploaded / MiB} MiB"));

        var clone = new List<double>();
        for (int i = 0; i < reps; i++)
        {
            string path = Path.Combine(work, $"remote-clone-{i}.daxfs");
            clone.Add(MBps(bytes, Sh.TimeMs(() => RemoteClient.CloneAsync(target, path, "origin", null, bytes + 512 * MiB).GetAwaiter().GetResult())));
            if (i < reps - 1) File.Delete(path);
        }
        report.Add(new Figure("remote: clone", "ours", "MB/s", clone, $"{label}, every object checked against its SHA-256, into a new region"));

        // Incremental pushes: 1 MiB changed in one large file, at a 1 MiB boundary (two 512 KiB chunks) and a
        // quarter MiB past one (three chunks); new bytes each time, so nothing is found already stored.
        var large = Largest(a);
        foreach (bool aligned in new[] { true, false })
        {
            var ms = new List<double>();
            var up = new List<double>();
            var rng = new Random(aligned ? 3 : 4);
            for (int i = 0; i < reps; i++)
            {
                long chunks = large.Size / MiB;
                long offset = rng.NextInt64(0, chunks - 1) * MiB + (aligned ? 0 : MiB / 4);
                var w = a.Main.Fork($"edit-{aligned}-{i}");
                w.Write(large.Path, offset, RandomBytes((int)MiB, (aligned ? 1000 : 2000) + i), create: false);
                w.Commit("1 MiB changed");
                PushReport r = default;
                ms.Add(Sh.TimeMs(() => { using var c = new RemoteClient(a, "origin"); r = c.PushMainAsync().GetAwaiter().GetResult(); }));
                up.Add((double)r.BytesUploaded / MiB);
            }
            string how = aligned ? "at a 1 MiB boundary" : "a quarter MiB past one";
            report.Add(new Figure($"remote: push of a version that changed 1 MiB {how}", "ours", "ms", ms, "wall time, one process, connection warm"));
            report.Add(new Figure($"remote: bytes uploaded for 1 MiB changed {how}", "ours", "MiB", up, "chunks, directories on the path, the commit"));
        }
        string pathB = Path.Combine(work, $"remote-clone-{reps - 1}.daxfs");
        using var b = Store.Open(pathB);
        {
            using var cb = new RemoteClient(b, "origin");
            cb.PullAsync().GetAwaiter().GetResult(); // up to date with the pushes above
        }
        // Pull of 10 new versions, each changing 1 MiB (so 10 MiB changed in all).
        var files = LargeFiles(a).Take(10).ToList();
        for (int v = 0; v < 10; v++)
        {
            var w = a.Main.Fork($"ten-{v}");
            w.Write(files[v % files.Count].Path, 0, RandomBytes((int)MiB, 100 + v), create: false);
            w.Commit($"version {v}");
            using var c = new RemoteClient(a, "origin");
            c.PushMainAsync().GetAwaiter().GetResult();
        }
        PullReport pulled = default;
        double pullMs = Sh.TimeMs(() => { using var c = new RemoteClient(b, "origin"); pulled = c.PullAsync().GetAwaiter().GetResult(); });
        report.Add(new Figure("remote: pull of 10 new versions (1 MiB changed each)", "ours", "ms", [pullMs],
            $"{pulled.Versions} versions, {pulled.ObjectsDownloaded} objects, {pulled.BytesDownloaded / (double)MiB:0.0} MiB fetched for 10 MiB changed"));
        b.Dispose();
        a.Dispose();
        foreach (var f in Directory.GetFiles(work, "remote-*.daxfs")) File.Delete(f);
        File.Delete(regionA);
    }

    private static double MBps(long bytes, double ms) => bytes / 1e6 / (ms / 1000);

    private static byte[] RandomBytes(int n, int seed)
    {
        var b = new byte[n];
        new Random(seed).NextBytes(b);
        return b;
    }

    private static FileStat Largest(Store s) => LargeFiles(s).First();

    private static IEnumerable<FileStat> LargeFiles(Store s)
    {
        var all = new List<FileStat>();
        void Walk(string dir)
        {
            foreach (var e in s.Main.List(dir))
            {
                string p = dir == "/" ? "/" + e.Name : dir + "/" + e.Name;
                if (e.Kind == Daxfs.Branching.Index.NodeKind.Directory) Walk(p);
                else if (e.Kind == Daxfs.Branching.Index.NodeKind.File) all.Add(s.Main.Stat(p));
            }
        }
        Walk("/");
        return all.Where(f => f.Size >= 4 * MiB).OrderByDescending(f => f.Size);
    }
}
