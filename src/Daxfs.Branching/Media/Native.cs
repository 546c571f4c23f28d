using System.Runtime.InteropServices;

namespace Daxfs.Branching.Media;

/// <summary>The few libc calls the region needs: mmap, munmap, msync. Linux only.</summary>
internal static partial class Native
{
    public const int ProtRead = 0x1;
    public const int ProtWrite = 0x2;
    public const int MapShared = 0x01;
    public const int MsSync = 4;
    public static readonly nint MapFailed = -1;

    [LibraryImport("libc", EntryPoint = "mmap", SetLastError = true)]
    public static partial nint Mmap(nint addr, nuint length, int prot, int flags, int fd, long offset);

    [LibraryImport("libc", EntryPoint = "munmap", SetLastError = true)]
    public static partial int Munmap(nint addr, nuint length);

    [LibraryImport("libc", EntryPoint = "msync", SetLastError = true)]
    public static partial int Msync(nint addr, nuint length, int flags);

    [LibraryImport("libc", EntryPoint = "getpid")]
    public static partial int GetPid();
}
