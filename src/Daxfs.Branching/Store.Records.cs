using Daxfs.Branching.Branching;
using Daxfs.Branching.Format;
using Daxfs.Branching.Index;
using Daxfs.Branching.Replay;

namespace Daxfs.Branching;

public sealed partial class Store
{
    internal delegate void BodyWriter(Span<byte> body);

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

    /// <summary>
    /// Refuses, before any record of the change is written, a write of <paramref name="bytes"/> the arena cannot hold
    /// (caller holds the locks): a write that fails for space leaves nothing of itself behind.
    /// </summary>
    internal void CheckRoom(long bytes, string path)
    {
        long need = bytes + bytes / 256 + 2 * FormatConstants.PageSize; // record headers, and a fresh block for the record
        if (need > _allocator.UsableBytes)
            throw new RegionFullException(need, _allocator.UsableBytes,
                $"{path}: region full: writing {bytes} bytes needs about {need} bytes and the delta arena has {_allocator.UsableBytes} free; "
                + "give space back with daxfs gc (branch logs), daxfs compact (main's history) or by discarding branches, or grow the region with daxfs resize");
    }

    /// <summary>Records that give space back (or make it dead, for cleaning to give back): they may use the allocator's reserve.</summary>
    private static bool Frees(RecordKind kind) => kind is RecordKind.Remove or RecordKind.Truncate or RecordKind.Rename or RecordKind.Release or RecordKind.RemoveXattr;

    /// <summary>
    /// Appends one write record carrying as much of <paramref name="data"/> as fits one block the arena can give (at
    /// most 64 MiB): when no free run is long enough for all of it (a fragmented arena), a shorter record, down to
    /// 64 KiB, so a write fails for space only when the space is not there. Returns the bytes written.
    /// </summary>
    internal int EmitWriteFitting(BranchState s, long ino, long offset, ReadOnlySpan<byte> data, string path)
    {
        int n = Math.Min(data.Length, FormatConstants.MaxWritePayload);
        while (true)
        {
            try
            {
                EmitWrite(s, ino, offset, data[..n], path);
                return n;
            }
            catch (RegionFullException) when (n > 64 << 10)
            {
                n /= 2; // nothing was published: a reservation that failed changed nothing
            }
        }
    }

    private long BeginRecord(BranchState s, RecordKind kind, int bodyLength, out Span<byte> body, out long time)
    {
        time = BaseImageBuilder.NowNs();
        long at;
        _allocator.UseReserve = Frees(kind); // a full region can always be cleaned up from inside
        try
        {
            at = s.Log.Reserve(kind, time, bodyLength);
        }
        finally
        {
            _allocator.UseReserve = false;
        }
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
        NoteLogGrowth(s);
        if (Frees(kind) && AutoClean && !s.IsMain && _allocator.UsableBytes < LowSpace)
            _cleanDue = s; // space is short and something just died: clean now, so what it held is usable at once
        return next;
    }
}
