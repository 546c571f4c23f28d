using Daxfs.Branching.Branching;
using Daxfs.Branching.Coordination;
using Daxfs.Branching.Format;
using Daxfs.Branching.Log;

using Daxfs.Branching.Replay;

namespace Daxfs.Branching;

/// <summary>What a full verification checked.</summary>
/// <param name="BaseDataBytes">Bytes of base file data checked against their chunk checksums.</param>
/// <param name="Logs">Delta logs walked (live branches' own logs and every log merged into them or into main).</param>
/// <param name="Records">Records whose checksum was checked.</param>
/// <param name="RecordBytes">Bytes of those records.</param>
/// <param name="ReachableBytes">Bytes of the log blocks that live branches, branches kept for rebase and main's history reach.</param>
/// <param name="ArenaUsedBytes">Bytes of the arena marked in use (reachable blocks, plus blocks reserved by
/// live processes or parked for read leases).</param>
/// <param name="Damage">Every damaged structure found, in the order found (empty when the region is whole).</param>
public readonly record struct VerifyReport(long BaseDataBytes, long Logs, long Records, long RecordBytes, long ReachableBytes, long ArenaUsedBytes,
    IReadOnlyList<DamageFound> Damage);

/// <summary>One damaged structure that a verification found.</summary>
/// <param name="Structure">What is damaged (for example <c>record</c>, <c>log block</c>, <c>base data chunk 3</c>).</param>
/// <param name="Offset">Its byte offset in the region.</param>
/// <param name="Detail">What is wrong with it.</param>
/// <param name="Consequences">What depends on it, and what is still intact.</param>
public sealed record DamageFound(string Structure, long Offset, string Detail, string Consequences);

public sealed partial class Store
{
    /// <summary>
    /// Checks every checksum of the region now: all base file data (normally checked chunk by chunk on
    /// first read) and every record of every log still in use. Metadata was already validated on open.
    /// </summary>
    /// <exception cref="CorruptionException">Names the first structure that fails, its offset and what depends on it.</exception>
    public VerifyReport Verify()
    {
        var report = Check();
        if (report.Damage.Count > 0)
        {
            var d = report.Damage[0];
            throw new CorruptionException(d.Structure, d.Offset, d.Detail, d.Consequences);
        }
        return report;
    }

    /// <summary>
    /// As <see cref="Verify"/>, but reports every damaged structure it finds, in one pass, instead of stopping
    /// at the first. Changes nothing. On a store opened with <see cref="OpenSnapshot(string, TimeSpan)"/> the file is not even
    /// opened for writing.
    /// </summary>
    public VerifyReport Check()
    {
        ReadAll();
        ReadHistory(0); // every version's view, to hold the checkpoint against
        lock (_gate)
        {
            ThrowIfUnusable();
            var image = _picture.CurrentBase!;
            var found = new List<CorruptionException>();
            image.VerifyAllData(found);
            var damage = found.Select(e => new DamageFound(e.Structure, e.Offset, e.Detail, "the base image's file data in that chunk reads as an error; everything else is unaffected")).ToList();
            long logs = 0, records = 0, bytes = 0;
            var seen = new HashSet<long>();
            var blocks = new HashSet<long>();
            long reachable = 0;
            var stack = new Stack<(LogRef Log, string Owner)>();
            foreach (var s in _picture.Slots)
                if (s is not null && s.Status == BranchState.StatusLive)
                    stack.Push((s.Log.Ref, s.IsMain ? "main" : $"branch '{s.Name}'"));
            foreach (var k in _picture.Kept.Values)
                stack.Push((k.Log.Ref, $"kept branch '{k.Name}'"));
            var r = new Rec();
            while (stack.Count > 0)
            {
                var (logRef, owner) = stack.Pop();
                if (logRef.IsEmpty || !seen.Add(logRef.LogId))
                    continue;
                logs++;
                var c = Cursor(logRef);
                try
                {
                    while (c.MoveNext())
                {
                    records++;
                    bytes += c.Header.Length;
                    var kind = (RecordKind)c.Header.Kind;
                    if (kind is RecordKind.Merge or RecordKind.Version)
                    {
                        RecordCodec.Decode(r, kind, c.Header.TimeNs, c.Offset, c.Body, c.BodyOffset);
                        if (kind == RecordKind.Version && r.Seq <= _picture.BaseVersion)
                            continue; // folded into the base image: its logs are no longer in use
                        foreach (var child in r.Logs) stack.Push((child, owner));
                    }
                    }
                }
                catch (CorruptionException e)
                {
                    damage.Add(new DamageFound(e.Structure, e.Offset, e.Detail,
                        $"log {logRef.LogId}, part of {owner}: the records after it cannot be read; {owner} and what was forked from it depend on it"));
                }
                finally
                {
                    foreach (var b in c.Blocks)
                    {
                        if (!blocks.Add(b.Offset))
                            continue;
                        reachable += b.Pages * FormatConstants.PageSize;
                        if (!_allocator.AllInUse(b.Offset, b.Pages))
                            damage.Add(new DamageFound("allocation bitmap", b.Offset, $"block {b.Offset} of log {logRef.LogId} ({b.Pages} pages) is in use by {owner} but marked free",
                                "the next allocation may overwrite it; a full recovery (an open with no other process, after the region's SpaceAudit word is set) marks it in use again"));
                    }
                }
            }
            if (_picture.BaseRun is { } run)
                reachable += run.Pages * FormatConstants.PageSize; // the compacted base image lives in the arena
            if (_picture.CheckCheckpoint() is { } wrong)
                damage.Add(new DamageFound("checkpoint", Volatile.Read(ref _region.Word(FormatConstants.ControlOffset + ControlBlock.CheckpointOffset)), wrong,
                    "nothing depends on it: opens replay main's history instead; daxfs repair drops it, and a later commit writes a new one"));
            else if (_picture.CheckpointRunInUse() is { } checkpoint)
                reachable += checkpoint.Pages * FormatConstants.PageSize;
            return new VerifyReport(image.DataLength, logs, records, bytes, reachable, _allocator.ArenaBytes - _allocator.FreeBytes, damage);
        }
    }
}
