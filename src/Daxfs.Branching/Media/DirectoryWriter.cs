using System.Runtime.InteropServices;
using Microsoft.Win32.SafeHandles;

namespace Daxfs.Branching.Media;

/// <summary>
/// A directory being written, held by its descriptor: everything is created relative to it, with no-follow,
/// exclusive opens, and owners, modes and times are set on descriptors. So a symbolic link another user plants
/// inside the tree while it is written is never followed: the creation that meets it fails instead, and
/// nothing is written or changed outside the tree.
/// </summary>
internal sealed class DirectoryWriter : IDisposable
{
    private readonly SafeFileHandle _fd;

    private DirectoryWriter(SafeFileHandle fd, string path)
    {
        _fd = fd;
        Path = path;
    }

    /// <summary>The directory's path, for messages.</summary>
    public string Path { get; }

    private int Fd => (int)_fd.DangerousGetHandle();

    /// <summary>
    /// Creates <paramref name="path"/> or takes it when it is an empty directory, opens it without following a
    /// link, and makes it 0700, owned by this user, while it is written, so no other user can plant anything in
    /// it meanwhile (its own owner and mode are set last, by <see cref="Finish(uint, ValueTuple{uint, uint}?, long, long, IReadOnlyDictionary{string, byte[]})"/>).
    /// </summary>
    public static DirectoryWriter CreateRoot(string path)
    {
        if (Libc.MkdirAt(Libc.AtFdCwd, path, 0x1C0) != 0 && Marshal.GetLastPInvokeError() is var e && e != Libc.EExist)
            throw Error(path, "create the directory", e);
        var fd = OpenDirectory(Libc.AtFdCwd, path, path);
        int n = (int)fd.DangerousGetHandle();
        if (Libc.Fchown(n, Libc.Geteuid(), uint.MaxValue) != 0 || Libc.Fchmod(n, 0x1C0) != 0)
        {
            int errno = Marshal.GetLastPInvokeError();
            fd.Dispose();
            throw Error(path, "make the directory private while it is written", errno);
        }
        var writer = new DirectoryWriter(fd, path);
        if (Directory.EnumerateFileSystemEntries(path).Any())
        {
            writer.Dispose();
            throw new IOException($"{path}: export destination is not empty (something was put there as the export began)");
        }
        return writer;
    }

    /// <summary>Creates the subdirectory <paramref name="name"/> (0700 while it is written) and opens it.</summary>
    public DirectoryWriter CreateDirectory(string name)
    {
        string path = System.IO.Path.Combine(Path, name);
        if (Libc.MkdirAt(Fd, name, 0x1C0) != 0)
            throw Error(path, "create the directory", Marshal.GetLastPInvokeError());
        return new DirectoryWriter(OpenDirectory(Fd, name, path), path);
    }

    private static SafeFileHandle OpenDirectory(int dirfd, string name, string path)
    {
        int fd = Libc.OpenAt(dirfd, name, Libc.ORdOnly | Libc.ODirectory | Libc.ONoFollow | Libc.OCloExec, 0);
        if (fd < 0)
            throw Error(path, "open the directory (it was replaced by a link or a file while being written?)", Marshal.GetLastPInvokeError());
        return new SafeFileHandle(fd, ownsHandle: true);
    }

    /// <summary>Creates the regular file <paramref name="name"/> (0600 while it is written; never an existing name, never through a link).</summary>
    public SafeFileHandle CreateFile(string name)
    {
        int fd = Libc.OpenAt(Fd, name, Libc.OWrOnly | Libc.OCreat | Libc.OExcl | Libc.ONoFollow | Libc.OCloExec, 0x180);
        if (fd < 0)
            throw Error(System.IO.Path.Combine(Path, name), "create the file", Marshal.GetLastPInvokeError());
        return new SafeFileHandle(fd, ownsHandle: true);
    }

