using System.Text;
using System.Text.Json;

namespace Daxfs.Branching.Remote;

/// <summary>
/// Compare-and-swap of refs. How depends on what the store honours, found once by <see cref="ProbeAsync"/> and kept
/// in the region: "if-match" (a conditional PUT naming the entity tag, as AWS S3 does), "if-match-unquoted" (the same
/// with the tag unquoted, which Ceph RGW 16 needs), or "lock" where only If-None-Match is honoured: a lock object
/// created with If-None-Match (so exactly one holder), holding a lease, checked again before the ref is written.
/// A store that honours neither is refused: no ref is ever written without one of the two.
/// </summary>
internal sealed class RefUpdater(IObjectStore store, string mode)
{
    public const string IfMatch = "if-match", IfMatchUnquoted = "if-match-unquoted", Lock = "lock";

    /// <summary>How long a lock holds when its holder dies; a push holds it for one ref write.</summary>
    internal static TimeSpan Lease { get; set; } = TimeSpan.FromSeconds(30);

    public string Mode => mode;

    /// <summary>Finds out which conditional writes the store honours, on a probe object under probe/ (removed after).</summary>
    public static async Task<string> ProbeAsync(IObjectStore store, CancellationToken ct)
    {
        string key = $"probe/{Guid.NewGuid():N}";
        try
        {
            byte[] one = "1"u8.ToArray(), two = "2"u8.ToArray();
            if (!await store.PutIfAbsentAsync(key, one, ct).ConfigureAwait(false))
                throw new RemoteException(RemoteError.Unsupported, $"{store.Where}: a conditional write of a new probe object was refused");
            bool absentHonoured = !await store.PutIfAbsentAsync(key, two, ct).ConfigureAwait(false);
            foreach (bool quoted in new[] { true, false })
            {
                var now = await store.GetRefAsync(key, ct).ConfigureAwait(false) ?? throw new RemoteException(RemoteError.Unsupported, $"{store.Where}: a probe object vanished");
                bool wrongRefused = !await store.PutIfMatchAsync(key, two, "00000000000000000000000000000000", quoted, ct).ConfigureAwait(false);
                if (wrongRefused && await store.PutIfMatchAsync(key, two, now.ETag, quoted, ct).ConfigureAwait(false))
                    return quoted ? IfMatch : IfMatchUnquoted;
            }
            if (absentHonoured)
                return Lock;
            throw new RemoteException(RemoteError.Unsupported, $"{store.Where}: the store honours neither If-Match nor If-None-Match on PUT, so two pushes could lose each other's work; it cannot hold refs");
        }
        finally
        {
            await store.DeleteAsync(key, CancellationToken.None).ConfigureAwait(false);
        }
    }

    /// <summary>Writes <paramref name="data"/> to <paramref name="key"/> only if it still is <paramref name="expected"/> (null: absent). False when it moved.</summary>
    public async Task<bool> SwapAsync(string key, StoredRef? expected, byte[] data, CancellationToken ct)
    {
        switch (mode)
        {
            case IfMatch or IfMatchUnquoted:
                return expected is { } e
                    ? await store.PutIfMatchAsync(key, data, e.ETag, mode == IfMatch, ct).ConfigureAwait(false)
                    : await store.PutIfAbsentAsync(key, data, ct).ConfigureAwait(false);
            case Lock:
                return await UnderLock(key, async () =>
                {
                    var now = await store.GetRefAsync(key, ct).ConfigureAwait(false);
                    if (now is null != expected is null || (now is { } n && expected is { } x && !n.Data.AsSpan().SequenceEqual(x.Data)))
                        return false;
                    await store.PutRefAsync(key, data, ct).ConfigureAwait(false);
                    return true;
                }, ct).ConfigureAwait(false);
            default:
                throw new RemoteException(RemoteError.Unsupported, $"{store.Where}: unknown ref update mode '{mode}' (daxfs remote remove, then add the remote again)");
        }
    }

    private async Task<bool> UnderLock(string key, Func<Task<bool>> body, CancellationToken ct)
    {
        string lockKey = key + ".lock", owner = Guid.NewGuid().ToString("N");
        var until = DateTime.UtcNow + Lease + TimeSpan.FromSeconds(5);
        while (true)
        {
            long expires = DateTimeOffset.UtcNow.Add(Lease).ToUnixTimeMilliseconds();
            byte[] mine = Encoding.UTF8.GetBytes(JsonSerializer.Serialize(new Dictionary<string, object> { ["owner"] = owner, ["expiresMs"] = expires }));
            if (await store.PutIfAbsentAsync(lockKey, mine, ct).ConfigureAwait(false))
                break;
            var held = await store.GetRefAsync(lockKey, ct).ConfigureAwait(false);
            if (held is { } h && ExpiresMs(h.Data) < DateTimeOffset.UtcNow.ToUnixTimeMilliseconds())
            {
                // Its holder died: the lease ran out. Another waiter may remove it too and take it first; the check
                // below (the lock must still be this holder's) then refuses one of the two.
                await store.DeleteAsync(lockKey, ct).ConfigureAwait(false);
                continue;
            }
            if (DateTime.UtcNow > until)
                throw new RemoteException(RemoteError.Unreachable, $"{store.Where}: {lockKey} stayed held for {Lease.TotalSeconds:0} s; another push is under way, or remove the lock object if its holder is gone");
            await Task.Delay(200, ct).ConfigureAwait(false);
        }
        try
        {
            // Fencing: the lock must still be this holder's before the ref is written (a lease that ran out meanwhile loses it).
            var now = await store.GetRefAsync(lockKey, ct).ConfigureAwait(false);
            if (now is null || !Encoding.UTF8.GetString(now.Value.Data).Contains(owner, StringComparison.Ordinal))
                return false;
            return await body().ConfigureAwait(false);
        }
        finally
        {
            await store.DeleteAsync(lockKey, CancellationToken.None).ConfigureAwait(false);
        }
    }

    private static long ExpiresMs(byte[] data)
    {
        try
        {
            using var doc = JsonDocument.Parse(data);
            return doc.RootElement.TryGetProperty("expiresMs", out var e) && e.TryGetInt64(out long ms) ? ms : 0;
        }
        catch (JsonException)
        {
            return 0; // unreadable: treated as run out
        }
    }
}
