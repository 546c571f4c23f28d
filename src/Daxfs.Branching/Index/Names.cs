using System.Text;

namespace Daxfs.Branching.Index;

/// <summary>Rules for names of files and directories, shared by the builder, the validator and the file API.</summary>
internal static class Names
{
    public static readonly UTF8Encoding Utf8 = new(encoderShouldEmitUTF8Identifier: false, throwOnInvalidBytes: true);

    /// <summary>Null when <paramref name="name"/> (UTF-8) is a valid entry name, else why not.</summary>
    public static string? CheckUtf8(ReadOnlySpan<byte> name)
    {
        if (name.Length == 0) return "empty name";
        if (name.Length > Format.FormatConstants.MaxNameLength) return $"name of {name.Length} bytes is longer than 255";
        if (name.IndexOfAny((byte)'/', (byte)0) >= 0) return "name contains '/' or NUL";
        if (name.SequenceEqual("."u8) || name.SequenceEqual(".."u8)) return "name is '.' or '..'";
        if (!System.Text.Unicode.Utf8.IsValid(name)) return "name is not valid UTF-8";
        return null;
    }

    /// <summary>Throws <see cref="DaxfsIOException"/> unless <paramref name="name"/> is a valid entry name.</summary>
    public static void Validate(string name, string path)
    {
        if (name.Length == 0 || name == "." || name == "..")
            ThrowHelper.IO(FileSystemError.InvalidArgument, path, "a name must not be empty, '.' or '..'");
        if (name.AsSpan().IndexOfAny('/', '\0') >= 0)
            ThrowHelper.IO(FileSystemError.InvalidArgument, path, "a name must not contain '/' or NUL");
        int bytes;
        try { bytes = Utf8.GetByteCount(name); }
        catch (EncoderFallbackException) { ThrowHelper.IO(FileSystemError.InvalidArgument, path, "name is not valid Unicode"); return; }
        if (bytes > Format.FormatConstants.MaxNameLength)
            ThrowHelper.IO(FileSystemError.NameTooLong, path);
    }

    /// <summary>
    /// Splits an absolute or relative path into components, ignoring empty ones and "."; ".." is refused
    /// (paths are always resolved from the branch root, never upward).
    /// </summary>
    public static string[] Split(string path)
    {
        ArgumentNullException.ThrowIfNull(path);
        var parts = path.Split('/', StringSplitOptions.RemoveEmptyEntries);
        int n = 0;
        foreach (var p in parts)
        {
            if (p == ".") continue;
            if (p == "..") ThrowHelper.IO(FileSystemError.InvalidArgument, path, "'..' is not allowed in a branch path");
            if (p.Contains('\0', StringComparison.Ordinal)) ThrowHelper.IO(FileSystemError.InvalidArgument, path, "path contains NUL");
            parts[n++] = p;
        }
        return n == parts.Length ? parts : parts[..n];
    }

    /// <summary>Orders names by their UTF-8 bytes (the order of the base image's directories).</summary>
    public static int CompareUtf8(string a, string b)
    {
        // Ordinal UTF-16 order equals UTF-8 byte order except around surrogates; compare exactly.
        Span<byte> ba = stackalloc byte[1024];
        Span<byte> bb = stackalloc byte[1024];
        int la = Utf8.GetBytes(a, ba);
        int lb = Utf8.GetBytes(b, bb);
        return ba[..la].SequenceCompareTo(bb[..lb]);
    }
}

/// <summary>Compares names by their UTF-8 bytes.</summary>
internal sealed class Utf8NameComparer : IComparer<string>
{
    public static readonly Utf8NameComparer Instance = new();

    public int Compare(string? x, string? y) => Names.CompareUtf8(x ?? "", y ?? "");
}
