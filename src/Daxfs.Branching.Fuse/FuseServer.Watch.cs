using Daxfs.Branching.Index;

namespace Daxfs.Branching.Fuse;

/// <summary>
/// The watchers: one follows changes made elsewhere (other processes, other mounts, this mount through another
/// path) and drops exactly what they make stale from the kernel's caches; one guards the region file against
/// truncation; one checks base data ahead of large sequential reads.
/// </summary>
internal sealed unsafe partial class FuseServer
{
    private long _invalidations; // how often the watcher dropped the kernel's caches

    // ------------------------------------------------------------------ following changes made elsewhere

    /// <summary>The <c>@NAME</c> entries the root showed at the last look (region mode).</summary>
    private string[] _lastBranches = [];

    /// <summary>Wakes the watcher at once (the end of the mount, or a commit or end through the control entry, after its reply).</summary>
    private readonly AutoResetEvent _wake = new(false);

    /// <summary>Has the watcher look now, for a change the caller already has its answer to (its work no longer delays that answer).</summary>
    private void LookNow()
    {
        Interlocked.Exchange(ref _lastStamp, -1);
        _wake.Set();
    }

    /// <summary>The region's change counter at the watcher's last look.</summary>
    private long _lastStamp = -1;

    /// <summary>Branch entries the kernel learnt of from this mount's own replies, for the watcher's next look.</summary>
    private readonly System.Collections.Concurrent.ConcurrentQueue<(MountedBranch Owner, ulong Dir, string Name)> _shown = new();

    /// <summary>
    /// Records that the kernel already knows of branch entry <paramref name="name"/> in <paramref name="dir"/> (made
    /// by this mount), so the next look does not drop it. Never waits: a handler that waited here for the watcher,
    /// while the watcher waits in the kernel for a directory that a request waiting for a handler holds, would
    /// stop the mount.
    /// </summary>
    private void Shown(MountedBranch owner, ulong dir, string name) => _shown.Enqueue((owner, dir, name));

    /// <summary>Takes the entries <see cref="Shown"/> queued into the lists the watcher compares with (the watcher's thread only).</summary>
    private void TakeShown()
    {
        while (_shown.TryDequeue(out var s))
        {
            if (s.Dir == FuseProtocol.RootId && RegionMode)
                _lastBranches = [.. _lastBranches.Append(s.Name).Distinct().Order(StringComparer.Ordinal)];
            else
                s.Owner.LastChildren = [.. s.Owner.LastChildren.Append(s.Name).Distinct().Order(StringComparer.Ordinal)];
        }
    }

    /// <summary>
    /// Looks for changes every 0.1 s, until the mount ends. Handlers never notify the kernel themselves: a
    /// notification about a directory the kernel holds locked for the very request being answered would wait
    /// for that answer forever. Nor do they wake the watcher: its work would take the CPU the caller needs.
    /// </summary>
    private void Watch()
    {
        while (!_stopped)
        {
            _wake.WaitOne(100);
            if (_stopped)
                return;
            if (Volatile.Read(ref _lost) is not null)
                continue;
            if (RegionLost() is not null)
            {
                // What the kernel cached is dropped too: every read comes here and fails.
                foreach (var mb in _nodes.Live())
                    InvalidateBranch(mb);
                continue;
            }
            // Nothing changed anywhere in the region since the last look (the change counter is where it was):
            // nothing to compare, and the idle watcher allocates nothing.
            long stamp = _store.ChangeStamp();
            if (stamp == _lastStamp)
                continue;
            _lastStamp = stamp;
            try
            {
                Refresh();
            }
            catch (ObjectDisposedException)
            {
                return;
            }
            catch (Exception e) when (e is DaxfsException)
            {
                // A damaged region met while re-reading (the store is fenced or poisoned): requests report it.
            }
        }
    }

