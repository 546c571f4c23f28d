using System.Runtime.InteropServices;

namespace Daxfs.Branching.Media;

/// <summary>The fields of lstat(2) the base image builder needs (ownership, type, link count).</summary>
internal readonly record struct UnixStat(uint Mode, uint Uid, uint Gid, long Nlink, long Size, long MtimeNs, long AtimeNs, long Rdev, ulong Dev = 0, ulong Ino = 0);

internal static unsafe partial class UnixStatReader
{
    [LibraryImport("libc", EntryPoint = "lstat", StringMarshalling = StringMarshalling.Utf8, SetLastError = true)]
    private static partial int LStat(string path, byte* buf);

    [LibraryImport("libc", EntryPoint = "lgetxattr", StringMarshalling = StringMarshalling.Utf8, SetLastError = true)]
    private static partial nint LGetXattr(string path, string name, byte* value, nuint size);

    [LibraryImport("libc", EntryPoint = "llistxattr", StringMarshalling = StringMarshalling.Utf8, SetLastError = true)]
    private static partial nint LListXattr(string path, byte* list, nuint size);

    /// <summary>
    /// The extended attributes of <paramref name="path"/> (not following a final symlink), by name; empty when the
    /// file system has none or does not support them. Names the store cannot hold are left out.
    /// </summary>
    public static Dictionary<string, byte[]> Xattrs(string path)
    {
        var result = new Dictionary<string, byte[]>(StringComparer.Ordinal);
        nint size = LListXattr(path, null, 0);
        if (size <= 0)
            return result;
        var list = new byte[size + 1];
        fixed (byte* p = list)
            size = LListXattr(path, p, (nuint)list.Length);
        if (size <= 0)
            return result;
        int start = 0;
        for (int i = 0; i < size; i++)
        {
            if (list[i] != 0) continue;
            string name = System.Text.Encoding.UTF8.GetString(list, start, i - start);
            start = i + 1;
            if (name.Length == 0) continue;
            if (Format.XattrTable.NameProblem(name) is not null) continue;
            var value = new byte[Format.XattrTable.MaxValue];
            nint n;
            fixed (byte* v = value)
                n = LGetXattr(path, name, v, (nuint)value.Length);
            if (n >= 0)
                result[name] = value.AsSpan(0, (int)n).ToArray();
        }
        return result;
    }

    /// <summary>lstat(2) of <paramref name="path"/>; decodes the x86-64 and arm64 Linux layouts of struct stat.</summary>
    public static UnixStat Read(string path)
    {
        byte* buf = stackalloc byte[256];
        if (LStat(path, buf) != 0)
            throw new IOException($"{path}: lstat failed (errno {Marshal.GetLastPInvokeError()})");
        if (RuntimeInformation.ProcessArchitecture == Architecture.X64)
        {
            // dev 0, ino 8, nlink 16 (u64), mode 24, uid 28, gid 32, rdev 40, size 48, atim 72, mtim 88
            return new UnixStat(*(uint*)(buf + 24), *(uint*)(buf + 28), *(uint*)(buf + 32), *(long*)(buf + 16),
                *(long*)(buf + 48), *(long*)(buf + 88) * 1_000_000_000L + *(long*)(buf + 96), *(long*)(buf + 72) * 1_000_000_000L + *(long*)(buf + 80), *(long*)(buf + 40), *(ulong*)buf, *(ulong*)(buf + 8));
        }
        if (RuntimeInformation.ProcessArchitecture == Architecture.Arm64)
        {
            // dev 0, ino 8, mode 16, nlink 20 (u32), uid 24, gid 28, rdev 32, size 48, atim 72, mtim 88
            return new UnixStat(*(uint*)(buf + 16), *(uint*)(buf + 24), *(uint*)(buf + 28), *(uint*)(buf + 20),
                *(long*)(buf + 48), *(long*)(buf + 88) * 1_000_000_000L + *(long*)(buf + 96), *(long*)(buf + 72) * 1_000_000_000L + *(long*)(buf + 80), *(long*)(buf + 32), *(ulong*)buf, *(ulong*)(buf + 8));
        }
        throw new PlatformNotSupportedException($"reading file ownership is implemented for x64 and arm64 Linux, not {RuntimeInformation.ProcessArchitecture}");
    }
}
