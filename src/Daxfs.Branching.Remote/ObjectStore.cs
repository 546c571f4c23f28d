using System.Net;
using Amazon.Runtime;
using Amazon.S3;
using Amazon.S3.Model;

namespace Daxfs.Branching.Remote;

/// <summary>A ref as read: its bytes and the store's entity tag, which a compare-and-swap names.</summary>
internal readonly record struct StoredRef(byte[] Data, string ETag);

/// <summary>
/// The object store under a remote: keys relative to the remote's prefix. Every failure is a
/// <see cref="RemoteException"/> naming the key; a failed precondition is a result (false), not an error.
/// </summary>
internal interface IObjectStore : IDisposable
{
    /// <summary>What the URL names (for messages).</summary>
    string Where { get; }

    /// <summary>The object's bytes, or null when there is none; one larger than <paramref name="maxBytes"/> is refused before it is read.</summary>
    Task<byte[]?> GetAsync(string key, long maxBytes, CancellationToken ct);

    /// <summary><paramref name="length"/> bytes of the object from <paramref name="offset"/>, or null when there is no object.</summary>
    Task<byte[]?> GetRangeAsync(string key, long offset, int length, CancellationToken ct);

    /// <summary>True when the object exists.</summary>
    Task<bool> ExistsAsync(string key, CancellationToken ct);

    /// <summary>Stores the object (multipart above the threshold).</summary>
    Task PutAsync(string key, ReadOnlyMemory<byte> data, CancellationToken ct);

    /// <summary>A ref's bytes and entity tag, or null when there is none.</summary>
    Task<StoredRef?> GetRefAsync(string key, CancellationToken ct);

    /// <summary>Stores the object only if there is none (If-None-Match: *); false when there was one.</summary>
    Task<bool> PutIfAbsentAsync(string key, byte[] data, CancellationToken ct);

    /// <summary>Stores the object only if its entity tag is still <paramref name="etag"/> (If-Match); false when it is not.</summary>
    Task<bool> PutIfMatchAsync(string key, byte[] data, string etag, bool quoted, CancellationToken ct);

    /// <summary>Stores the object whatever is there (a ref under a lock object).</summary>
    Task PutRefAsync(string key, byte[] data, CancellationToken ct);

    /// <summary>Removes the object (nothing when there is none).</summary>
    Task DeleteAsync(string key, CancellationToken ct);

    /// <summary>The keys under <paramref name="prefix"/> (relative to the remote's prefix).</summary>
    Task<IReadOnlyList<string>> ListAsync(string prefix, CancellationToken ct);
}

/// <summary>Where and how to reach a remote's object store.</summary>
/// <param name="Url">The bucket and prefix.</param>
/// <param name="Endpoint">The S3 endpoint (null: AWS, from the region).</param>
/// <param name="Region">The signing region (null: the AWS configuration's, or us-east-1).</param>
public sealed record RemoteTarget(RemoteUrl Url, string? Endpoint, string? Region);

/// <summary>An S3-compatible object store through the maintained client (AWSSDK.S3); credentials from the standard AWS chain.</summary>
internal sealed class S3ObjectStore : IObjectStore
{
    private readonly AmazonS3Client _s3;
    private readonly RemoteUrl _url;

    /// <summary>Objects larger than this go up in parts, <see cref="PartBytes"/> each, <see cref="PartParallelism"/> at a time.</summary>
    internal long MultipartThreshold { get; init; } = 16L << 20;

    internal int PartBytes { get; init; } = 8 << 20;

    internal const int PartParallelism = 4;

    public string Where => _url.ToString();

    public S3ObjectStore(RemoteTarget target)
    {
        _url = target.Url;
        var config = new AmazonS3Config
        {
            // Ceph RGW and MinIO serve buckets by path; AWS accepts path style too.
            ForcePathStyle = true,
            // Checksums only where S3 requires them: the newer defaults (CRC trailers) are refused by some stores
            // (Ceph RGW 16), and every object here carries its own SHA-256 name, checked on every read.
            RequestChecksumCalculation = RequestChecksumCalculation.WHEN_REQUIRED,
            ResponseChecksumValidation = ResponseChecksumValidation.WHEN_REQUIRED,
            MaxErrorRetry = 3,
            Timeout = TimeSpan.FromSeconds(60),
        };
        string region = target.Region ?? Environment.GetEnvironmentVariable("AWS_REGION") ?? Environment.GetEnvironmentVariable("AWS_DEFAULT_REGION") ?? "us-east-1";
        if (target.Endpoint is { } endpoint)
        {
            config.ServiceURL = endpoint;
            config.AuthenticationRegion = region;
        }
        else
        {
            config.RegionEndpoint = Amazon.RegionEndpoint.GetBySystemName(region);
        }
        try
        {
            _s3 = new AmazonS3Client(config); // the standard chain: environment, profile, instance role
        }
        catch (AmazonClientException e)
        {
            throw new RemoteException(RemoteError.Access, $"{_url}: no AWS credentials found (set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, or AWS_PROFILE): {e.Message}", e);
        }
    }

