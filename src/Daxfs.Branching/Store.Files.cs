using Daxfs.Branching.Branching;
using Daxfs.Branching.Format;
using Daxfs.Branching.Index;

namespace Daxfs.Branching;

public sealed partial class Store
{
    internal delegate void BodyWriter(Span<byte> body);

    /// <summary>True while this store holds the region lock (inside a change).</summary>
    private bool _held;

    /// <summary>
    /// Appends one record to <paramref name="s"/>'s log and makes it part of the branch's view. The record is
    /// applied to the view before it is published, so a change that fails (not found, exists …) leaves the
    /// log and the view as they were. Caller holds the locks and has checked the branch is writable.
    /// </summary>
    internal View Emit(BranchState s, RecordKind kind, int bodyLength, BodyWriter write, string path)
    {
        long at = BeginRecord(s, kind, bodyLength, out var body, out long time);
        write(body);
        return FinishRecord(s, kind, at, time, bodyLength, path);
    }

    /// <summary>Appends a write record carrying <paramref name="payload"/> (copied once, into the log).</summary>
    internal View EmitWrite(BranchState s, long ino, long offset, ReadOnlySpan<byte> payload, string path)
    {
        int bodyLength = RecordCodec.WritePayloadOffset + payload.Length;
        long at = BeginRecord(s, RecordKind.Write, bodyLength, out var body, out long time);
        RecordCodec.EncodeWriteHeader(body, ino, offset);
        payload.CopyTo(body[RecordCodec.WritePayloadOffset..]);
        return FinishRecord(s, RecordKind.Write, at, time, bodyLength, path);
    }

    private long BeginRecord(BranchState s, RecordKind kind, int bodyLength, out Span<byte> body, out long time)
    {
        time = BaseImageBuilder.NowNs();
        long at = s.Log.Reserve(kind, time, bodyLength);
        body = s.Log.Body(at, bodyLength);
        return at;
    }

    private View FinishRecord(BranchState s, RecordKind kind, long at, long time, int bodyLength, string path)
    {
        var r = _rec;
        RecordCodec.Decode(r, kind, time, at, s.Log.Body(at, bodyLength), at + RecordHeader.Size);
        var next = ViewOps.Apply(s.View, r, path);
        s.Log.Publish(at, flush: false);
        s.View = next;
        s.Records++;
        s.LogBytes += FormatConstants.AlignUp(RecordHeader.Size + bodyLength, 8);
        return next;
    }

    /// <summary>Enters a change: the in-process lock, then the region lock. Pair with <see cref="ExitChange"/>.</summary>
    internal void EnterChange()
    {
        Monitor.Enter(_gate);
        try
        {
            ThrowIfUnusable();
            _lock.Acquire();
        }
        catch
        {
            Monitor.Exit(_gate);
            throw;
        }
        _held = true;
        try
        {
            if (_lock.TookOverFromDead)
                Volatile.Write(ref _seen, -2); // a dead holder may have left a change half-done: re-derive everything
            if (Volatile.Read(ref ChangeCounter) != _seen)
                SyncLocked(alone: false);
            // Bump the counter on entry too: if this process dies inside the change, readers elsewhere still
            // see that something moved, take the lock over and re-derive, instead of reading a stale picture.
            Volatile.Write(ref _seen, Interlocked.Increment(ref ChangeCounter));
            if (ReclaimParked() > 0)
                Volatile.Write(ref _seen, Interlocked.Increment(ref ChangeCounter));
        }
        catch (Exception ex)
        {
            PoisonIfBroken(ex);
            ExitChange(changed: false);
            throw;
        }
    }

    /// <summary>Leaves a change; <paramref name="changed"/> tells other processes to re-read the region.</summary>
    internal void ExitChange(bool changed)
    {
        try
        {
            if (_poison is null)
            {
                // Space returned to the bitmap is a change too: other processes recount their free pages.
                if (ReclaimParked() > 0)
                    changed = true;
                if (changed)
                    Volatile.Write(ref _seen, Interlocked.Increment(ref ChangeCounter));
            }
        }
        finally
        {
            _held = false;
            try { _lock.Release(); }
            finally { Monitor.Exit(_gate); }
        }
    }

    /// <summary>
    /// Exception filter for changes: an unexpected failure (not a user-facing error) poisons the store so no
    /// later call writes on top of a half-done change. Always false, so the exception flows on.
    /// </summary>
    internal bool PoisonIfBroken(Exception ex)
    {
        if (ex is CorruptionException || ex is not (DaxfsException or ArgumentException or InvalidOperationException or ObjectDisposedException))
            _poison ??= ex;
        return false;
    }
}
