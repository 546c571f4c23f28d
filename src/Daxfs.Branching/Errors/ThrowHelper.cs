using System.Diagnostics.CodeAnalysis;

namespace Daxfs.Branching;

/// <summary>Throw sites, kept out of hot methods so those stay small and inlinable.</summary>
internal static class ThrowHelper
{
    [DoesNotReturn]
    public static void Corrupt(string structure, long offset, string detail) => throw new CorruptionException(structure, offset, detail);

    [DoesNotReturn]
    public static T Corrupt<T>(string structure, long offset, string detail) => throw new CorruptionException(structure, offset, detail);

    [DoesNotReturn]
    public static void IO(FileSystemError error, string path, string? detail = null) => throw new DaxfsIOException(error, path, detail);

    [DoesNotReturn]
    public static T IO<T>(FileSystemError error, string path, string? detail = null) => throw new DaxfsIOException(error, path, detail);

    [DoesNotReturn]
    public static void Invalidated(string branch, bool kept = false) => throw new BranchInvalidatedException(branch, kept);

    [DoesNotReturn]
    public static void OutOfRegion(long offset, long length, long capacity)
        => throw new CorruptionException("region access", offset, $"range of {length} bytes runs past the region's end at {capacity}");
}
