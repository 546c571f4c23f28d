using Amazon.S3;
using Amazon.S3.Model;
using Amazon.Runtime;

namespace Daxfs.Branching.Remote.Tests;

/// <summary>
/// The object store the tests run against: the S3 endpoint in DAXFS_S3_ENDPOINT (the test command starts a local
/// Ceph gateway and sets it; any S3-compatible store with a writable account works), one bucket per test run.
/// </summary>
public sealed class S3Fixture : IDisposable
{
    public string Endpoint { get; }
    public string Bucket { get; } = $"daxfs-tests-{Guid.NewGuid().ToString("N")[..12]}";
    public AmazonS3Client Client { get; }

    /// <summary>The script that starts and stops the local gateway (kill-gateway, start-gateway), when the run uses it.</summary>
    public static string CephScript => Path.GetFullPath(Path.Combine(AppContext.BaseDirectory, "..", "..", "..", "..", "..", ".ci", "ceph-s3"));

    /// <summary>The local Ceph cluster's directory (DAXFS_CEPH_DIR, set by the test command), or null when the endpoint is another store.</summary>
    public static string? CephDir => Environment.GetEnvironmentVariable("DAXFS_CEPH_DIR") is { Length: > 0 } d ? d : null;

    public S3Fixture()
    {
        Endpoint = Environment.GetEnvironmentVariable("DAXFS_S3_ENDPOINT") is { Length: > 0 } e ? e
            : throw new InvalidOperationException("DAXFS_S3_ENDPOINT is not set: run ./test.sh (it starts a local Ceph S3 gateway), or eval \"$(.ci/ceph-s3 start)\" first");
        Client = new AmazonS3Client(new AmazonS3Config
        {
            ServiceURL = Endpoint, ForcePathStyle = true, AuthenticationRegion = "us-east-1",
            RequestChecksumCalculation = RequestChecksumCalculation.WHEN_REQUIRED, ResponseChecksumValidation = ResponseChecksumValidation.WHEN_REQUIRED,
        });
        Client.PutBucketAsync(Bucket).GetAwaiter().GetResult();
    }

    /// <summary>A fresh remote URL (its own prefix in the run's bucket).</summary>
    public RemoteTarget Fresh() => new(RemoteUrl.Parse($"s3://{Bucket}/t-{Guid.NewGuid().ToString("N")[..10]}"), Endpoint, "us-east-1");

    public void Dispose()
    {
        try
        {
            string? token = null;
            do
            {
                var list = Client.ListObjectsV2Async(new ListObjectsV2Request { BucketName = Bucket, ContinuationToken = token }).GetAwaiter().GetResult();
                foreach (var o in list.S3Objects ?? []) Client.DeleteObjectAsync(Bucket, o.Key).GetAwaiter().GetResult();
                token = list.IsTruncated == true ? list.NextContinuationToken : null;
            }
            while (token is not null);
            Client.DeleteBucketAsync(Bucket).GetAwaiter().GetResult();
        }
        catch (AmazonServiceException) { } // the run's store goes away with the run
        Client.Dispose();
    }
}

[CollectionDefinition("s3")]
public sealed class S3Collection : ICollectionFixture<S3Fixture>;

/// <summary>A region in /dev/shm made from a small tree, removed after the test.</summary>
public sealed class Region : IDisposable
{
    public string Path { get; }
    public Store Store { get; private set; }

    public Region(Action<BaseImageBuilder>? tree = null, long capacity = 256L << 20)
    {
        Path = System.IO.Path.Combine("/dev/shm", $"daxfs-remote-test-{Guid.NewGuid():N}.daxfs");
        var b = new BaseImageBuilder();
        if (tree is null)
        {
            b.AddFile("/README.md", "hello\n"u8);
            b.AddFile("/src/a.c", "int a;\n"u8);
            b.AddFile("/src/b.c", "int b;\n"u8);
            b.AddSymlink("/link", "src/a.c");
            b.AddFile("/big.bin", Bytes(3 * 1024 * 1024 + 17, 7));
        }
        else
        {
            tree(b);
        }
        Store = Store.Create(Path, b, new StoreOptions { Capacity = capacity });
    }

    /// <summary>A region at <paramref name="path"/> made by someone else (a clone), opened.</summary>
    public Region(string path)
    {
        Path = path;
        Store = Store.Open(path);
    }

    public static byte[] Bytes(int n, int seed)
    {
        var b = new byte[n];
        new Random(seed).NextBytes(b);
        return b;
    }

    /// <summary>Commits a change made in a fresh branch.</summary>
    public long Commit(Action<Branch> change, string message = "change")
    {
        var w = Store.Main.Fork($"w{Guid.NewGuid().ToString("N")[..8]}");
        change(w);
        return w.Commit(message).Sequence;
    }

    public void Reopen()
    {
        Store.Dispose();
        Store = Store.Open(Path);
    }

    public void Dispose()
    {
        Store.Dispose();
        File.Delete(Path);
    }
}

public static class Trees
{
    /// <summary>Every path of the tree with what it holds (kind, mode, content or target), for comparing two trees byte for byte.</summary>
    public static SortedDictionary<string, string> Snapshot(Branch b)
    {
        var all = new SortedDictionary<string, string>(StringComparer.Ordinal);
        void Walk(string dir)
        {
            foreach (var e in b.List(dir))
            {
                string p = dir == "/" ? "/" + e.Name : dir + "/" + e.Name;
                var st = b.Stat(p);
                string what = e.Kind switch
                {
                    Index.NodeKind.File => Convert.ToHexString(System.Security.Cryptography.SHA256.HashData(b.ReadAllBytes(p))),
                    Index.NodeKind.Symlink => "-> " + b.ReadLink(p),
                    _ => "",
                };
                all[p] = $"{e.Kind} {Convert.ToString(st.Mode, 8)} {st.Size} {what}";
                if (e.Kind == Index.NodeKind.Directory) Walk(p);
            }
        }
        Walk("/");
        return all;
    }
}
