using System.Collections.Immutable;
using Daxfs.Branching.Format;

namespace Daxfs.Branching.Index;

/// <summary>Attributes of one inode as a view sees it.</summary>
internal readonly record struct InodeInfo(long Ino, NodeKind Kind, uint Perm, uint Uid, uint Gid, long MtimeNs, long CtimeNs, long Size, int Nlink, long AtimeNs, long Rdev = 0);

/// <summary>
/// An immutable snapshot of a branch's whole tree: the base image plus a persistent map of the inodes
/// changed on top of it. Forking copies the reference; a change builds a new view sharing all untouched
/// structure, so a view never changes under a reader. Lookups consult at most two layers (the map, then
/// the base), whatever the branch depth.
/// </summary>
internal sealed class View
{
    public View(BaseImage baseImage, LongMapNode<Node>? nodes, long nextIno)
    {
        Base = baseImage;
        Nodes = nodes;
        NextIno = nextIno;
    }

    public BaseImage Base { get; }

    private object? _token;

    /// <summary>
    /// Stands for what the view holds: the view itself, or the token of the view it was built again from with the
    /// same content (a cleaning moved the bytes, not the tree). A mount compares tokens to tell a change.
    /// </summary>
    public object Token => _token ?? this;

    /// <summary>Marks this view as holding what <paramref name="same"/> holds (only the bytes' places differ).</summary>
    public void SameContentAs(View same) => _token = same.Token;

    public LongMapNode<Node>? Nodes { get; }

    public long NextIno { get; }

    public const long RootIno = 1;

    public static View Initial(BaseImage b) => new(b, null, b.NextIno);

    public View With(LongMapNode<Node>? nodes, long nextIno) => new(Base, nodes, nextIno);

    public bool TryGetNode(long ino, out Node node) => LongMap.TryGet(Nodes, ino, out node);

    public bool Exists(long ino) => LongMap.TryGet(Nodes, ino, out var n) ? !n.IsTombstone : Base.Contains(ino);

    public InodeInfo Info(long ino)
    {
        if (LongMap.TryGet(Nodes, ino, out var n))
            return new InodeInfo(n.Ino, n.Kind, n.Perm, n.Uid, n.Gid, n.MtimeNs, n.CtimeNs, n.Size,
                n.LinkCount, n.AtimeNs, n.Rdev);
        ref readonly var b = ref Base.Inode(ino);
        var kind = KindOfMode(b.Mode);
        return new InodeInfo(ino, kind, b.Mode & ModeBits.PermMask, b.Uid, b.Gid, b.MtimeNs, b.ChangeTimeNs, b.ByteSize,
            kind == NodeKind.Directory ? 2 + (int)b.Subdirs : b.LinkCount, b.AccessTimeNs, IsDevice(kind) ? b.DataOffset : 0);
    }

    public NodeKind KindOf(long ino)
        => LongMap.TryGet(Nodes, ino, out var n) ? n.Kind : KindOfMode(Base.Inode(ino).Mode);

    public static NodeKind KindOfMode(uint mode) => (mode & ModeBits.TypeMask) switch
    {
        ModeBits.Directory => NodeKind.Directory,
        ModeBits.Symlink => NodeKind.Symlink,
        ModeBits.Fifo => NodeKind.Fifo,
        ModeBits.Socket => NodeKind.Socket,
        ModeBits.CharDevice => NodeKind.CharDevice,
        ModeBits.BlockDevice => NodeKind.BlockDevice,
        _ => NodeKind.File,
    };

    /// <summary>True for the kinds that carry a device number.</summary>
    public static bool IsDevice(NodeKind kind) => kind is NodeKind.CharDevice or NodeKind.BlockDevice;

    /// <summary>True for FIFOs, sockets and device nodes: inodes with no bytes of their own, which the kernel serves.</summary>
    public static bool IsSpecial(NodeKind kind) => kind is NodeKind.Fifo or NodeKind.Socket or NodeKind.CharDevice or NodeKind.BlockDevice;