    /// <summary>Creates the symbolic link <paramref name="name"/> → <paramref name="target"/>, with its owner (when <paramref name="owner"/>) and time, never following it.</summary>
    public unsafe void CreateSymlink(string name, string target, (uint Uid, uint Gid)? owner, long mtimeNs, long atimeNs, IReadOnlyDictionary<string, byte[]>? xattrs = null)
    {
        string path = System.IO.Path.Combine(Path, name);
        if (Libc.SymlinkAt(target, Fd, name) != 0)
            throw Error(path, "create the symbolic link", Marshal.GetLastPInvokeError());
        FinishByName(name, null, owner, mtimeNs, atimeNs, xattrs); // a symlink's mode is always 0777
    }

    /// <summary>
    /// Sets what entry <paramref name="name"/> (not a directory, just made here) keeps besides its content, by name
    /// and never following it: the owner (when given) first, then the mode (when given), the extended attributes,
    /// and the times last.
    /// </summary>
    private unsafe void FinishByName(string name, uint? mode, (uint Uid, uint Gid)? owner, long mtimeNs, long atimeNs, IReadOnlyDictionary<string, byte[]>? xattrs)
    {
        string path = System.IO.Path.Combine(Path, name);
        if (owner is { } o && Libc.FchownAt(Fd, name, o.Uid, o.Gid, Libc.AtSymlinkNoFollow) != 0)
            throw Error(path, $"set the owner {o.Uid}:{o.Gid}", Marshal.GetLastPInvokeError());
        if (mode is { } m && Libc.FchmodAt(Fd, name, m & 0xFFF, 0) != 0)
            throw Error(path, $"set the mode {Convert.ToString(m & 0xFFF, 8)}", Marshal.GetLastPInvokeError());
        SetXattrsByName(name, xattrs);
        long* times = stackalloc long[4];
        Times(times, mtimeNs, atimeNs);
        if (Libc.UtimensAt(Fd, name, times, Libc.AtSymlinkNoFollow) != 0)
            throw Error(path, "set the time", Marshal.GetLastPInvokeError());
    }

    /// <summary>Sets extended attributes of entry <paramref name="name"/> here without following it (through /proc's link to this directory's descriptor).</summary>
    private unsafe void SetXattrsByName(string name, IReadOnlyDictionary<string, byte[]>? xattrs)
    {
        if (xattrs is null || xattrs.Count == 0) return;
        string at = $"/proc/self/fd/{Fd}/{name}";
        foreach (var (key, value) in xattrs)
            fixed (byte* v = value)
                if (Libc.LSetXattr(at, key, v, (nuint)value.Length, 0) != 0)
                    throw XattrError(System.IO.Path.Combine(Path, name), key, Marshal.GetLastPInvokeError());
    }

    /// <summary>Sets extended attributes on an open descriptor.</summary>
    private static unsafe void SetXattrs(int fd, string path, IReadOnlyDictionary<string, byte[]>? xattrs)
    {
        if (xattrs is null) return;
        foreach (var (key, value) in xattrs)
            fixed (byte* v = value)
                if (Libc.FSetXattr(fd, key, v, (nuint)value.Length, 0) != 0)
                    throw XattrError(path, key, Marshal.GetLastPInvokeError());
    }

