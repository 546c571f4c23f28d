using Daxfs.Branching.Branching;
using Daxfs.Branching.Coordination;
using Daxfs.Branching.Format;
using Daxfs.Branching.Index;

namespace Daxfs.Branching;

/// <summary>
/// A handle on one branch: its files and its branch operations. Handles are cheap; several may refer to
/// the same branch. Once the branch is committed, aborted, discarded or invalidated, every call fails with
/// <see cref="BranchInvalidatedException"/>.
/// </summary>
/// <remarks>
/// Paths are absolute or relative to the branch root, '/'-separated; "." is ignored and ".." refused.
/// Symbolic links are stored and read, never followed by this API.
/// </remarks>
public sealed partial class Branch
{
    internal Branch(Store store, BranchState state)
    {
        Store = store;
        State = state;
    }

    internal Store Store { get; }

    internal BranchState State { get; }

    /// <summary>The branch's name.</summary>
    public string Name => State.Name;

    /// <summary>True for main.</summary>
    public bool IsMain => State.IsMain;

    /// <summary>
    /// The version of main this branch's chain started from: the version main was at when the first branch of the
    /// chain was forked, or the past version it was forked from. For main, its current version; for a view of a past
    /// version, that version.
    /// </summary>
    public long BaseVersion => State.IsMain ? Store.CurrentVersion : State.BaseVersion;

    /// <summary>Forks between this branch and main.</summary>
    public int Depth => State.Depth;

    /// <summary>The parent branch (null for main).</summary>
    public Branch? Parent => State.Parent is null ? null : new Branch(Store, State.Parent);

    /// <summary>True while the branch can be used.</summary>
    public bool IsLive
    {
        get
        {
            try { Store.EnsureCurrent(); Store.CheckLive(State); return true; }
            catch (BranchInvalidatedException) { return false; }
        }
    }

    /// <summary>A summary of the branch now.</summary>
    public BranchInfo Info
    {
        get { Store.ThrowIfUnusable(); Store.EnsureCurrent(); Store.CheckLive(State); return Store.InfoOf(State); }
    }

    /// <summary>Forks a child of this branch. See <see cref="Store.Fork"/>.</summary>
    public Branch Fork(string name, ForkOptions? options = null) => Store.Fork(this, name, options);

    /// <summary>Commits this branch's chain into main. See <see cref="Store.Commit"/>.</summary>
    public VersionInfo Commit(string message = "") => Store.Commit(this, message);

    /// <summary>Commits this branch into its parent. See <see cref="Store.CommitToParent"/>.</summary>
    public VersionInfo? CommitToParent(string message = "") => Store.CommitToParent(this, message);

    /// <summary>Discards this branch's chain back to main. See <see cref="Store.Abort"/>.</summary>
    public void Abort() => Store.Abort(this);

    /// <summary>Discards this leaf branch alone. See <see cref="Store.Discard"/>.</summary>
    public void Discard() => Store.Discard(this);

    /// <inheritdoc />
    public override string ToString() => Name;

    // ------------------------------------------------------------------ path resolution

    private View ReadView()
    {
        Store.EnsureCurrent(); // also refuses a closed or poisoned store
        Store.CheckLive(State);
        return Store.ViewOf(State);
    }

    internal static long Resolve(View v, string path)
    {
        long ino = View.RootIno;
        foreach (var part in Names.Split(path))
        {
            if (v.KindOf(ino) != NodeKind.Directory)
                ThrowHelper.IO(FileSystemError.NotADirectory, path);
            ino = v.Lookup(ino, part);
            if (ino == 0)
                ThrowHelper.IO(FileSystemError.NotFound, path);
        }
        return ino;
    }

    private static (long Parent, string Name) ResolveParent(View v, string path)
    {
        var parts = Names.Split(path);
        if (parts.Length == 0)
            ThrowHelper.IO(FileSystemError.InvalidArgument, path, "the root has no name");
        long ino = View.RootIno;
        for (int i = 0; i < parts.Length - 1; i++)
        {
            ino = v.Lookup(ino, parts[i]);
            if (ino == 0)
                ThrowHelper.IO(FileSystemError.NotFound, path);
            if (v.KindOf(ino) != NodeKind.Directory)
                ThrowHelper.IO(FileSystemError.NotADirectory, path);
        }
        Names.Validate(parts[^1], path);
        return (ino, parts[^1]);
    }

    internal static ReadResult Clip(Store store, in FileData d, long offset, long length, string path)
    {
        if (offset < 0)
            ThrowHelper.IO(FileSystemError.InvalidArgument, path, $"negative offset {offset}");
        if (length < -1)
            ThrowHelper.IO(FileSystemError.InvalidArgument, path, $"negative length {length}");
        long start = Math.Min(offset, d.Size);
        long available = d.Size - start;
        long n = length == -1 ? available : Math.Min(length, available);
        return new ReadResult(store.Region, in d, start, n);
    }

