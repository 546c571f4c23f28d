using Daxfs.Branching.Index;

using Daxfs.Branching.Media;

namespace Daxfs.Branching;

/// <summary>Progress of an export.</summary>
/// <param name="Entries">Entries written so far.</param>
/// <param name="Bytes">File bytes written so far.</param>
/// <param name="TotalEntries">Entries to write.</param>
/// <param name="TotalBytes">File bytes to write.</param>
public readonly record struct ExportProgress(long Entries, long Bytes, long TotalEntries, long TotalBytes);

public sealed partial class Branch
{
    /// <summary>
    /// What this branch changed against its parent: added, deleted, modified (with byte ranges), renamed and
    /// attribute changes. For main (and for a past version of it), against the version before; for a branch
    /// forked from a past version, against that version.
    /// </summary>
    public IReadOnlyList<Change> Diff()
    {
        var v = ReadView();
        return DiffEngine.Compare(Store.OlderViewOf(State), v);
    }

    /// <summary>
    /// Removes the temporary directories <paramref name="prefix"/>… in <paramref name="parent"/> that exports killed
    /// part way left. An export holds an exclusive flock on its directory until it is renamed into place, and the
    /// kernel drops it when the exporter dies (in whatever PID namespace it ran): a directory whose lock can be taken
    /// is abandoned. Only directories of this user that no one else may write in are removed.
    /// </summary>
    private static void RemoveAbandonedExports(string parent, string prefix)
    {
        List<string> stale;
        try { stale = Directory.EnumerateDirectories(parent, prefix + "*").ToList(); }
        catch (IOException) { return; }
        catch (UnauthorizedAccessException) { return; }
        foreach (var dir in stale)
        {
            using var fd = Libc.OpenNoFollow(dir, Libc.ORdOnly | Libc.ODirectory, 0, out _);
            if (fd is null)
                continue; // a link, or gone
            var st = UnixStatReader.Read(dir);
            if (st.Uid != Libc.Geteuid() || (st.Mode & 0x12) != 0)
                continue; // not ours, or others may write in it (they could swap what the removal walks into)
            if (Libc.FileLock((int)fd.DangerousGetHandle(), Libc.LockEx | Libc.LockNb) != 0)
                continue; // its export is under way
            try { Directory.Delete(dir, recursive: true); } catch (IOException) { } catch (UnauthorizedAccessException) { }
        }
    }

    /// <summary>What <paramref name="newer"/> has that this branch does not (this branch is the older side).</summary>
    public IReadOnlyList<Change> DiffTo(Branch newer)
    {
        ArgumentNullException.ThrowIfNull(newer);
        if (!ReferenceEquals(newer.Store, Store))
            throw new ArgumentException("the branches belong to different stores", nameof(newer));
        return DiffEngine.Compare(ReadView(), newer.ReadView());
    }

