using System.Buffers.Binary;
using System.Collections.Immutable;
using System.Text;

namespace Daxfs.Branching.Format;

/// <summary>
/// Extended attributes (format version 3): their rules, and the base image's table of them.
/// <code>
/// table: records sorted by (Ino, name bytes), each
///   0 Ino u32   4 NameLength u16 (1..255)   6 reserved u16   8 ValueLength u32 (0..65536)   12 name   then value
/// </code>
/// A record follows the previous one directly. The table lies between the name pool and the data area and is
/// covered by the base header's MetaCrc.
/// </summary>
internal static class XattrTable
{
    public const int MaxName = 255;
    public const int MaxValue = 65536;
    private const int Head = 12;

    private static readonly UTF8Encoding s_strict = new(false, true);

    /// <summary>True when <paramref name="name"/> lies in a namespace the store keeps (user., trusted., security., system.).</summary>
    public static bool KnownNamespace(string name)
        => name.StartsWith("user.", StringComparison.Ordinal) || name.StartsWith("trusted.", StringComparison.Ordinal)
            || name.StartsWith("security.", StringComparison.Ordinal) || name is PosixAcl.AccessName or PosixAcl.DefaultName;

    /// <summary>Why <paramref name="name"/> cannot be an extended attribute's name, or null.</summary>
    public static string? NameProblem(string name)
    {
        int n = Encoding.UTF8.GetByteCount(name);
        if (n == 0 || n > MaxName) return $"an attribute name has 1 to {MaxName} bytes";
        if (name.Contains('\0', StringComparison.Ordinal)) return "an attribute name has no NUL";
        if (!KnownNamespace(name))
            return "an attribute name starts with user., trusted. or security., or is a POSIX ACL (system.posix_acl_access or _default)";
        if (name.EndsWith('.') && name.IndexOf('.') == name.Length - 1)
            return "an attribute name has a name after its namespace";
        return null;
    }

    public static ImmutableSortedDictionary<string, byte[]> Empty { get; } = ImmutableSortedDictionary.Create<string, byte[]>(StringComparer.Ordinal);

    /// <summary>Bytes the table of <paramref name="all"/> takes.</summary>
    public static long Size(IEnumerable<(uint Ino, IReadOnlyDictionary<string, byte[]> Attrs)> all)
        => all.Sum(x => x.Attrs.Sum(kv => (long)Head + Encoding.UTF8.GetByteCount(kv.Key) + kv.Value.Length));

    /// <summary>Writes the table of <paramref name="all"/> (sorted by inode here; names sorted by their bytes) into <paramref name="dst"/>.</summary>
    public static void Write(IEnumerable<(uint Ino, IReadOnlyDictionary<string, byte[]> Attrs)> all, Span<byte> dst)
    {
        int at = 0;
        foreach (var (ino, attrs) in all.OrderBy(x => x.Ino))
        {
            foreach (var (nameBytes, value) in attrs.Select(kv => (Encoding.UTF8.GetBytes(kv.Key), kv.Value)).OrderBy(x => x.Item1, ByteComparer.Instance))
            {
                BinaryPrimitives.WriteUInt32LittleEndian(dst[at..], ino);
                BinaryPrimitives.WriteUInt16LittleEndian(dst[(at + 4)..], (ushort)nameBytes.Length);
                BinaryPrimitives.WriteUInt16LittleEndian(dst[(at + 6)..], 0);
                BinaryPrimitives.WriteUInt32LittleEndian(dst[(at + 8)..], (uint)value.Length);
                nameBytes.CopyTo(dst[(at + Head)..]);
                value.CopyTo(dst[(at + Head + nameBytes.Length)..]);
                at += Head + nameBytes.Length + value.Length;
            }
        }
    }

    /// <summary>Reads and checks a table at region offset <paramref name="offset"/>: each inode's attributes.</summary>
    public static Dictionary<long, ImmutableSortedDictionary<string, byte[]>> Read(ReadOnlySpan<byte> table, long offset, uint inodeCount)
    {
        var result = new Dictionary<long, ImmutableSortedDictionary<string, byte[]>>();
        var builder = Empty.ToBuilder();
        long current = 0;
        byte[] previousName = [];
        int at = 0;
        while (at < table.Length)
        {
            if (table.Length - at < Head)
                ThrowHelper.Corrupt("base attribute table", offset + at, "a record runs past the table's end");
            uint ino = BinaryPrimitives.ReadUInt32LittleEndian(table[at..]);
            int nl = BinaryPrimitives.ReadUInt16LittleEndian(table[(at + 4)..]);
            uint vl = BinaryPrimitives.ReadUInt32LittleEndian(table[(at + 8)..]);
            if (ino < 1 || ino > inodeCount || nl < 1 || nl > MaxName || vl > MaxValue || (long)table.Length - at - Head < nl + (long)vl)
                ThrowHelper.Corrupt("base attribute table", offset + at, $"record for inode {ino} with a name of {nl} and a value of {vl} bytes is out of range");
            var nameBytes = table.Slice(at + Head, nl);
            if (ino < current || ino == current && previousName.AsSpan().SequenceCompareTo(nameBytes) >= 0)
                ThrowHelper.Corrupt("base attribute table", offset + at, "records not strictly sorted by inode and name");
            string name;
            try { name = s_strict.GetString(nameBytes); }
            catch (DecoderFallbackException) { name = ""; ThrowHelper.Corrupt("base attribute table", offset + at, "a name that is not UTF-8"); }
            if (NameProblem(name) is { } why)
                ThrowHelper.Corrupt("base attribute table", offset + at, why);
            if (ino != current)
            {
                if (builder.Count > 0) result[current] = builder.ToImmutable();
                builder.Clear();
                current = ino;
            }
            builder[name] = table.Slice(at + Head + nl, (int)vl).ToArray();
            previousName = nameBytes.ToArray();
            at += Head + nl + (int)vl;
        }
        if (builder.Count > 0) result[current] = builder.ToImmutable();
        return result;
    }

