using System.Runtime.InteropServices;

namespace Daxfs.Branching.Media;

/// <summary>The fields of lstat(2) the base image builder needs (ownership, type, link count).</summary>
internal readonly record struct UnixStat(uint Mode, uint Uid, uint Gid, long Nlink, long Size, long MtimeNs);

internal static unsafe partial class UnixStatReader
{
    [LibraryImport("libc", EntryPoint = "lstat", StringMarshalling = StringMarshalling.Utf8, SetLastError = true)]
    private static partial int LStat(string path, byte* buf);

    /// <summary>lstat(2) of <paramref name="path"/>; decodes the x86-64 and arm64 Linux layouts of struct stat.</summary>
    public static UnixStat Read(string path)
    {
        byte* buf = stackalloc byte[256];
        if (LStat(path, buf) != 0)
            throw new IOException($"{path}: lstat failed (errno {Marshal.GetLastPInvokeError()})");
        if (RuntimeInformation.ProcessArchitecture == Architecture.X64)
        {
            // dev 0, ino 8, nlink 16 (u64), mode 24, uid 28, gid 32, rdev 40, size 48, mtim 88
            return new UnixStat(*(uint*)(buf + 24), *(uint*)(buf + 28), *(uint*)(buf + 32), *(long*)(buf + 16),
                *(long*)(buf + 48), *(long*)(buf + 88) * 1_000_000_000L + *(long*)(buf + 96));
        }
        if (RuntimeInformation.ProcessArchitecture == Architecture.Arm64)
        {
            // dev 0, ino 8, mode 16, nlink 20 (u32), uid 24, gid 28, rdev 32, size 48, mtim 88
            return new UnixStat(*(uint*)(buf + 16), *(uint*)(buf + 24), *(uint*)(buf + 28), *(uint*)(buf + 20),
                *(long*)(buf + 48), *(long*)(buf + 88) * 1_000_000_000L + *(long*)(buf + 96));
        }
        throw new PlatformNotSupportedException($"reading file ownership is implemented for x64 and arm64 Linux, not {RuntimeInformation.ProcessArchitecture}");
    }
}