    private string Full(string key) => _url.Key(key);

    public async Task<byte[]?> GetAsync(string key, long maxBytes, CancellationToken ct)
    {
        try
        {
            using var r = await _s3.GetObjectAsync(_url.Bucket, Full(key), ct).ConfigureAwait(false);
            if (r.ContentLength > maxBytes)
                throw new RemoteException(RemoteError.Damaged, $"{_url}: {key} is {r.ContentLength} bytes, more than the {maxBytes} such an object can be");
            return await ReadAll(r, key, ct).ConfigureAwait(false);
        }
        catch (AmazonS3Exception e) when (e.StatusCode == HttpStatusCode.NotFound && e.ErrorCode != "NoSuchBucket")
        {
            return null;
        }
        catch (Exception e) when (Map(e, key) is { } mapped)
        {
            throw mapped;
        }
    }

    public async Task<byte[]?> GetRangeAsync(string key, long offset, int length, CancellationToken ct)
    {
        if (length == 0) return [];
        try
        {
            using var r = await _s3.GetObjectAsync(new GetObjectRequest { BucketName = _url.Bucket, Key = Full(key), ByteRange = new Amazon.S3.Model.ByteRange(offset, offset + length - 1) }, ct).ConfigureAwait(false);
            if (r.ContentLength != length)
                throw new RemoteException(RemoteError.Damaged, $"{_url}: {key} gave {r.ContentLength} bytes at {offset} where {length} were asked for (the object is shorter than its directory says)");
            return await ReadAll(r, key, ct).ConfigureAwait(false);
        }
        catch (AmazonS3Exception e) when (e.StatusCode == HttpStatusCode.NotFound && e.ErrorCode != "NoSuchBucket")
        {
            return null;
        }
        catch (AmazonS3Exception e) when (e.StatusCode == HttpStatusCode.RequestedRangeNotSatisfiable)
        {
            throw new RemoteException(RemoteError.Damaged, $"{_url}: {key} holds no bytes at {offset} (the object is shorter than its directory says)", e);
        }
        catch (Exception e) when (Map(e, key) is { } mapped)
        {
            throw mapped;
        }
    }

    private static async Task<byte[]> ReadAll(GetObjectResponse r, string key, CancellationToken ct)
    {
        long length = r.ContentLength;
        if (length is < 0 or > int.MaxValue)
            throw new RemoteException(RemoteError.Damaged, $"{key}: the store reports {length} bytes");
        var data = new byte[length];
        int got = 0;
        while (got < data.Length)
        {
            int n = await r.ResponseStream.ReadAsync(data.AsMemory(got), ct).ConfigureAwait(false);
            if (n == 0) throw new RemoteException(RemoteError.Unreachable, $"{key}: the object ended after {got} of {length} bytes");
            got += n;
        }
        return data;
    }

    public async Task<bool> ExistsAsync(string key, CancellationToken ct)
    {
        try
        {
            await _s3.GetObjectMetadataAsync(_url.Bucket, Full(key), ct).ConfigureAwait(false);
            return true;
        }
        catch (AmazonS3Exception e) when (e.StatusCode == HttpStatusCode.NotFound && e.ErrorCode != "NoSuchBucket")
        {
            // A HEAD's 404 carries no body: a missing bucket looks the same. The first write says which it was.
            return false;
        }
        catch (Exception e) when (Map(e, key) is { } mapped)
        {
            throw mapped;
        }
    }