    // ------------------------------------------------------------------ reads

    /// <summary>True when <paramref name="path"/> exists.</summary>
    public bool Exists(string path)
    {
        var v = ReadView();
        try { Resolve(v, path); return true; }
        catch (DaxfsIOException) { return false; }
    }

    /// <summary>Attributes of <paramref name="path"/> (the link itself for a symlink).</summary>
    public FileStat Stat(string path)
    {
        var v = ReadView();
        var info = v.Info(Resolve(v, path));
        return FileStat.From(path, in info);
    }

    /// <summary>Attributes of <paramref name="path"/>, or false when it does not exist.</summary>
    public bool TryStat(string path, out FileStat stat)
    {
        var v = ReadView();
        try
        {
            var info = v.Info(Resolve(v, path));
            stat = FileStat.From(path, in info);
            return true;
        }
        catch (DaxfsIOException)
        {
            stat = default;
            return false;
        }
    }

    /// <summary>The entries of directory <paramref name="path"/>, sorted by name (ordinal).</summary>
    public IReadOnlyList<DirectoryEntry> List(string path = "/")
    {
        var v = ReadView();
        long dir = Resolve(v, path);
        if (v.KindOf(dir) != NodeKind.Directory)
            ThrowHelper.IO(FileSystemError.NotADirectory, path);
        var list = new List<DirectoryEntry>();
        foreach (var (name, ino) in v.Entries(dir))
            list.Add(new DirectoryEntry(name, ino, v.KindOf(ino)));
        list.Sort((a, b) => string.CompareOrdinal(a.Name, b.Name));
        return list;
    }

    /// <summary>Opens regular file <paramref name="path"/> for repeated zero-copy reads.</summary>
    public FileHandle OpenFile(string path)
    {
        var v = ReadView();
        long ino = Resolve(v, path);
        RequireFile(v, ino, path);
        return new FileHandle(Store, State, ino, path);
    }

    private static void RequireFile(View v, long ino, string path)
    {
        var kind = v.KindOf(ino);
        if (kind == NodeKind.Directory)
            ThrowHelper.IO(FileSystemError.IsADirectory, path);
        if (kind != NodeKind.File)
            ThrowHelper.IO(FileSystemError.InvalidArgument, path, "not a regular file");
    }

    /// <summary>
    /// Resolves a byte range of <paramref name="path"/> to spans over the mapping (clipped to the file's size;
    /// length -1 means to the end). Nothing is copied.
    /// </summary>
    /// <remarks>SAFETY: see <see cref="ReadResult"/> for how long the spans stay valid.</remarks>
    public ReadResult Read(string path, long offset = 0, long length = -1)
    {
        var v = ReadView();
        long ino = Resolve(v, path);
        RequireFile(v, ino, path);
        var d = FileData.Of(v, ino);
        return Clip(Store, in d, offset, length, path);
    }

    /// <summary>
    /// Copies bytes of <paramref name="path"/> from <paramref name="offset"/> into <paramref name="destination"/>; returns the count.
    /// The copy is consistent: if the branch ends meanwhile (by any process), the call fails instead of copying reused bytes.
    /// </summary>
    public int Read(string path, long offset, Span<byte> destination)
    {
        for (int attempt = 0; attempt < Store.OptimisticCopies; attempt++)
        {
            long stamp = Store.ChangeStamp();
            int n = Read(path, offset, destination.Length).CopyTo(destination);
            if (Store.UnchangedSince(stamp))
                return n;
        }
        using var lease = Store.BeginRead(); // busy region: hold the bytes in place instead of retrying
        return Read(path, offset, destination.Length).CopyTo(destination);
    }

    /// <summary>The whole content of <paramref name="path"/> (a consistent copy, as <see cref="Read(string, long, Span{byte})"/>).</summary>
    public byte[] ReadAllBytes(string path)
    {
        for (int attempt = 0; attempt < Store.OptimisticCopies; attempt++)
        {
            long stamp = Store.ChangeStamp();
            var bytes = Read(path).ToArray();
            if (Store.UnchangedSince(stamp))
                return bytes;
        }
        using var lease = Store.BeginRead();
        return Read(path).ToArray();
    }

    /// <summary>The target of symlink <paramref name="path"/>.</summary>
    public string ReadLink(string path)
    {
        var v = ReadView();
        long ino = Resolve(v, path);
        if (v.KindOf(ino) != NodeKind.Symlink)
            ThrowHelper.IO(FileSystemError.InvalidArgument, path, "not a symbolic link");
        return v.LinkTarget(ino);
    }
}
