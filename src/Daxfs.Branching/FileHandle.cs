using Daxfs.Branching.Branching;
using Daxfs.Branching.Coordination;
using Daxfs.Branching.Index;

namespace Daxfs.Branching;

/// <summary>
/// A regular file of a branch, resolved once, for repeated reads without path lookups. Each read sees the
/// branch's current contents; reads allocate nothing.
/// </summary>
public sealed class FileHandle
{
    private readonly Store _store;
    private readonly BranchState _state;
    private View? _view;
    private FileData _data;

    internal FileHandle(Store store, BranchState state, long ino, string path)
    {
        _store = store;
        _state = state;
        Inode = ino;
        Path = path;
    }

    /// <summary>The file's inode number.</summary>
    public long Inode { get; }

    /// <summary>The path it was opened by.</summary>
    public string Path { get; }

    /// <summary>The file's size now.</summary>
    public long Length => Current().Size;

    private FileData Current()
    {
        _store.EnsureCurrent(); // also refuses a closed or poisoned store
        _store.CheckLive(_state);
        var v = _store.ViewOf(_state);
        if (!ReferenceEquals(v, _view))
        {
            if (!v.Exists(Inode))
                ThrowHelper.IO(FileSystemError.NotFound, Path, "the file was removed");
            _data = FileData.Of(v, Inode);
            _view = v;
        }
        return _data;
    }

    /// <summary>
    /// Resolves [<paramref name="offset"/>, +<paramref name="length"/>) to spans over the mapping (clipped to the
    /// file's size; -1 means to the end).
    /// </summary>
    /// <remarks>SAFETY: see <see cref="ReadResult"/> for how long the spans stay valid.</remarks>
    public ReadResult Read(long offset = 0, long length = -1)
    {
        var d = Current();
        return Branch.Clip(_store, in d, offset, length, Path);
    }

    /// <summary>Copies bytes from <paramref name="offset"/> into <paramref name="destination"/>; returns the count (0 at the end).</summary>
    /// <remarks>The copy is consistent: if the branch ends meanwhile (by any process), the call fails instead of copying reused bytes.</remarks>
    public int Read(long offset, Span<byte> destination)
    {
        for (int attempt = 0; attempt < Store.OptimisticCopies; attempt++)
        {
            long stamp = _store.ChangeStamp();
            int n = Read(offset, destination.Length).CopyTo(destination);
            if (_store.UnchangedSince(stamp))
                return n;
        }
        using var lease = _store.BeginRead();
        return Read(offset, destination.Length).CopyTo(destination);
    }
}