    /// <summary>
    /// Compares what every reached branch shows now with what the kernel was told, and drops what changed: a
    /// branch whose view moved has its nodes invalidated (and, on kernels that take it, every cached name looked
    /// up again); one that ended or was invalidated answers ESTALE from then on and its name goes; the root's
    /// <c>@NAME</c> entries and each <c>.daxfs/branches</c> follow the region's live branches. Unrelated branches
    /// keep their cached pages.
    /// </summary>
    private void Refresh()
    {
        // Only the watcher's thread runs this: handlers never wait on it.
        TakeShown();
        var reached = _nodes.Live();
        foreach (var mb in reached)
        {
            object? view;
            try
            {
                view = mb.Branch.CurrentViewToken();
            }
            catch (Exception e) when (e is BranchInvalidatedException or BranchNotFoundException or CorruptionException)
            {
                // Ended, invalidated, or fenced by damage found since: nothing cached of it may be served.
                mb.Gone = e is not CorruptionException;
                if (mb.LastView is not null || mb.Gone)
                {
                    mb.LastView = null;
                    InvalidateBranch(mb);
                    if (mb.EntryName.Length > 0)
                        _reply.InvalidateEntry(mb.ParentNode, mb.EntryName);
                }
                if (mb.Gone && mb.Index != 0)
                    _nodes.Forget(mb);
                continue;
            }
            var last = Volatile.Read(ref mb.LastView);
            if (!ReferenceEquals(view, last))
            {
                Volatile.Write(ref mb.LastView, view);
                DropChangedNames(mb, last as View, view as View);
                InvalidateBranch(mb);
            }
        }

        var live = _store.LiveBranches();
        if (RegionMode)
        {
            var names = live.Select(b => "@" + b.Name).ToArray();
            ListChanged(FuseProtocol.RootId, _lastBranches, names);
            _lastBranches = names;
        }
        var byParent = live.ToLookup(b => b.Parent, b => b.Name, StringComparer.Ordinal);
        foreach (var mb in reached)
        {
            if (mb.Gone) continue;
            var children = byParent[mb.Name].ToArray();
            ListChanged(NodeIds.Control(mb.Index, NodeIds.ChildrenDirIno), mb.LastChildren, children);
            mb.LastChildren = children;
        }
    }

    /// <summary>When directory <paramref name="dir"/>'s branch entries changed: its listing and the names that came or went are dropped.</summary>
    private void ListChanged(ulong dir, string[] before, string[] now)
    {
        if (before.AsSpan().SequenceEqual(now))
            return;
        Interlocked.Increment(ref _invalidations);
        _reply.InvalidateNode(dir);
        foreach (var name in before.Except(now).Concat(now.Except(before)))
            _reply.InvalidateEntry(dir, name);
    }

    /// <summary>
    /// Names created, removed or renamed elsewhere show at once: in every directory of <paramref name="mb"/> the
    /// kernel may have names of (its known directories), each name whose entry differs between the view the
    /// kernel was told about and the new one is dropped, found or missing. Only those names go: dropping all
    /// names (the kernel's epoch) would evict every unused inode of every branch, and their cached pages with them.
    /// </summary>
    private void DropChangedNames(MountedBranch mb, View? before, View? now)
    {
        if (now is null)
            return;
        foreach (var node in mb.Known.Keys)
        {
            long ino = NodeIds.InoOf(node);
            if (ino >= NodeIds.TreeLimit || before is null || !before.Exists(ino) || before.KindOf(ino) != NodeKind.Directory)
                continue;
            var old = new Dictionary<string, long>(StringComparer.Ordinal);
            foreach (var (name, child) in before.Entries(ino))
                old[name] = child;
            if (now.Exists(ino) && now.KindOf(ino) == NodeKind.Directory)
            {
                foreach (var (name, child) in now.Entries(ino))
                {
                    if (!old.Remove(name, out long was) || was != child)
                        _reply.InvalidateEntry(node, name);
                }
            }
            foreach (var name in old.Keys)
                _reply.InvalidateEntry(node, name); // gone
        }
    }

    /// <summary>Drops everything the kernel cached of <paramref name="mb"/>'s nodes (attributes, pages, listings).</summary>
    private void InvalidateBranch(MountedBranch mb)
    {
        Interlocked.Increment(ref _invalidations);
        foreach (var node in mb.Known.Keys)
            _reply.InvalidateNode(node);
    }

    /// <summary>Records that this mount changed <paramref name="mb"/>, so the watcher does not take it for a change from elsewhere.</summary>
    private static void Changed(MountedBranch mb)
    {
        try { Volatile.Write(ref mb.LastView, mb.Branch.CurrentViewToken()); }
        catch (DaxfsException) { }
    }

    // ------------------------------------------------------------------ the region file

    /// <summary>Set once the region file was found truncated under the mount: every request after that is EIO.</summary>
    private CorruptionException? _lost;