    public async Task PutAsync(string key, ReadOnlyMemory<byte> data, CancellationToken ct)
    {
        try
        {
            if (data.Length > MultipartThreshold)
            {
                await PutMultipart(key, data, ct).ConfigureAwait(false);
                return;
            }
            using var body = new ReadOnlyMemoryStream(data);
            await _s3.PutObjectAsync(new PutObjectRequest { BucketName = _url.Bucket, Key = Full(key), InputStream = body, AutoCloseStream = false }, ct).ConfigureAwait(false);
        }
        catch (Exception e) when (Map(e, key) is { } mapped)
        {
            throw mapped;
        }
    }

    private async Task PutMultipart(string key, ReadOnlyMemory<byte> data, CancellationToken ct)
    {
        var start = await _s3.InitiateMultipartUploadAsync(new InitiateMultipartUploadRequest { BucketName = _url.Bucket, Key = Full(key) }, ct).ConfigureAwait(false);
        try
        {
            int parts = (int)((data.Length + (long)PartBytes - 1) / PartBytes);
            var etags = new PartETag[parts];
            await Parallel.ForAsync(0, parts, new ParallelOptions { MaxDegreeOfParallelism = PartParallelism, CancellationToken = ct }, async (i, token) =>
            {
                var slice = data.Slice(i * PartBytes, Math.Min(PartBytes, data.Length - i * PartBytes));
                using var body = new ReadOnlyMemoryStream(slice);
                var r = await _s3.UploadPartAsync(new UploadPartRequest
                {
                    BucketName = _url.Bucket, Key = Full(key), UploadId = start.UploadId, PartNumber = i + 1, InputStream = body, PartSize = slice.Length,
                }, token).ConfigureAwait(false);
                etags[i] = new PartETag(i + 1, r.ETag);
            }).ConfigureAwait(false);
            await _s3.CompleteMultipartUploadAsync(new CompleteMultipartUploadRequest
            {
                BucketName = _url.Bucket, Key = Full(key), UploadId = start.UploadId, PartETags = [.. etags],
            }, ct).ConfigureAwait(false);
        }
        catch
        {
            try { await _s3.AbortMultipartUploadAsync(_url.Bucket, Full(key), start.UploadId, CancellationToken.None).ConfigureAwait(false); }
            catch (Exception e) when (e is AmazonServiceException or HttpRequestException or IOException) { } // the store drops it later
            throw;
        }
    }

    public async Task<StoredRef?> GetRefAsync(string key, CancellationToken ct)
    {
        try
        {
            using var r = await _s3.GetObjectAsync(_url.Bucket, Full(key), ct).ConfigureAwait(false);
            if (r.ContentLength > 1 << 20)
                throw new RemoteException(RemoteError.Damaged, $"{_url}: ref {key} is {r.ContentLength} bytes; a ref is a few hundred");
            var data = await ReadAll(r, key, ct).ConfigureAwait(false);
            return new StoredRef(data, r.ETag.Trim('"'));
        }
        catch (AmazonS3Exception e) when (e.StatusCode == HttpStatusCode.NotFound && e.ErrorCode != "NoSuchBucket")
        {
            return null;
        }
        catch (Exception e) when (Map(e, key) is { } mapped)
        {
            throw mapped;
        }
    }

    public Task<bool> PutIfAbsentAsync(string key, byte[] data, CancellationToken ct) =>
        Conditional(key, data, r => r.IfNoneMatch = "*", ct);

    public Task<bool> PutIfMatchAsync(string key, byte[] data, string etag, bool quoted, CancellationToken ct) =>
        Conditional(key, data, r => r.IfMatch = quoted ? $"\"{etag}\"" : etag, ct);

    private async Task<bool> Conditional(string key, byte[] data, Action<PutObjectRequest> condition, CancellationToken ct)
    {
        try
        {
            using var body = new MemoryStream(data, writable: false);
            var request = new PutObjectRequest { BucketName = _url.Bucket, Key = Full(key), InputStream = body, AutoCloseStream = false };
            condition(request);
            await _s3.PutObjectAsync(request, ct).ConfigureAwait(false);
            return true;
        }
        catch (AmazonS3Exception e) when (e.StatusCode is HttpStatusCode.PreconditionFailed or HttpStatusCode.Conflict)
        {
            return false; // 409: a conditional write raced another; the caller reads again, as after a 412
        }
        catch (Exception e) when (Map(e, key) is { } mapped)
        {
            throw mapped;
        }
    }

    public async Task PutRefAsync(string key, byte[] data, CancellationToken ct) => await PutAsync(key, data, ct).ConfigureAwait(false);

