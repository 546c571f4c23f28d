using System.Runtime.InteropServices;

namespace Daxfs.Branching.Fuse;

/// <summary>
/// The libc calls the mount needs: open/read/writev on /dev/fuse, mount and umount2, and for a mount by a user
/// other than root a socket pair to receive the /dev/fuse descriptor from the fusermount3 helper.
/// </summary>
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
        ENOTEMPTY = 39, ENODATA = 61, EBUSY = 16, EXDEV = 18, EOPNOTSUPP = 95, ESTALE = 116, ECONNABORTED = 103, EPROTO = 71;

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

    public const int ProtRead = 1, ProtWrite = 2, MapShared = 1, MapPopulate = 0x8000;

    [LibraryImport("libc", EntryPoint = "kill", SetLastError = true)]
    public static partial int Kill(int pid, int signal);

    [LibraryImport("libc", EntryPoint = "mmap", SetLastError = true)]
    public static partial void* Mmap(void* address, nuint length, int protection, int flags, int fd, long offset);

    [LibraryImport("libc", EntryPoint = "munmap", SetLastError = true)]
    public static partial int Munmap(void* address, nuint length);

    [LibraryImport("libc", EntryPoint = "writev", SetLastError = true)]
    public static partial nint Writev(int fd, IoVec* iov, int count);

    public const int FSetPipeSize = 1031, SpliceNonblock = 2, FionRead = 0x541B;

    [LibraryImport("libc", EntryPoint = "pipe2", SetLastError = true)]
    public static partial int Pipe2(int* fds, int flags);

    [LibraryImport("libc", EntryPoint = "fcntl", SetLastError = true)]
    public static partial int Fcntl(int fd, int command, int argument);

    [LibraryImport("libc", EntryPoint = "ioctl", SetLastError = true)]
    public static partial int Ioctl(int fd, nuint request, int* argument);

    [LibraryImport("libc", EntryPoint = "vmsplice", SetLastError = true)]
    public static partial nint Vmsplice(int fd, IoVec* iov, nuint count, uint flags);

    [LibraryImport("libc", EntryPoint = "splice", SetLastError = true)]
    public static partial nint Splice(int fdIn, long* offIn, int fdOut, long* offOut, nuint length, uint flags);

    [LibraryImport("libc", EntryPoint = "mount", StringMarshalling = StringMarshalling.Utf8, SetLastError = true)]
    public static partial int Mount(string source, string target, string fsType, ulong flags, string data);

    [LibraryImport("libc", EntryPoint = "umount2", StringMarshalling = StringMarshalling.Utf8, SetLastError = true)]
    public static partial int Umount2(string target, int flags);

    public const int AfUnix = 1, SockStream = 1, SolSocket = 1, ScmRights = 1;

    [StructLayout(LayoutKind.Sequential)]
    public struct MsgHdr
    {
        public void* Name;
        public uint NameLength;
        public IoVec* Iov;
        public nuint IovLength;
        public void* Control;
        public nuint ControlLength;
        public int Flags;
    }

    [LibraryImport("libc", EntryPoint = "socketpair", SetLastError = true)]
    public static partial int SocketPair(int domain, int type, int protocol, int* fds);

    [LibraryImport("libc", EntryPoint = "recvmsg", SetLastError = true)]
    public static partial nint RecvMsg(int fd, MsgHdr* msg, int flags);

    /// <summary>Receives one descriptor passed with SCM_RIGHTS on <paramref name="socket"/>; -1 when the peer closed without one.</summary>
    public static int ReceiveDescriptor(int socket)
    {
        byte data;
        var iov = new IoVec { Base = &data, Length = 1 };
        byte* control = stackalloc byte[64];
        new Span<byte>(control, 64).Clear();
        var msg = new MsgHdr { Iov = &iov, IovLength = 1, Control = control, ControlLength = 64 };
        nint n;
        do n = RecvMsg(socket, &msg, 0); while (n < 0 && LastError == EINTR);
        if (n <= 0 || msg.ControlLength < 20)
            return -1;
        // struct cmsghdr: length (size_t), level (int), type (int), then the data.
        if (*(int*)(control + 8) != SolSocket || *(int*)(control + 12) != ScmRights)
            return -1;
        return *(int*)(control + 16);
    }

    [LibraryImport("libc", EntryPoint = "access", StringMarshalling = StringMarshalling.Utf8, SetLastError = true)]
    public static partial int Access(string path, int mode);

    public const int ReadWriteOk = 6; // R_OK | W_OK

    [LibraryImport("libc", EntryPoint = "geteuid")]
    public static partial uint Geteuid();

    [LibraryImport("libc", EntryPoint = "getegid")]
    public static partial uint Getegid();

    public static int LastError => Marshal.GetLastPInvokeError();

    public static string Describe(int errno) => Marshal.GetPInvokeErrorMessage(errno);
}
