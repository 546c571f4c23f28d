using System.Security.Cryptography;
using System.Text.Json;
using System.Text.Json.Serialization;

namespace Daxfs.Branching.Remote;

/// <summary>
/// One entry of a directory object. <see cref="Kind"/>: f file, d directory, l symlink, p FIFO, s socket, c and b
/// device nodes. Files list their content as <see cref="RemoteFormat.ChunkBytes"/> chunks, each an object named by
/// its SHA-256; directories name their directory object.
/// </summary>
internal sealed class TreeEntry
{
    [JsonPropertyName("n")] public string Name { get; set; } = "";
    [JsonPropertyName("k")] public string Kind { get; set; } = "f";
    [JsonPropertyName("m")] public uint Mode { get; set; }
    [JsonPropertyName("u")] public uint Uid { get; set; }
    [JsonPropertyName("g")] public uint Gid { get; set; }
    [JsonPropertyName("t")] public long MtimeNs { get; set; }
    /// <summary>Files: bytes. Directories: bytes of the files under it (so a push that reuses it need not read it).</summary>
    [JsonPropertyName("z")] public long Size { get; set; }
    /// <summary>Directories: entries under it, at any depth.</summary>
    [JsonPropertyName("e")] public long Entries { get; set; }
    [JsonPropertyName("c")] public string[]? Chunks { get; set; }
    /// <summary>A small file's content lives in a pack (one object holding a directory's small files): its hash.</summary>
    [JsonPropertyName("p")] public string? Pack { get; set; }
    /// <summary>Where in the pack the content starts (its length is <see cref="Size"/>).</summary>
    [JsonPropertyName("o")] public long PackOffset { get; set; }
    [JsonPropertyName("d")] public string? Tree { get; set; }
    [JsonPropertyName("l")] public string? Target { get; set; }
    [JsonPropertyName("r")] public long Rdev { get; set; }
    [JsonPropertyName("x")] public SortedDictionary<string, string>? Xattrs { get; set; }

    public TreeEntry With(Action<TreeEntry> change)
    {
        var copy = (TreeEntry)MemberwiseClone();
        change(copy);
        return copy;
    }
}

/// <summary>A directory: its entries, sorted by name (ordinal), so equal directories have equal hashes.</summary>
internal sealed class TreeObject
{
    [JsonPropertyName("type")] public string Type { get; set; } = "tree";
    [JsonPropertyName("entries")] public List<TreeEntry> Entries { get; set; } = [];
}

/// <summary>A version of main, or a branch's state: its tree, the commit before it, and what the region said of it.</summary>
internal sealed class CommitObject
{
    [JsonPropertyName("type")] public string Type { get; set; } = "commit";
    [JsonPropertyName("parent")] public string? Parent { get; set; }
    /// <summary>Main's version number on the remote (1 for the first pushed); 0 for a branch's commit.</summary>
    [JsonPropertyName("version")] public long Version { get; set; }
    [JsonPropertyName("tree")] public string Tree { get; set; } = "";
    [JsonPropertyName("message")] public string Message { get; set; } = "";
    [JsonPropertyName("source")] public string Source { get; set; } = "";
    [JsonPropertyName("time")] public long TimeNs { get; set; }
    /// <summary>Bytes of file content in the tree (a clone sizes its region from it).</summary>
    [JsonPropertyName("bytes")] public long Bytes { get; set; }
    [JsonPropertyName("files")] public long Files { get; set; }
    /// <summary>A branch's commit: the commit of main it was forked from.</summary>
    [JsonPropertyName("base")] public string? Base { get; set; }
}

/// <summary>A ref's content: the commit it names (and, for a branch, the version of main it started from).</summary>
internal sealed class RefObject
{
    [JsonPropertyName("commit")] public string Commit { get; set; } = "";
    [JsonPropertyName("version")] public long Version { get; set; }
    [JsonPropertyName("base")] public string? Base { get; set; }
    [JsonPropertyName("baseVersion")] public long BaseVersion { get; set; }
}

[JsonSourceGenerationOptions(DefaultIgnoreCondition = JsonIgnoreCondition.WhenWritingNull)]
[JsonSerializable(typeof(TreeObject))]
[JsonSerializable(typeof(CommitObject))]
[JsonSerializable(typeof(RefObject))]
internal sealed partial class RemoteJson : JsonSerializerContext;

/// <summary>The remote's layout: keys, hashing, encoding.</summary>
internal static class RemoteFormat
{
    /// <summary>Files are cut into chunks of this size (the last one shorter): the unit a push uploads and a pull fetches.</summary>
    public const int ChunkBytes = 512 * 1024;

    public const string MainRef = "refs/heads/main";

    /// <summary>The highest remote version number taken for real (a larger one is a forgery that would overflow).</summary>
    public const long MaxVersion = 1L << 48;

    /// <summary>Files up to this size go into their directory's packs instead of objects of their own (one request for many).</summary>
    public const int PackedFileBytes = 256 * 1024;

    /// <summary>A pack is sealed once it holds this much.</summary>
    public const int PackBytes = 8 << 20;

    /// <summary>The largest pack read.</summary>
    public const int MaxPackBytes = PackBytes + PackedFileBytes;