    /// <summary>
    /// Writes this branch's whole tree into <paramref name="destination"/> (created; it must not exist or be
    /// empty): directories, files (holes stay holes), symlinks, modes and modification times, and owners when
    /// run as root. Everything is created relative to directory descriptors, never through a symbolic link, so
    /// another user cannot redirect the export while it runs. The tree is written into a private temporary
    /// directory beside the destination (<c>.NAME.exporting-…</c>, locked while it is written) and renamed into
    /// place once whole, so an export that fails or is killed leaves the destination as it was; a failed one
    /// removes its temporary directory, and the next export to the destination removes what a killed one left.
    /// </summary>
    public void Export(string destination, IProgress<ExportProgress>? progress = null)
    {
        ArgumentNullException.ThrowIfNull(destination);
        var v = ReadView();
        // "dest/" would make the kernel follow a link named dest despite O_NOFOLLOW: the name is checked without it.
        destination = destination.Length > 1 ? destination.TrimEnd('/') : destination;
        if (new FileInfo(destination).LinkTarget is not null)
            throw new IOException($"{destination}: export destination is a symbolic link; give a real directory");
        if (File.Exists(destination) || Directory.Exists(destination) && Directory.EnumerateFileSystemEntries(destination).Any())
            throw new IOException($"{destination}: export destination exists and is not an empty directory");
        long totalEntries = 0, totalBytes = 0;
        foreach (var (_, ino) in v.Walk())
        {
            totalEntries++;
            var i = v.Info(ino);
            if (i.Kind == NodeKind.File) totalBytes += i.Size;
        }
        bool root = Libc.Geteuid() == 0;
        long entries = 0, bytes = 0;
        var last = DateTime.MinValue;
        // Inodes with several names (hard links): the first name made is held open, and each later name is
        // linked to it, so the export has one inode with all its names, as the branch does.
        // A descriptor is held only while names of its inode are still to come.
        var held = new Dictionary<long, (Microsoft.Win32.SafeHandles.SafeFileHandle Fd, int Left)>();
        string full = Path.GetFullPath(destination);
        string parent = Path.GetDirectoryName(full) ?? "/";
        string prefix = $".{Path.GetFileName(full)}.exporting-";
        RemoveAbandonedExports(parent, prefix);
        string building = Path.Combine(parent, $"{prefix}{Guid.NewGuid():N}");
        bool done = false;
        Microsoft.Win32.SafeHandles.SafeFileHandle? claim = null;
        try
        {
            using (var top = DirectoryWriter.CreateRoot(building))
            {
                // Held until the rename: while it is, no later export takes this directory for abandoned.
                claim = Libc.OpenNoFollow(building, Libc.ORdOnly | Libc.ODirectory, 0, out int errno);
                if (claim is null || Libc.FileLock((int)claim.DangerousGetHandle(), Libc.LockEx | Libc.LockNb) != 0)
                    throw new IOException($"{building}: cannot lock the directory being exported (errno {errno})");
                ExportTree(top);
            }
            // One rename puts the whole tree in place (over an empty directory, or where nothing was).
            if (Libc.Rename(building, full) != 0)
            {
                int errno = System.Runtime.InteropServices.Marshal.GetLastPInvokeError();
                throw new IOException($"{destination}: cannot move the exported tree into place from {building} (errno {errno}); the destination is as it was");
            }
            done = true;
        }
        finally
        {
            if (!done)
            {
                try { Directory.Delete(building, recursive: true); } catch (IOException) { } catch (UnauthorizedAccessException) { }
            }
            claim?.Dispose();
        }
        progress?.Report(new ExportProgress(entries, bytes, totalEntries, totalBytes));

        void ExportTree(DirectoryWriter top)
        {
            try
            {
                ExportDirectory(v, View.RootIno, top, root, ref entries, ref bytes);
            }
            finally
            {
                foreach (var h in held.Values) h.Fd.Dispose();
            }
        }

        void Report(long e, long b)
        {
            if (progress is not null && (DateTime.UtcNow - last).TotalMilliseconds > 100)
            {
                last = DateTime.UtcNow;
                progress.Report(new ExportProgress(e, b, totalEntries, totalBytes));
            }
        }

        void ExportDirectory(View view, long dirIno, DirectoryWriter dir, bool asRoot, ref long e, ref long b)
        {
            foreach (var (name, ino) in view.Entries(dirIno))
            {
                var info = view.Info(ino);
                (uint, uint)? owner = asRoot ? (info.Uid, info.Gid) : null;
                if (info.Kind != NodeKind.Directory && held.TryGetValue(ino, out var first))
                {
                    dir.Link(first.Fd, name);
                    if (first.Left == 1)
                    {
                        first.Fd.Dispose();
                        held.Remove(ino);
                    }
                    else
                    {
                        held[ino] = (first.Fd, first.Left - 1);
                    }
                    e++;
                    continue;
                }
                switch (info.Kind)
                {
                    case NodeKind.Directory:
                        using (var sub = dir.CreateDirectory(name))
                            ExportDirectory(view, ino, sub, asRoot, ref e, ref b);
                        break;
                    case NodeKind.Symlink:
                        dir.CreateSymlink(name, view.LinkTarget(ino), owner, info.MtimeNs, info.AtimeNs, view.Xattrs(ino));
                        break;
                    case NodeKind.Fifo or NodeKind.Socket or NodeKind.CharDevice or NodeKind.BlockDevice:
                        dir.CreateSpecial(name, Format.ModeBits.Of(info.Kind) | info.Perm, info.Rdev, owner, info.MtimeNs, info.AtimeNs, view.Xattrs(ino));
                        break;
                    default:
                        using (var fd = dir.CreateFile(name))
                        {
                            b += WriteData(view, ino, fd);
                            DirectoryWriter.Finish(fd, Path.Combine(dir.Path, name), info.Perm, owner, info.MtimeNs, info.AtimeNs, view.Xattrs(ino));
                        }
                        break;
                }
                if (info.Kind != NodeKind.Directory && info.Nlink > 1)
                    held[ino] = (dir.Hold(name), info.Nlink - 1);
                e++;
                Report(e, b);
            }
            // Its owner, mode and time last: writing into it would change its time, and a read-only mode would stop the writes.
            var self = view.Info(dirIno);
            dir.Finish(self.Perm, asRoot ? (self.Uid, self.Gid) : null, self.MtimeNs, self.AtimeNs, view.Xattrs(dirIno));
        }
    }

    /// <summary>Writes a file's data at its offsets, skipping its holes (they stay holes), then sets its size. Returns the bytes written.</summary>
    private long WriteData(View v, long ino, Microsoft.Win32.SafeHandles.SafeFileHandle fd)
    {
        var data = FileData.Of(v, ino);
        long written = 0;
        for (long at = 0; at < data.Size;)
        {
            bool isData = data.Locate(at, out _, out long available);
            available = Math.Min(available, data.Size - at);
            if (isData)
            {
                long pos = at;
                foreach (var span in new ReadResult(Store.Region, in data, at, available))
                {
                    RandomAccess.Write(fd, span, pos);
                    pos += span.Length;
                }
                written += available;
            }
            at += available;
        }
        RandomAccess.SetLength(fd, data.Size);
        return written;
    }
}