    /// <summary>
    /// Checks, before anything of the region is touched, that its file still backs the whole mapping: a file
    /// truncated under the mount (by mistake or by a hostile user with write access) would otherwise raise
    /// SIGBUS in this process on the next access past its new end. Once it is found short, every request is
    /// answered EIO (logged once) and the server stays up until it is unmounted.
    /// </summary>
    private void CheckRegion()
    {
        if (RegionLost() is { } lost)
            throw lost;
    }

    /// <summary>The truncation found (recorded and logged the first time), or null while the file backs the mapping.</summary>
    private CorruptionException? RegionLost()
    {
        if (Volatile.Read(ref _lost) is { } lost)
            return lost;
        try
        {
            _store.CheckBacking();
            return null;
        }
        catch (CorruptionException e)
        {
            if (Interlocked.CompareExchange(ref _lost, e, null) is null)
                _log.WriteLine($"daxfs mount: {e.Message}; every request is answered EIO from now on (unmount, then restore the region)");
            return Volatile.Read(ref _lost);
        }
    }

    // ------------------------------------------------------------------ checking base data ahead of large reads

    /// <summary>Reads at least this large have the base data after them checked ahead (see <see cref="CheckAhead"/>).</summary>
    private const int CheckAheadMinimum = 128 << 10;

    /// <summary>How far past a large read the checker goes.</summary>
    private const long CheckAheadWindow = 16L << 20;

    private sealed class AheadWindow
    {
        /// <summary>The file being read (its node), where its last large read ended, and the range still to check.</summary>
        public ulong Node;
        public long LastEnd, From, To;

        /// <summary>Moves on each new window, so a step of an older one cannot end a newer one.</summary>
        public long Generation;
    }

    private readonly AheadWindow _ahead = new();

    /// <summary>
    /// The base image's data is checked against its checksums on its first read, 64 KiB at a time, and on a
    /// large sequential read that check would otherwise sit between each request and its reply. Once a large
    /// read continues the previous one of the same file (offset = where that one ended), a background thread
    /// resolves the next <see cref="CheckAheadWindow"/> bytes of the file the same way a read would, which
    /// checks them (and maps their pages into this process) while the reader is still busy with what it has:
    /// work for the core the reader and this server leave idle while they wait on each other. A read that
    /// jumps, or one of another file, stops the checking until a read continues it: large random reads cost
    /// nothing extra.
    /// </summary>
    private void CheckAhead(ulong node, long offset, long end)
    {
        lock (_ahead)
        {
            if (_ahead.Node != node || _ahead.LastEnd != offset)
            {
                _ahead.Node = node;
                _ahead.LastEnd = end;
                _ahead.From = _ahead.To = end;
                _ahead.Generation++;
                return;
            }
            _ahead.LastEnd = end;
            if (end + CheckAheadWindow / 2 <= _ahead.To)
                return; // still far enough ahead
            _ahead.From = Math.Max(_ahead.From, end);
            _ahead.To = end + CheckAheadWindow;
            Monitor.Pulse(_ahead);
        }
    }

    private void CheckerLoop()
    {
        const int Step = 1 << 20;
        while (true)
        {
            ulong node;
            long from, generation;
            lock (_ahead)
            {
                while (!_stopped && _ahead.From >= _ahead.To)
                    Monitor.Wait(_ahead);
                if (_stopped)
                    return;
                node = _ahead.Node;
                from = _ahead.From;
                generation = _ahead.Generation;
                _ahead.From += Step; // claimed
            }
            if (RegionLost() is not null)
            {
                StopCheckingAhead(generation);
                continue;
            }
            try
            {
                var (mb, ino, _) = _nodes.Resolve(node);
                using (_store.BeginReadScope())
                {
                    var data = mb.Branch.ReadInode(ino, from, Step);
                    var pieces = new ReadResult.RawEnumerator(data); // walking the pieces checks them
                    while (pieces.MoveNext(out _, out _)) { }
                    if (data.Length < Step)
                        StopCheckingAhead(generation); // the end of the file
                }
            }
            catch (Exception e)
            {
                // A damaged chunk, a gone inode or a stale branch: the reader's own request reports it. Anything
                // else is logged; either way only this window ends, never the server.
                if (e is not (DaxfsException or ObjectDisposedException or IOException))
                    _log.WriteLine($"daxfs mount: checking ahead in node {node} at {from}: {e.GetType().Name}: {e.Message}");
                StopCheckingAhead(generation);
            }
        }
    }

    private void StopCheckingAhead(long generation)
    {
        lock (_ahead)
        {
            if (_ahead.Generation == generation)
                _ahead.From = _ahead.To;
        }
    }
}
