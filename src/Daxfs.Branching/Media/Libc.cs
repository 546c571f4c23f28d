using System.Runtime.InteropServices;

namespace Daxfs.Branching.Media;

/// <summary>
/// Every libc call of the library, in one place: mapping (mmap, munmap, msync), open-file-description
/// locks (fcntl), the file system's type (statfs) and signals. Linux only.
/// </summary>
internal static partial class Libc
{
    public const int ProtRead = 0x1;
    public const int ProtWrite = 0x2;
    public const int MapShared = 0x01;
    public const int MapPrivate = 0x02;
    public const int MapNoReserve = 0x4000;
    public const int MsSync = 4;
    public static readonly nint MapFailed = -1;

    // fcntl commands for open-file-description locks (Linux 3.15 and later).
    public const int FOfdSetLk = 37;

    // struct flock l_type values.
    public const short FRdLck = 0;
    public const short FWrLck = 1;
    public const short FUnLck = 2;

    public const short SeekSet = 0;

    public const int ENoEnt = 2;
    public const int EExist = 17;
    public const int ELoop = 40;
    public const int EIntr = 4;
    public const int EAgain = 11;
    public const int EAcces = 13;

    public const int SigKill = 9;

    /// <summary><c>f_type</c> of a memory file system: tmpfs (also <c>/dev/shm</c> and <c>/run</c>), ramfs, hugetlbfs.</summary>
    public const long TmpfsMagic = 0x01021994;
    public const long RamfsMagic = 0x858458f6;
    public const long HugetlbfsMagic = 0x958458f6;

    /// <summary>
    /// <c>struct flock</c> of Linux on 64-bit targets (x86-64 and arm64 alike): two shorts, padding,
    /// two 64-bit offsets, the pid, padding; 32 bytes. For open-file-description locks <see cref="Pid"/> must be 0.
    /// </summary>
    [StructLayout(LayoutKind.Sequential)]
    public struct Flock
    {
        public short Type;
        public short Whence;
        public long Start;
        public long Length;
        public int Pid;
    }

    // open(2) flags. O_NOFOLLOW differs between x86-64 and arm64 (the generic Linux value).
    public const int ORdOnly = 0;
    public const int ORdWr = 2;
    public const int OCreat = 0x40;
    public const int OExcl = 0x80;
    public const int OCloExec = 0x80000;
    private static readonly bool s_x86 = RuntimeInformation.ProcessArchitecture is Architecture.X64 or Architecture.X86;
    public static readonly int ONoFollow = s_x86 ? 0x20000 : 0x8000; // x86 and x86-64; the generic value elsewhere (arm64, ppc64, riscv64)

    [LibraryImport("libc", EntryPoint = "open", SetLastError = true, StringMarshalling = StringMarshalling.Utf8)]
    private static partial int OpenRaw(string path, int flags, int mode);

    /// <summary>
    /// Opens <paramref name="path"/> without following a symbolic link in its last component (O_NOFOLLOW) and
    /// close-on-exec, so a program this process starts never inherits it (nor the locks on it).
    /// </summary>
    /// <returns>The handle, or null with <paramref name="errno"/> set.</returns>
    public static Microsoft.Win32.SafeHandles.SafeFileHandle? OpenNoFollow(string path, int flags, int mode, out int errno)
    {
        int fd;
        do
        {
            fd = OpenRaw(path, flags | ONoFollow | OCloExec, mode);
            errno = fd < 0 ? Marshal.GetLastPInvokeError() : 0;
        }
        while (fd < 0 && errno == EIntr);
        return fd < 0 ? null : new Microsoft.Win32.SafeHandles.SafeFileHandle(fd, ownsHandle: true);
    }

    public const int OWrOnly = 1;
    public static readonly int ODirectory = s_x86 ? 0x10000 : 0x4000;
    public const int AtFdCwd = -100;
    public const int AtSymlinkNoFollow = 0x100;

    [LibraryImport("libc", EntryPoint = "openat", SetLastError = true, StringMarshalling = StringMarshalling.Utf8)]
    public static partial int OpenAt(int dirfd, string path, int flags, int mode);

    [LibraryImport("libc", EntryPoint = "mkdirat", SetLastError = true, StringMarshalling = StringMarshalling.Utf8)]
    public static partial int MkdirAt(int dirfd, string path, int mode);