    /// <summary>The largest directory object read (a directory of about a million entries); larger is taken for damage.</summary>
    public const long MaxTreeBytes = 256L << 20;

    /// <summary>The largest commit object read.</summary>
    public const long MaxCommitBytes = 1 << 20;

    /// <summary>The longest path a pulled tree may reach, in characters (the kernel's PATH_MAX).</summary>
    public const int MaxPathBytes = 4096;

    /// <summary>The setuid and setgid bits, which a pull drops: a remote plants no privileged programs.</summary>
    public const uint SetIdBits = 0xC00;

    public static string TagRef(string name) => "refs/tags/" + name;

    public static string BranchRef(string name) => "refs/branches/" + name;

    public static string ObjectKey(string hash) => $"objects/{hash[..2]}/{hash}";

    public static string Hash(ReadOnlySpan<byte> data) => Convert.ToHexStringLower(SHA256.HashData(data));

    public static bool IsHash(string? s) => s is { Length: 64 } && s.All(c => char.IsAsciiDigit(c) || c is >= 'a' and <= 'f');

    public static byte[] Encode(TreeObject t) => JsonSerializer.SerializeToUtf8Bytes(t, RemoteJson.Default.TreeObject);

    public static byte[] Encode(CommitObject c) => JsonSerializer.SerializeToUtf8Bytes(c, RemoteJson.Default.CommitObject);

    public static byte[] Encode(RefObject r) => JsonSerializer.SerializeToUtf8Bytes(r, RemoteJson.Default.RefObject);

    public static TreeObject DecodeTree(byte[] data, string hash)
    {
        var t = Decode(data, RemoteJson.Default.TreeObject, "directory", hash);
        if (t.Type != "tree") throw Damaged("directory", hash, $"its type is '{t.Type}'");
        string? last = null;
        foreach (var e in t.Entries)
        {
            if (EntryProblem(e) is { } why) throw Damaged("directory", hash, $"entry '{e.Name}': {why}");
            if (last is not null && string.CompareOrdinal(last, e.Name) >= 0) throw Damaged("directory", hash, $"entries out of order at '{e.Name}'");
            last = e.Name;
        }
        return t;
    }

    /// <summary>Why an entry read from the remote cannot be used (a name with a slash, a bad hash, sizes that do not add up), or null.</summary>
    private static string? EntryProblem(TreeEntry e)
    {
        if (e.Name.Length == 0 || e.Name is "." or ".." || e.Name.Contains('/', StringComparison.Ordinal) || e.Name.Contains('\0', StringComparison.Ordinal))
            return "a name must be one path component";
        switch (e.Kind)
        {
            case "f":
                if (e.Chunks is null || e.Size < 0) return "a file without chunks";
                if (e.Chunks.Length != (e.Size + ChunkBytes - 1) / ChunkBytes) return $"{e.Chunks.Length} chunks for {e.Size} bytes";
                if (!e.Chunks.All(IsHash)) return "a chunk name is not a SHA-256";
                if (e.Pack is not null && (!IsHash(e.Pack) || e.Chunks.Length != 1 || e.Size > PackedFileBytes || e.PackOffset < 0 || e.PackOffset > MaxPackBytes - e.Size))
                    return "a packed file outside what a pack holds";
                return null;
            case "d": return IsHash(e.Tree) ? null : "a directory without a directory object";
            case "l": return string.IsNullOrEmpty(e.Target) || e.Target.Contains('\0', StringComparison.Ordinal) ? "a symlink without a target" : null;
            case "p" or "s" or "c" or "b": return null;
            default: return $"unknown kind '{e.Kind}'";
        }
    }

    public static CommitObject DecodeCommit(byte[] data, string hash)
    {
        var c = Decode(data, RemoteJson.Default.CommitObject, "commit", hash);
        if (c.Type != "commit") throw Damaged("commit", hash, $"its type is '{c.Type}'");
        if (!IsHash(c.Tree) || (c.Parent is not null && !IsHash(c.Parent)) || (c.Base is not null && !IsHash(c.Base)))
            throw Damaged("commit", hash, "a field names no object");
        if (c.Version is < 0 or > MaxVersion || (c.Version > 1 && c.Parent is null))
            throw Damaged("commit", hash, $"version {c.Version} cannot be (versions run from 1 to {MaxVersion}, and only the first has no parent)");
        return c;
    }

    public static RefObject DecodeRef(byte[] data, string key)
    {
        var r = Decode(data, RemoteJson.Default.RefObject, "ref", key);
        if (!IsHash(r.Commit) || (r.Base is not null && !IsHash(r.Base)) || r.Version is < 0 or > MaxVersion || r.BaseVersion is < 0 or > MaxVersion)
            throw new RemoteException(RemoteError.Damaged, $"ref {key}: it names no commit");
        return r;
    }

    private static T Decode<T>(byte[] data, System.Text.Json.Serialization.Metadata.JsonTypeInfo<T> info, string what, string name)
    {
        try
        {
            return JsonSerializer.Deserialize(data, info) ?? throw Damaged(what, name, "it is empty");
        }
        catch (JsonException e)
        {
            throw Damaged(what, name, e.Message);
        }
    }

    public static RemoteException Damaged(string what, string name, string why) =>
        new(RemoteError.Damaged, $"{what} {name} on the remote cannot be used: {why}");
}