    /// <summary>The child named <paramref name="name"/> in directory <paramref name="dirIno"/>, or 0.</summary>
    public long Lookup(long dirIno, string name)
    {
        if (LongMap.TryGet(Nodes, dirIno, out var n))
            return n.Entries is not null && n.Entries.TryGetValue(name, out long child) ? child : 0;
        return Base.Lookup(dirIno, name);
    }

    /// <summary>The directory that holds inode <paramref name="ino"/> (the root: itself).</summary>
    public long ParentOf(long ino)
        => LongMap.TryGet(Nodes, ino, out var n) ? n.ParentIno : Base.Inode(ino).ParentIno;

    public IEnumerable<(string Name, long Ino)> Entries(long dirIno)
    {
        if (LongMap.TryGet(Nodes, dirIno, out var n))
        {
            if (n.Entries is null) yield break;
            foreach (var kv in n.Entries)
                yield return (kv.Key, kv.Value);
            yield break;
        }
        foreach (var e in Base.Entries(dirIno))
            yield return e;
    }

    /// <summary>Every entry below directory <paramref name="dir"/>, depth first, parents before children, with its path relative to it.</summary>
    public IEnumerable<(string Path, long Ino)> Walk(long dir = RootIno)
    {
        var stack = new Stack<(long Dir, string Path)>();
        stack.Push((dir, ""));
        while (stack.Count > 0)
        {
            var (d, path) = stack.Pop();
            foreach (var (name, ino) in Entries(d))
            {
                string p = path.Length == 0 ? name : path + "/" + name;
                yield return (p, ino);
                if (KindOf(ino) == NodeKind.Directory)
                    stack.Push((ino, p));
            }
        }
    }

    /// <summary>The extended attributes of <paramref name="ino"/>.</summary>
    public ImmutableSortedDictionary<string, byte[]> Xattrs(long ino)
        => LongMap.TryGet(Nodes, ino, out var n) ? n.Xattrs ?? Format.XattrTable.Empty : Base.Xattrs(ino);

    public string LinkTarget(long ino)
        => LongMap.TryGet(Nodes, ino, out var n) ? n.Target ?? "" : Base.LinkTarget(ino);

    /// <summary>The inode as a node, materializing a base inode (not stored until the caller stores it).</summary>
    public Node NodeOf(long ino)
    {
        if (LongMap.TryGet(Nodes, ino, out var n))
            return n;
        ref readonly var b = ref Base.Inode(ino);
        var kind = KindOfMode(b.Mode);
        var node = new Node
        {
            Ino = ino,
            Kind = kind,
            Perm = b.Mode & ModeBits.PermMask,
            Uid = b.Uid,
            Gid = b.Gid,
            MtimeNs = b.MtimeNs,
            CtimeNs = b.ChangeTimeNs,
            AtimeNs = b.AccessTimeNs,
            Rdev = IsDevice(kind) ? b.DataOffset : 0,
            Links = kind == NodeKind.Directory ? 1 : b.LinkCount,
            Xattrs = Base.Xattrs(ino) is { Count: > 0 } x ? x : null,
            Size = b.ByteSize,
            ParentIno = b.ParentIno,
        };
        switch (kind)
        {
            case NodeKind.File when (b.Flags & BaseInode.FlagSparse) != 0:
                return node with { Extents = Base.SparseExtents(ino) };
            case NodeKind.File:
                return node with { Extents = b.ByteSize == 0 ? null : LongMap.Single(0L, new Extent(b.ByteSize, b.DataOffset)) };
            case NodeKind.Symlink:
                return node with { Target = Base.LinkTarget(ino) };
            default:
                var builder = ImmutableSortedDictionary.CreateBuilder<string, long>(StringComparer.Ordinal);
                foreach (var (name, child) in Base.Entries(ino))
                    builder[name] = child;
                return node with { Entries = builder.ToImmutable(), Subdirs = (int)b.Subdirs };
        }
    }
}
