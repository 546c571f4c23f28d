using Daxfs.Branching.Media;
using Microsoft.Win32.SafeHandles;

namespace Daxfs.Branching;

/// <summary>
/// A region built for a path but not yet there (see <see cref="Store.CreateUnpublished"/>): open it at
/// <see cref="BuildingPath"/>, fill it, close it, then <see cref="Publish"/> puts it at <see cref="Path"/> in one
/// rename. Disposed before that, the file is deleted: nothing half-filled ever shows under the region's name.
/// </summary>
public sealed class UnpublishedRegion : IDisposable
{
    private readonly SafeFileHandle _hold;
    private readonly bool _overwrite;
    private bool _published;

    internal UnpublishedRegion(string building, string path, bool overwrite, SafeFileHandle hold)
    {
        BuildingPath = building;
        Path = path;
        _overwrite = overwrite;
        _hold = hold;
    }

    /// <summary>Where the region is while it is filled (a hidden name beside <see cref="Path"/>).</summary>
    public string BuildingPath { get; }

    /// <summary>Where <see cref="Publish"/> puts it.</summary>
    public string Path { get; }

    /// <summary>
    /// Renames the region into place (refusing a file that appeared at <see cref="Path"/> meanwhile, unless the build
    /// was asked to overwrite, and a link there always). Close every store on it first.
    /// </summary>
    public void Publish()
    {
        ObjectDisposedException.ThrowIf(_hold.IsClosed, this);
        Region.Replace(BuildingPath, Path, _overwrite); // still held: no other build takes it for abandoned meanwhile
        _published = true;
    }

    /// <summary>Lets go of the region; one not published is deleted.</summary>
    public void Dispose()
    {
        if (_hold.IsClosed) return;
        if (!_published)
        {
            try { File.Delete(BuildingPath); } catch (IOException) { }
        }
        _hold.Dispose();
    }
}
