using System.Runtime.InteropServices;

namespace Daxfs.Branching.Fuse;

/// <summary>The libc calls the mount needs: open/read/writev on /dev/fuse, mount and umount2.</summary>
internal static unsafe partial class FuseNative
{
    public const int ORdwr = 2;
    public const int OCloexec = 0x80000;
    public const ulong MsNosuid = 2;
    public const ulong MsNodev = 4;
    public const ulong MsRdonly = 1;
    public const int MntDetach = 2;

    public const int ENOENT = 2, EINTR = 4, EIO = 5, EAGAIN = 11, EACCES = 13, EEXIST = 17, ENODEV = 19, ENOTDIR = 20,
        EISDIR = 21, EINVAL = 22, EFBIG = 27, ENOSPC = 28, EROFS = 30, EPERM = 1, ENAMETOOLONG = 36, ENOSYS = 38,
        ENOTEMPTY = 39, ENODATA = 61, EOPNOTSUPP = 95, ESTALE = 116, ECONNABORTED = 103, EPROTO = 71;

    [StructLayout(LayoutKind.Sequential)]
    public struct IoVec
    {
        public void* Base;
        public nuint Length;
    }

    [LibraryImport("libc", EntryPoint = "open", StringMarshalling = StringMarshalling.Utf8, SetLastError = true)]
    public static partial int Open(string path, int flags);

    [LibraryImport("libc", EntryPoint = "close", SetLastError = true)]
    public static partial int Close(int fd);

    [LibraryImport("libc", EntryPoint = "read", SetLastError = true)]
    public static partial nint Read(int fd, void* buffer, nuint count);

    [LibraryImport("libc", EntryPoint = "writev", SetLastError = true)]
    public static partial nint Writev(int fd, IoVec* iov, int count);

    [LibraryImport("libc", EntryPoint = "mount", StringMarshalling = StringMarshalling.Utf8, SetLastError = true)]
    public static partial int Mount(string source, string target, string fsType, ulong flags, string data);

    [LibraryImport("libc", EntryPoint = "umount2", StringMarshalling = StringMarshalling.Utf8, SetLastError = true)]
    public static partial int Umount2(string target, int flags);

    [LibraryImport("libc", EntryPoint = "geteuid")]
    public static partial uint Geteuid();

    [LibraryImport("libc", EntryPoint = "getegid")]
    public static partial uint Getegid();

    public static int LastError => Marshal.GetLastPInvokeError();

    public static string Describe(int errno) => Marshal.GetPInvokeErrorMessage(errno);
}
