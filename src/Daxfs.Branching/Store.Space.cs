using Daxfs.Branching.Coordination;
using Daxfs.Branching.Format;
using Daxfs.Branching.Media;

namespace Daxfs.Branching;

/// <summary>What a resize did.</summary>
/// <param name="OldCapacity">Bytes of the region before.</param>
/// <param name="NewCapacity">Bytes of the region after.</param>
/// <param name="MaxCapacity">The most the region can grow to (its allocation bitmap covers that much).</param>
/// <param name="ArenaFreeBytes">Bytes of the arena free after.</param>
public readonly record struct ResizeReport(long OldCapacity, long NewCapacity, long MaxCapacity, long ArenaFreeBytes);

/// <summary>A region could not grow: the file system holding it cannot back the growth. Nothing changed.</summary>
public sealed class RegionGrowthException : DaxfsException
{
    /// <summary>Creates the exception.</summary>
    public RegionGrowthException(string message, Exception? inner) : base(message, inner) { }
}

public sealed partial class Store
{
    /// <summary>The most this region can grow to with <see cref="Resize"/> (0: it cannot grow: a device, or a format before version 4).</summary>
    public long MaxCapacity => _super.FormatVersion >= FormatConstants.SpaceVersion && _region.Kind != RegionKind.DaxDevice
        ? Math.Min(_allocator.Coverage, _region.Mapped) : 0;

    /// <summary>
    /// Grows the region in place to <paramref name="capacity"/> bytes (rounded down to a page): the file is
    /// extended with its backing store reserved up front, the new pages join the arena, and one store of the
    /// control block's capacity word publishes the new size. Every process that has the region open, mounts
    /// included, takes the new size at its next read or change; nothing is remapped or restarted.
    /// </summary>
    /// <exception cref="ArgumentOutOfRangeException">Smaller than the region is now, or past <see cref="MaxCapacity"/>.</exception>
    /// <exception cref="NotSupportedException">A device region, or a region of format version 3 or earlier.</exception>
    /// <exception cref="RegionGrowthException">The file system cannot back the growth (the message says how much it has free); nothing changed.</exception>
    public ResizeReport Resize(long capacity)
    {
        if (_region.Kind == RegionKind.DaxDevice)
            throw new NotSupportedException($"{_region.Path}: a device region spans its whole device and cannot grow");
        if (_super.FormatVersion < FormatConstants.SpaceVersion)
            throw new NotSupportedException($"{_region.Path}: format version {_super.FormatVersion} regions cannot grow (version {FormatConstants.SpaceVersion} can): export the tree and make a new region");
        capacity = capacity / FormatConstants.PageSize * FormatConstants.PageSize;
        return Locked(() =>
        {
            long old = _region.Length;
            if (capacity < old)
                throw new ArgumentOutOfRangeException(nameof(capacity), $"{_region.Path}: {capacity} bytes is smaller than the region's {old}; a region only grows");
            if (capacity > MaxCapacity)
                throw new ArgumentOutOfRangeException(nameof(capacity), $"{_region.Path}: {capacity} bytes is more than this region can grow to ({MaxCapacity} bytes, what its allocation bitmap covers; mkfs --max-capacity sets it)");
            if (capacity == old)
                return new ResizeReport(old, old, MaxCapacity, _allocator.FreeBytes);
            string dir = System.IO.Path.GetDirectoryName(System.IO.Path.GetFullPath(_region.Path)) ?? "/";
            long free = Libc.RoomFor(dir, _region.Kind == RegionKind.Memory);
            if (free >= 0 && capacity - old > free)
                throw new RegionGrowthException($"{_region.Path}: growing by {capacity - old} bytes ({(capacity - old) >> 20} MiB) needs more than the {free} bytes ({free >> 20} MiB) free on the file system holding {dir}"
                    + (_region.Kind == RegionKind.Memory ? " (and in memory: a tmpfs file takes memory)" : "") + "; nothing changed", null);
            try
            {
                _region.ExtendFile(capacity, sparse: false);
            }
            catch (IOException e)
            {
                throw new RegionGrowthException(e.Message + "; nothing changed", e); // the file is as it was: not a broken store
            }
            _region.Grow(capacity);
            // The new pages are free; only then does the capacity word say they exist (the commit point).
            _allocator.MarkFree(old, (capacity - old) / FormatConstants.PageSize);
            if (_region.Kind != RegionKind.Memory)
                _region.Flush(_super.BitmapOffset, _super.BitmapLength);
            FaultPoints.Hit("resize.extended");
            Volatile.Write(ref _region.Word(FormatConstants.ControlOffset + ControlBlock.CapacityOffset), capacity);
            if (_region.Kind != RegionKind.Memory)
                _region.Flush(FormatConstants.ControlOffset, FormatConstants.PageSize);
            _allocator.SetBounds(_allocator.ArenaOffset, capacity);
            return new ResizeReport(old, capacity, MaxCapacity, _allocator.FreeBytes);
        });
    }
}