    [LibraryImport("libc", EntryPoint = "symlinkat", SetLastError = true, StringMarshalling = StringMarshalling.Utf8)]
    public static partial int SymlinkAt(string target, int dirfd, string path);

    [LibraryImport("libc", EntryPoint = "fsetxattr", SetLastError = true, StringMarshalling = StringMarshalling.Utf8)]
    public static unsafe partial int FSetXattr(int fd, string name, byte* value, nuint size, int flags);

    [LibraryImport("libc", EntryPoint = "lsetxattr", SetLastError = true, StringMarshalling = StringMarshalling.Utf8)]
    public static unsafe partial int LSetXattr(string path, string name, byte* value, nuint size, int flags);

    [LibraryImport("libc", EntryPoint = "linkat", SetLastError = true, StringMarshalling = StringMarshalling.Utf8)]
    public static partial int LinkAt(int olddirfd, string oldpath, int newdirfd, string newpath, int flags);

    public const int AtSymlinkFollow = 0x400;
    public static readonly int OPath = 0x200000; // the same on x86-64 and arm64

    [LibraryImport("libc", EntryPoint = "mknodat", SetLastError = true, StringMarshalling = StringMarshalling.Utf8)]
    public static partial int MknodAt(int dirfd, string path, uint mode, ulong dev);

    [LibraryImport("libc", EntryPoint = "fchmodat", SetLastError = true, StringMarshalling = StringMarshalling.Utf8)]
    public static partial int FchmodAt(int dirfd, string path, uint mode, int flags);

    [LibraryImport("libc", EntryPoint = "fchownat", SetLastError = true, StringMarshalling = StringMarshalling.Utf8)]
    public static partial int FchownAt(int dirfd, string path, uint uid, uint gid, int flags);

    [LibraryImport("libc", EntryPoint = "fchown", SetLastError = true)]
    public static partial int Fchown(int fd, uint uid, uint gid);

    [LibraryImport("libc", EntryPoint = "fchmod", SetLastError = true)]
    public static partial int Fchmod(int fd, uint mode);

    /// <summary>utimensat(2): two timespecs (access, modification), each seconds and nanoseconds.</summary>
    [LibraryImport("libc", EntryPoint = "utimensat", SetLastError = true, StringMarshalling = StringMarshalling.Utf8)]
    public static unsafe partial int UtimensAt(int dirfd, string? path, long* times, int flags);

    [LibraryImport("libc", EntryPoint = "futimens", SetLastError = true)]
    public static unsafe partial int Futimens(int fd, long* times);

    public const int ENoSpc = 28;
    public const int EFBig = 27;
    public const int EOpNotSupp = 95;

    /// <summary>posix_fallocate(3): returns 0 or the error number (it does not set errno).</summary>
    [LibraryImport("libc", EntryPoint = "posix_fallocate")]
    public static partial int PosixFallocate(int fd, long offset, long length);

    [LibraryImport("libc", EntryPoint = "statvfs", StringMarshalling = StringMarshalling.Utf8)]
    private static unsafe partial int StatVfs(string path, ulong* buffer);

    /// <summary>Bytes free for unprivileged use on the file system holding <paramref name="path"/>, or -1.</summary>
    public static unsafe long FreeBytes(string path)
    {
        // struct statvfs on 64-bit Linux: f_bsize, f_frsize, f_blocks, f_bfree, f_bavail, … (unsigned longs).
        ulong* buffer = stackalloc ulong[32];
        return StatVfs(path, buffer) == 0 ? (long)(buffer[1] * buffer[4]) : -1;
    }

    /// <summary>
    /// Bytes a new file can really take on the file system holding <paramref name="path"/>, or -1: its free bytes,
    /// and on a memory file system (tmpfs) no more than the memory the kernel says is available, since tmpfs counts
    /// its size against memory that other processes use too.
    /// </summary>
    public static long RoomFor(string path, bool memory)
    {
        long free = FreeBytes(path);
        if (!memory)
            return free;
        long available = AvailableMemory();
        return free < 0 ? available : available < 0 ? free : Math.Min(free, available);
    }