    public async Task DeleteAsync(string key, CancellationToken ct)
    {
        try
        {
            await _s3.DeleteObjectAsync(_url.Bucket, Full(key), ct).ConfigureAwait(false);
        }
        catch (AmazonS3Exception e) when (e.StatusCode == HttpStatusCode.NotFound && e.ErrorCode != "NoSuchBucket")
        {
        }
        catch (Exception e) when (Map(e, key) is { } mapped)
        {
            throw mapped;
        }
    }

    public async Task<IReadOnlyList<string>> ListAsync(string prefix, CancellationToken ct)
    {
        var keys = new List<string>();
        string full = Full(prefix);
        string? token = null;
        try
        {
            do
            {
                var r = await _s3.ListObjectsV2Async(new ListObjectsV2Request { BucketName = _url.Bucket, Prefix = full, ContinuationToken = token }, ct).ConfigureAwait(false);
                foreach (var o in r.S3Objects ?? [])
                    keys.Add(_url.Prefix.Length == 0 ? o.Key : o.Key[(_url.Prefix.Length + 1)..]);
                token = r.IsTruncated == true ? r.NextContinuationToken : null;
            }
            while (token is not null);
        }
        catch (Exception e) when (Map(e, prefix) is { } mapped)
        {
            throw mapped;
        }
        return keys;
    }

    /// <summary>The error a user can act on, naming the store and the key.</summary>
    private RemoteException? Map(Exception e, string key) => e switch
    {
        RemoteException => null,
        OperationCanceledException => null,
        AmazonS3Exception s when s.ErrorCode == "NoSuchBucket" => new RemoteException(RemoteError.NoBucket, $"{_url}: bucket '{_url.Bucket}' does not exist (create it, or check the remote's URL and endpoint)", e),
        AmazonS3Exception s when s.StatusCode == HttpStatusCode.Forbidden || s.ErrorCode is "InvalidAccessKeyId" or "SignatureDoesNotMatch" or "AccessDenied" =>
            new RemoteException(RemoteError.Access, $"{_url}: the store refused the credentials for {key} ({s.ErrorCode ?? s.StatusCode.ToString()}: check AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, or AWS_PROFILE)", e),
        AmazonS3Exception s => new RemoteException(RemoteError.Unreachable, $"{_url}: {key}: {(int)s.StatusCode} {s.ErrorCode}: {s.Message}", e),
        AmazonClientException c when c.Message.Contains("credentials", StringComparison.OrdinalIgnoreCase) =>
            new RemoteException(RemoteError.Access, $"{_url}: no AWS credentials found (set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, or AWS_PROFILE): {c.Message}", e),
        AmazonClientException or HttpRequestException or IOException or TimeoutException =>
            new RemoteException(RemoteError.Unreachable, $"{_url}: {key}: the store could not be reached ({e.GetBaseException().Message}); run the command again: what is stored already is skipped", e),
        _ => null,
    };

    public void Dispose() => _s3.Dispose();

    /// <summary>A read-only stream over memory the caller keeps alive (no copy of the object's bytes).</summary>
    private sealed class ReadOnlyMemoryStream(ReadOnlyMemory<byte> data) : Stream
    {
        private int _position;
        public override bool CanRead => true;
        public override bool CanSeek => true;
        public override bool CanWrite => false;
        public override long Length => data.Length;
        public override long Position { get => _position; set => _position = (int)Math.Clamp(value, 0, data.Length); }
        public override int Read(byte[] buffer, int offset, int count) => Read(buffer.AsSpan(offset, count));
        public override int Read(Span<byte> buffer)
        {
            int n = Math.Min(buffer.Length, data.Length - _position);
            data.Span.Slice(_position, n).CopyTo(buffer);
            _position += n;
            return n;
        }
        public override ValueTask<int> ReadAsync(Memory<byte> buffer, CancellationToken cancellationToken = default) => new(Read(buffer.Span));
        public override Task<int> ReadAsync(byte[] buffer, int offset, int count, CancellationToken cancellationToken) => Task.FromResult(Read(buffer, offset, count));
        public override long Seek(long offset, SeekOrigin origin) => Position = origin switch { SeekOrigin.Begin => offset, SeekOrigin.Current => _position + offset, _ => data.Length + offset };
        public override void Flush() { }
        public override void SetLength(long value) => throw new NotSupportedException();
        public override void Write(byte[] buffer, int offset, int count) => throw new NotSupportedException();
    }
}