    private static IOException XattrError(string path, string name, int errno)
        => new($"{path}: cannot set the extended attribute {name}: {(errno == 95 ? "the destination's file system does not support it" : errno == 1 ? "only root may set it" : $"errno {errno}")}");

    /// <summary>
    /// Creates the FIFO, socket or device node <paramref name="name"/> (mknodat: never follows anything, fails if
    /// the name exists), then its owner (when <paramref name="owner"/>), its mode and its times, by name without
    /// following. A device node needs root (CAP_MKNOD); without it the error says so.
    /// </summary>
    public unsafe void CreateSpecial(string name, uint typeAndMode, long device, (uint Uid, uint Gid)? owner, long mtimeNs, long atimeNs, IReadOnlyDictionary<string, byte[]>? xattrs = null)
    {
        string path = System.IO.Path.Combine(Path, name);
        if (Libc.MknodAt(Fd, name, typeAndMode & ~0xFFFu | 0x180, (ulong)device) != 0) // 0600 until the owner is set
        {
            int errno = Marshal.GetLastPInvokeError();
            throw errno == 1 ? new IOException($"{path}: cannot create the device node: only root may (CAP_MKNOD)") : Error(path, "create the node", errno);
        }
        // fchmodat cannot refuse to follow, but nothing here is a link: the node was just made, in a directory
        // only this process may write while the export runs.
        FinishByName(name, typeAndMode, owner, mtimeNs, atimeNs, xattrs);
    }

    /// <summary>
    /// Holds what was just created as <paramref name="name"/> (any kind but a directory) by an O_PATH descriptor,
    /// never following it, so later names can be linked to this very inode (<see cref="Link"/>) whatever is done
    /// to the paths meanwhile.
    /// </summary>
    public SafeFileHandle Hold(string name)
    {
        int fd = Libc.OpenAt(Fd, name, Libc.OPath | Libc.ONoFollow | 0x80000 /* O_CLOEXEC */, 0);
        if (fd < 0)
            throw Error(System.IO.Path.Combine(Path, name), "hold it for its other names", Marshal.GetLastPInvokeError());
        return new SafeFileHandle(fd, ownsHandle: true);
    }

    /// <summary>Gives the inode <paramref name="held"/> holds the name <paramref name="name"/> here too (a hard link), through /proc's link to the descriptor.</summary>
    public void Link(SafeFileHandle held, string name)
    {
        if (Libc.LinkAt(Libc.AtFdCwd, $"/proc/self/fd/{(int)held.DangerousGetHandle()}", Fd, name, Libc.AtSymlinkFollow) != 0)
            throw Error(System.IO.Path.Combine(Path, name), "create the hard link", Marshal.GetLastPInvokeError());
    }

    /// <summary>Sets this directory's owner (when given), then its mode, then its time, on its descriptor.</summary>
    public void Finish(uint mode, (uint Uid, uint Gid)? owner, long mtimeNs, long atimeNs, IReadOnlyDictionary<string, byte[]>? xattrs = null)
        => Finish(_fd, Path, mode, owner, mtimeNs, atimeNs, xattrs);

    /// <summary>
    /// Sets an open file's owner (when given), then its mode, then its time. The owner comes first: a chown by
    /// root clears the setuid and setgid bits, so the mode set after it keeps them.
    /// </summary>
    public static unsafe void Finish(SafeFileHandle fd, string path, uint mode, (uint Uid, uint Gid)? owner, long mtimeNs, long atimeNs, IReadOnlyDictionary<string, byte[]>? xattrs = null)
    {
        int n = (int)fd.DangerousGetHandle();
        if (owner is { } o && Libc.Fchown(n, o.Uid, o.Gid) != 0)
            throw Error(path, $"set the owner {o.Uid}:{o.Gid}", Marshal.GetLastPInvokeError());
        if (Libc.Fchmod(n, mode & 0xFFF) != 0)
            throw Error(path, $"set the mode {Convert.ToString(mode & 0xFFF, 8)}", Marshal.GetLastPInvokeError());
        SetXattrs(n, path, xattrs); // after the mode: an ACL sets the group bits to its mask, as it has them
        long* times = stackalloc long[4];
        Times(times, mtimeNs, atimeNs);
        if (Libc.Futimens(n, times) != 0)
            throw Error(path, "set the time", Marshal.GetLastPInvokeError());
    }

    /// <summary>The access time, then the modification time, as utimensat takes them.</summary>
    private static unsafe void Times(long* times, long mtimeNs, long atimeNs)
    {
        Split(atimeNs, out times[0], out times[1]);
        Split(mtimeNs, out times[2], out times[3]);
    }

    private static void Split(long ns, out long seconds, out long nanos)
    {
        seconds = Math.DivRem(ns, 1_000_000_000L, out nanos);
        if (nanos < 0) { seconds--; nanos += 1_000_000_000L; }
    }

    private static IOException Error(string path, string what, int errno)
        => new($"{path}: cannot {what}: {(errno == Libc.ELoop ? "it is a symbolic link, which is never followed" : errno == Libc.EExist ? "the name already exists" : $"errno {errno}")}");

    public void Dispose() => _fd.Dispose();
}
