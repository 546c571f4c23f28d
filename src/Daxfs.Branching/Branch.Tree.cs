using System.Runtime.InteropServices;
using Daxfs.Branching.Index;

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
    /// empty): directories, files, symlinks, modes and modification times, and owners when run as root.
    /// </summary>
    public void Export(string destination, IProgress<ExportProgress>? progress = null)
    {
        ArgumentNullException.ThrowIfNull(destination);
        var v = ReadView();
        if (File.Exists(destination) || Directory.Exists(destination) && Directory.EnumerateFileSystemEntries(destination).Any())
            throw new IOException($"{destination}: export destination exists and is not an empty directory");
        long totalEntries = 0, totalBytes = 0;
        foreach (var (_, ino) in v.Walk())
        {
            totalEntries++;
            var i = v.Info(ino);
            if (i.Kind == NodeKind.File) totalBytes += i.Size;
        }
        Directory.CreateDirectory(destination);
        long entries = 0, bytes = 0;
        var last = DateTime.MinValue;
        bool root = Geteuid() == 0;
        var dirs = new List<(string Path, long Ino)>();
        foreach (var (rel, ino) in v.Walk())
        {
            string target = Path.Combine(destination, rel);
            var info = v.Info(ino);
            switch (info.Kind)
            {
                case NodeKind.Directory:
                    Directory.CreateDirectory(target);
                    dirs.Add((target, ino));
                    break;
                case NodeKind.Symlink:
                    File.CreateSymbolicLink(target, v.LinkTarget(ino));
                    break;
                default:
                    using (var fs = new FileStream(target, FileMode.CreateNew, FileAccess.Write, FileShare.None, 1))
                    {
                        var data = FileData.Of(v, ino);
                        foreach (var span in new ReadResult(Store.Region, in data, 0, data.Size))
                        {
                            fs.Write(span);
                            bytes += span.Length;
                        }
                    }
                    File.SetUnixFileMode(target, (UnixFileMode)info.Perm);
                    File.SetLastWriteTimeUtc(target, FileStat.FromNs(info.MtimeNs).UtcDateTime);
                    break;
            }
            if (root) Lchown(target, info.Uid, info.Gid);
            entries++;
            if (progress is not null && (DateTime.UtcNow - last).TotalMilliseconds > 100)
            {
                last = DateTime.UtcNow;
                progress.Report(new ExportProgress(entries, bytes, totalEntries, totalBytes));
            }
        }
        // Directory modes and times last: writing into them would change their times, and a read-only mode would stop the writes.
        dirs.Reverse();
        foreach (var (path, ino) in dirs.Append((destination, View.RootIno)))
        {
            var info = v.Info(ino);
            File.SetUnixFileMode(path, (UnixFileMode)info.Perm);
            Directory.SetLastWriteTimeUtc(path, FileStat.FromNs(info.MtimeNs).UtcDateTime);
        }
        progress?.Report(new ExportProgress(entries, bytes, totalEntries, totalBytes));
    }

    [DllImport("libc", EntryPoint = "geteuid")]
    private static extern uint Geteuid();

    [DllImport("libc", EntryPoint = "lchown", SetLastError = true)]
    private static extern int LchownNative([MarshalAs(UnmanagedType.LPUTF8Str)] string path, uint uid, uint gid);

    private static void Lchown(string path, uint uid, uint gid)
    {
        if (LchownNative(path, uid, gid) != 0)
            throw new IOException($"{path}: chown to {uid}:{gid} failed (errno {Marshal.GetLastPInvokeError()})");
    }
}