    /// <summary>MemAvailable of /proc/meminfo in bytes, or -1.</summary>
    public static long AvailableMemory()
    {
        try
        {
            foreach (var line in File.ReadLines("/proc/meminfo"))
                if (line.StartsWith("MemAvailable:", StringComparison.Ordinal))
                    return long.Parse(line["MemAvailable:".Length..].Trim().Split(' ')[0], System.Globalization.CultureInfo.InvariantCulture) * 1024;
        }
        catch (IOException) { }
        catch (FormatException) { }
        return -1;
    }

    [LibraryImport("libc", EntryPoint = "rename", SetLastError = true, StringMarshalling = StringMarshalling.Utf8)]
    public static partial int Rename(string from, string to);

    public const int LockEx = 2, LockNb = 4;

    /// <summary>
    /// flock(2): a lock of the open file description (a directory too), dropped by the kernel when the last
    /// descriptor of it closes, as it is when a process dies; the same in every PID namespace.
    /// </summary>
    [LibraryImport("libc", EntryPoint = "flock", SetLastError = true)]
    public static partial int FileLock(int fd, int operation);

    public const int ONonBlock = 0x800; // the same on x86-64 and arm64

    /// <summary>Bytes of the whole file system holding <paramref name="path"/>, or -1.</summary>
    public static unsafe long TotalBytes(string path)
    {
        ulong* buffer = stackalloc ulong[32];
        return StatVfs(path, buffer) == 0 ? (long)(buffer[1] * buffer[2]) : -1;
    }

    public const int SeekData = 3;
    public const int SeekHole = 4;
    public const int ENxio = 6;

    [LibraryImport("libc", EntryPoint = "lseek", SetLastError = true)]
    public static partial long Lseek(int fd, long offset, int whence);

    /// <summary>
    /// The data runs of an open file (SEEK_DATA / SEEK_HOLE), or null when the file has no holes or the file
    /// system cannot say (then all of it is data).
    /// </summary>
    public static List<(long Offset, long Length)>? DataRuns(Microsoft.Win32.SafeHandles.SafeFileHandle file, long size)
    {
        if (size == 0)
            return null; // nothing to store, hole or not
        int fd = (int)file.DangerousGetHandle();
        var runs = new List<(long, long)>();
        long pos = 0;
        while (pos < size)
        {
            long data = Lseek(fd, pos, SeekData);
            if (data < 0)
            {
                int errno = Marshal.GetLastPInvokeError();
                if (errno == ENxio) break; // only a hole up to the end
                return null;               // not supported here: read it all
            }
            if (data >= size) break;
            long hole = Lseek(fd, data, SeekHole);
            if (hole < 0) return null;
            hole = Math.Min(hole, size);
            runs.Add((data, hole - data));
            pos = hole;
        }
        return runs.Count == 1 && runs[0] == (0, size) ? null : runs;
    }

    [LibraryImport("libc", EntryPoint = "geteuid")]
    public static partial uint Geteuid();

    [LibraryImport("libc", EntryPoint = "mmap", SetLastError = true)]
    public static partial nint Mmap(nint addr, nuint length, int prot, int flags, int fd, long offset);

    [LibraryImport("libc", EntryPoint = "munmap", SetLastError = true)]
    public static partial int Munmap(nint addr, nuint length);

    [LibraryImport("libc", EntryPoint = "msync", SetLastError = true)]
    public static partial int Msync(nint addr, nuint length, int flags);

    [LibraryImport("libc", EntryPoint = "fcntl", SetLastError = true)]
    public static partial int Fcntl(int fd, int cmd, ref Flock lk);

    [LibraryImport("libc", EntryPoint = "statfs", SetLastError = true, StringMarshalling = StringMarshalling.Utf8)]
    private static unsafe partial int StatFs(string path, byte* buffer);

    [LibraryImport("libc", EntryPoint = "kill", SetLastError = true)]
    public static partial int Kill(int pid, int signal);


    /// <summary>The <c>f_type</c> of the file system holding <paramref name="path"/>, or null when statfs fails.</summary>
    public static unsafe long? FileSystemType(string path)
    {
        // struct statfs is 120 bytes on 64-bit Linux; f_type is its first word.
        byte* buffer = stackalloc byte[256];
        if (StatFs(path, buffer) != 0)
            return null;
        return *(long*)buffer;
    }
}
