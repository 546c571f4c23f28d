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
        NoteLogGrowth(s);
        return next;
    }
}
