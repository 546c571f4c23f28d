using Daxfs.Branching.Branching;
using Daxfs.Branching.Format;
using Daxfs.Branching.Index;

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
        long time = BaseImageBuilder.NowNs();
        long at = s.Log.Reserve(kind, time, bodyLength);
        var body = s.Log.Body(at, bodyLength);
        write(body);
        var r = _rec;
        RecordCodec.Decode(r, kind, time, at, body, at + RecordHeader.Size);
        var next = ViewOps.Apply(s.View, r, path);
        s.Log.Publish(at, flush: false);
        s.View = next;
        s.Records++;
        s.LogBytes += FormatConstants.AlignUp(RecordHeader.Size + bodyLength, 8);
        return next;
    }
}