    private sealed class ByteComparer : IComparer<byte[]>
    {
        public static readonly ByteComparer Instance = new();

        public int Compare(byte[]? x, byte[]? y) => x.AsSpan().SequenceCompareTo(y);
    }
}

/// <summary>
/// The POSIX access ACL as Linux stores it in system.posix_acl_access: version 2, then entries of (tag u16,
/// perm u16, id u32). Its owner, group-class (the mask, or the owning group without one) and other entries
/// are the mode's permission bits, and move with them.
/// </summary>
internal static class PosixAcl
{
    public const string AccessName = "system.posix_acl_access";
    public const string DefaultName = "system.posix_acl_default";

    /// <summary>
    /// What an entry created with permission bits <paramref name="perm"/> in a directory whose default ACL is
    /// <paramref name="defaultAcl"/> gets, as Linux's posix_acl_create does: the ACL (null when it says no more
    /// than the mode), and the permission bits, both masked by each other.
    /// </summary>
    public static (byte[]? Acl, uint Perm) Inherit(ReadOnlySpan<byte> defaultAcl, uint perm)
    {
        if (Mode(defaultAcl) is null)
            return (null, perm);
        var acl = defaultAcl.ToArray();
        int groupObj = -1, mask = -1;
        bool extended = false;
        for (int at = 4; at + 8 <= acl.Length; at += 8)
        {
            ushort tag = BinaryPrimitives.ReadUInt16LittleEndian(acl.AsSpan(at));
            uint e = BinaryPrimitives.ReadUInt16LittleEndian(acl.AsSpan(at + 2));
            switch (tag)
            {
                case UserObj:
                    e &= perm >> 6 & 7;
                    perm = perm & ~0x1C0u | e << 6;
                    break;
                case Other:
                    e &= perm & 7;
                    perm = perm & ~7u | e;
                    break;
                case GroupObj: groupObj = at; break;
                case Mask: mask = at; extended = true; break;
                default: extended = true; break;
            }
            BinaryPrimitives.WriteUInt16LittleEndian(acl.AsSpan(at + 2), (ushort)e);
        }
        int classEntry = mask >= 0 ? mask : groupObj;
        uint g = BinaryPrimitives.ReadUInt16LittleEndian(acl.AsSpan(classEntry + 2)) & (perm >> 3 & 7);
        BinaryPrimitives.WriteUInt16LittleEndian(acl.AsSpan(classEntry + 2), (ushort)g);
        perm = perm & ~0x38u | g << 3;
        return (extended ? acl : null, perm);
    }
    private const ushort UserObj = 0x01, User = 0x02, GroupObj = 0x04, Group = 0x08, Mask = 0x10, Other = 0x20;

    /// <summary>The permission bits (low 9) <paramref name="acl"/> gives the mode, and whether the ACL says no more than the mode does; null when malformed.</summary>
    public static (uint Perm, bool Minimal)? Mode(ReadOnlySpan<byte> acl)
    {
        if (acl.Length < 4 || (acl.Length - 4) % 8 != 0 || BinaryPrimitives.ReadUInt32LittleEndian(acl) != 2)
            return null;
        int user = -1, group = -1, mask = -1, other = -1, named = 0;
        for (int at = 4; at < acl.Length; at += 8)
        {
            ushort tag = BinaryPrimitives.ReadUInt16LittleEndian(acl[at..]);
            int perm = BinaryPrimitives.ReadUInt16LittleEndian(acl[(at + 2)..]);
            if (perm > 7) return null;
            switch (tag)
            {
                case UserObj: if (user >= 0) return null; user = perm; break;
                case GroupObj: if (group >= 0) return null; group = perm; break;
                case Mask: if (mask >= 0) return null; mask = perm; break;
                case Other: if (other >= 0) return null; other = perm; break;
                case User or Group: named++; break;
                default: return null;
            }
        }
        if (user < 0 || group < 0 || other < 0 || (named > 0 && mask < 0))
            return null;
        return ((uint)(user << 6 | (mask >= 0 ? mask : group) << 3 | other), named == 0 && mask < 0);
    }

    /// <summary><paramref name="acl"/> with its owner, group-class and other entries set from <paramref name="perm"/> (a chmod).</summary>
    public static byte[] WithMode(ReadOnlySpan<byte> acl, uint perm)
    {
        var copy = acl.ToArray();
        bool hasMask = false;
        for (int at = 4; at + 8 <= copy.Length; at += 8)
            if (BinaryPrimitives.ReadUInt16LittleEndian(copy.AsSpan(at)) == Mask) hasMask = true;
        for (int at = 4; at + 8 <= copy.Length; at += 8)
        {
            ushort tag = BinaryPrimitives.ReadUInt16LittleEndian(copy.AsSpan(at));
            int bits = tag switch
            {
                UserObj => (int)(perm >> 6 & 7),
                Mask => (int)(perm >> 3 & 7),
                GroupObj when !hasMask => (int)(perm >> 3 & 7),
                Other => (int)(perm & 7),
                _ => -1,
            };
            if (bits >= 0) BinaryPrimitives.WriteUInt16LittleEndian(copy.AsSpan(at + 2), (ushort)bits);
        }
        return copy;
    }
}
