using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
using Microsoft.Win32.SafeHandles;

namespace Daxfs.Branching.Media;

/// <summary>What kind of file backs a region.</summary>
public enum RegionKind
{
    /// <summary>A file on a memory file system (tmpfs, <c>/dev/shm</c>): survives a process crash, not a reboot.</summary>
    Memory,
    /// <summary>A regular file on a disk file system: durable once flushed.</summary>
    File,
    /// <summary>A <c>/dev/daxX.Y</c> character device: mapped only, never read or written with syscalls.</summary>
    DaxDevice,
}

/// <summary>
/// One file mapped shared and read-write into this process. Every access goes through a bounds check
/// against the mapped length, so a bad offset read from the region becomes a <see cref="CorruptionException"/>
/// and never a stray pointer.
/// </summary>
/// <remarks>
/// SAFETY: pointers and spans handed out by this type are valid until <see cref="Dispose"/>; the owner
/// (<see cref="Store"/>) keeps the mapping alive while any read lease is held.
/// </remarks>
internal sealed unsafe class Region : IDisposable
{
    private readonly SafeFileHandle _file;
    private byte* _base;
    private long _length;
    private long _mapped;

    private Region(SafeFileHandle file, byte* @base, long length, RegionKind kind, string path, bool snapshot = false)
    {
        _file = file;
        _base = @base;
        _length = length;
        _mapped = length;
        Kind = kind;
        Path = path;
        IsSnapshot = snapshot;
    }

    /// <summary>
    /// True for a private, copy-on-write mapping of a file opened read-only (<see cref="OpenSnapshot"/>): what
    /// this process stores lands in its own copies of the pages, never in the file.
    /// </summary>
    public bool IsSnapshot { get; }

    public string Path { get; }

    public RegionKind Kind { get; }

    /// <summary>Bytes of the region: every access is checked against it. It only grows (<see cref="Grow"/>).</summary>
    public long Length => Volatile.Read(ref _length);

    /// <summary>Bytes of address space mapped: the most the region can grow to without mapping again.</summary>
    public long Mapped => _mapped;

    /// <summary>Bytes the file holds now.</summary>
    public long FileLength => Kind == RegionKind.DaxDevice ? _mapped : RandomAccess.GetLength(_file);

    /// <summary>
    /// Maps <paramref name="length"/> bytes of address space for the file (more than it holds, so the region can
    /// grow in place: pages past the file's end are never touched). Only while nothing handed out points into the
    /// mapping: when the store is being opened. The region's <see cref="Length"/> becomes <paramref name="logical"/>.
    /// </summary>
    public void MapFor(long length, long logical)
    {
        if (logical > length)
            throw new ArgumentOutOfRangeException(nameof(logical));
        if (length != _mapped && Kind != RegionKind.DaxDevice)
        {
            int prot = Libc.ProtRead | Libc.ProtWrite, flags = IsSnapshot ? Libc.MapPrivate | Libc.MapNoReserve : Libc.MapShared;
            nint p = Libc.Mmap(0, (nuint)length, prot, flags, Fd, 0);
            if (p == Libc.MapFailed)
                throw new IOException($"{Path}: mmap of {length} bytes failed (errno {Marshal.GetLastPInvokeError()})");
            Libc.Munmap((nint)_base, (nuint)_mapped);
            _base = (byte*)p;
            _mapped = length;
        }
        Volatile.Write(ref _length, logical);
    }

    /// <summary>Makes the region <paramref name="length"/> bytes long (the file already holds them, inside the mapping).</summary>
    public void Grow(long length)
    {
        if (length > _mapped)
            throw new InvalidOperationException($"{Path}: cannot grow to {length} bytes past the {_mapped} mapped");
        if (length > Volatile.Read(ref _length))
            Volatile.Write(ref _length, length);
    }

    /// <summary>
    /// Extends the file to <paramref name="length"/> bytes with its backing store reserved (memory on tmpfs,
    /// blocks on a disk; skipped with <paramref name="sparse"/>). A file system that cannot back it is refused
    /// up front with what it has free, and the file is left as it was.
    /// </summary>
    public void ExtendFile(long length, bool sparse)
    {
        long old = RandomAccess.GetLength(_file);
        if (length <= old)
            return;
        try
        {
            if (!sparse)
            {
                int error = Libc.PosixFallocate(Fd, old, length - old);
                if (error != 0 && error != Libc.EOpNotSupp)
                    throw NoRoom(Path, length - old, error);
            }
            if (RandomAccess.GetLength(_file) < length)
                RandomAccess.SetLength(_file, length);
        }
        catch
        {
            try { RandomAccess.SetLength(_file, old); } catch (IOException) { }
            throw;
        }
    }

    private static IOException NoRoom(string path, long bytes, int error)
    {
        string dir = System.IO.Path.GetDirectoryName(System.IO.Path.GetFullPath(path)) ?? "/";
        if (error is Libc.ENoSpc or Libc.EFBig)
        {
            long free = Libc.FreeBytes(dir);
            return new IOException($"{path}: the file system holding {dir} cannot back {bytes} more bytes ({bytes >> 20} MiB)"
                + (free >= 0 ? $"; it has {free} bytes ({free >> 20} MiB) free" : ""));
        }
        return new IOException($"{path}: cannot reserve {bytes} bytes for the region (errno {error})");
    }

    /// <summary>
    /// Tries to take an exclusive open-file-description lock on byte <paramref name="offset"/> of the region
    /// file. The lock belongs to this open of the file: another open (another store, in this process or any
    /// other, in any namespace of this kernel) cannot take it, and the kernel drops it when the file is closed,
    /// which a process that exits or is killed always does.
    /// </summary>
    /// <returns>False when another open holds a lock on that byte.</returns>
    public bool TryLock(long offset) => SetLock(offset, Libc.FWrLck);

    /// <summary>
    /// Tries to take a shared open-file-description lock on byte <paramref name="offset"/> (a file opened
    /// read-only can take only this kind): it excludes exclusive lockers, not other shared ones.
    /// </summary>
    public bool TryLockShared(long offset) => SetLock(offset, Libc.FRdLck);

    /// <summary>Gives up this open's lock on byte <paramref name="offset"/>.</summary>
    public void Unlock(long offset) => SetLock(offset, Libc.FUnLck);

    private bool SetLock(long offset, short type)
    {
        var lk = new Libc.Flock { Type = type, Whence = Libc.SeekSet, Start = offset, Length = 1 };
        while (Libc.Fcntl(Fd, Libc.FOfdSetLk, ref lk) != 0)
        {
            int errno = Marshal.GetLastPInvokeError();
            if (errno is Libc.EAgain or Libc.EAcces)
                return false;
            if (errno != Libc.EIntr)
                throw new IOException($"{Path}: cannot {(type == Libc.FUnLck ? "release" : "take")} the file lock at byte {offset} (errno {errno}); the region's file system must support open-file-description locks");
        }
        return true;
    }

    private int Fd
    {
        get
        {
            if (_base == null)
                ThrowDisposed();
            return (int)_file.DangerousGetHandle();
        }
    }

    public byte* Base
    {
        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        get => _base;
    }

    /// <summary>Creates (or replaces) a region file of <paramref name="capacity"/> bytes and maps it.</summary>
    public static Region Create(string path, long capacity, bool overwrite, bool reserve = true)
    {
        var kind = KindOf(path);
        if (kind == RegionKind.DaxDevice)
        {
            long size = DaxDeviceSize(path);
            if (capacity > size)
                throw new ArgumentOutOfRangeException(nameof(capacity), $"{path}: capacity {capacity} exceeds the device size {size}");
            return OpenExisting(path, snapshot: false);
        }
        RefuseSymlink(path);
        string? dir = System.IO.Path.GetDirectoryName(System.IO.Path.GetFullPath(path));
        if (dir is not null && !Directory.Exists(dir))
            throw new DirectoryNotFoundException($"{path}: directory {dir} does not exist");
        // Never through a symbolic link (one planted between the check above and here fails the open), and never
        // over an existing file unless asked. Truncated to zero first so stale bytes of an old region never
        // survive into the new one. A region holds every file of its tree: only its owner may read it (0600),
        // whatever the umask, and a replaced one too.
        const int privateMode = 0x180; // 0600
        var handle = Libc.OpenNoFollow(path, Libc.ORdWr | Libc.OCreat | (overwrite ? 0 : Libc.OExcl), privateMode, out int errno)
            ?? throw OpenError(path, errno, creating: true);
        try
        {
            File.SetUnixFileMode(handle, UnixFileMode.UserRead | UnixFileMode.UserWrite);
            RandomAccess.SetLength(handle, 0);
            RandomAccess.SetLength(handle, capacity);
            if (reserve)
                Reserve(handle, path, capacity);
            return Map(handle, path, capacity, kind, snapshot: false);
        }
        catch
        {
            handle.Dispose();
            if (new FileInfo(path).LinkTarget is null)
                File.Delete(path); // nothing half-made is left behind (a replaced region was already emptied above)
            throw;
        }
    }

    /// <summary>
    /// Reserves the file's whole backing store now (memory on tmpfs, blocks on a disk), so a later store into
    /// the mapping can never find none: a page the file system cannot supply would kill the process with SIGBUS.
    /// Refused with a message that says how much there is.
    /// </summary>
    private static void Reserve(SafeFileHandle handle, string path, long capacity)
    {
        int error = Libc.PosixFallocate((int)handle.DangerousGetHandle(), 0, capacity);
        if (error == 0)
            return;
        string dir = System.IO.Path.GetDirectoryName(System.IO.Path.GetFullPath(path)) ?? "/";
        if (error is Libc.ENoSpc or Libc.EFBig)
        {
            long free = Libc.FreeBytes(dir);
            throw new IOException($"{path}: the file system holding {dir} cannot back a region of {capacity} bytes ({capacity >> 20} MiB)"
                + (free >= 0 ? $"; it has {free} bytes ({free >> 20} MiB) free" : "") + ": choose a smaller capacity (mkfs --capacity) or another place");
        }
        if (error != Libc.EOpNotSupp)
            throw new IOException($"{path}: cannot reserve {capacity} bytes for the region (errno {error})");
        // A file system without fallocate: nothing can be reserved; it stays a sparse file.
    }

    /// <summary>Opens and maps an existing region file; its whole length is mapped.</summary>
    public static Region Open(string path) => OpenExisting(path, snapshot: false);

    private static Region OpenExisting(string path, bool snapshot)
    {
        var kind = KindOf(path);
        if (snapshot && kind == RegionKind.DaxDevice)
            throw new IOException($"{path}: a device region cannot be mapped privately, so it cannot be checked read-only yet (verify and repair need a regular or tmpfs file)");
        RefuseSymlink(path);
        var handle = Libc.OpenNoFollow(path, snapshot ? Libc.ORdOnly : Libc.ORdWr, 0, out int errno) ?? throw OpenError(path, errno, creating: false);
        try
        {
            long size = kind == RegionKind.DaxDevice ? DaxDeviceSize(path) : RandomAccess.GetLength(handle);
            if (size <= 0)
                throw new NotARegionException(path);
            return Map(handle, path, size, kind, snapshot);
        }
        catch
        {
            handle.Dispose();
            throw;
        }
    }

    /// <summary>The byte of a region file being built that its builder holds locked (open-file-description lock) until it is done.</summary>
    public const long BuildingLockByte = 0;

    /// <summary>
    /// Removes the files <c>.NAME.building-…</c> beside <paramref name="path"/> that builds of a region at that path
    /// left when they were killed: a builder holds a lock on its file's first byte until it is done, and the kernel
    /// drops the lock when the builder dies, so a file whose lock can be taken has no builder any more. (On tmpfs such
    /// a file holds its whole capacity in memory.) Returns how many were removed.
    /// </summary>
    public static int RemoveAbandonedBuilds(string path)
    {
        string full = System.IO.Path.GetFullPath(path);
        string dir = System.IO.Path.GetDirectoryName(full) ?? "/";
        string prefix = $".{System.IO.Path.GetFileName(full)}.building-";
        int removed = 0;
        IEnumerable<string> candidates;
        try { candidates = Directory.EnumerateFiles(dir, prefix + "*").ToList(); }
        catch (IOException) { return 0; }
        catch (UnauthorizedAccessException) { return 0; }
        foreach (var candidate in candidates)
        {
            // Only regular files (never a link, a FIFO or a device someone named so), opened without blocking.
            try
            {
                if ((UnixStatReader.Read(candidate).Mode & 0xF000) != 0x8000)
                    continue;
            }
            catch (IOException) { continue; }
            using var handle = Libc.OpenNoFollow(candidate, Libc.ORdWr | Libc.ONonBlock, 0, out _);
            if (handle is null)
                continue;
            var lk = new Libc.Flock { Type = Libc.FWrLck, Whence = Libc.SeekSet, Start = BuildingLockByte, Length = 1 };
            if (Libc.Fcntl((int)handle.DangerousGetHandle(), Libc.FOfdSetLk, ref lk) != 0)
                continue; // its builder is alive
            try { File.Delete(candidate); removed++; } catch (IOException) { }
        }
        return removed;
    }

    /// <summary>
    /// Opens <paramref name="building"/> (never through a link) and takes its build lock, so no later build of the same
    /// path removes it as abandoned; null when the file is gone or someone else holds the lock. The lock lasts as long
    /// as the handle (and the process) does.
    /// </summary>
    public static Microsoft.Win32.SafeHandles.SafeFileHandle? HoldBuilding(string building)
    {
        var handle = Libc.OpenNoFollow(building, Libc.ORdWr | Libc.ONonBlock, 0, out _);
        if (handle is null)
            return null;
        var lk = new Libc.Flock { Type = Libc.FWrLck, Whence = Libc.SeekSet, Start = BuildingLockByte, Length = 1 };
        if (Libc.Fcntl((int)handle.DangerousGetHandle(), Libc.FOfdSetLk, ref lk) != 0)
        {
            handle.Dispose();
            return null;
        }
        return handle;
    }

    /// <summary>Refuses to create a region where a file already is (without overwrite), naming a link as a link.</summary>
    public static void RefuseExisting(string path)
    {
        RefuseSymlink(path);
        throw new IOException($"{path}: region file already exists (pass overwrite, or --force, to replace it)");
    }

    /// <summary>
    /// Moves a region built under <paramref name="building"/> to <paramref name="path"/> in one rename (the old file,
    /// if any, stays whole for whoever has it mapped). Refuses a link at <paramref name="path"/>, and an existing
    /// file there without <paramref name="overwrite"/>.
    /// </summary>
    public static void Replace(string building, string path, bool overwrite)
    {
        RefuseSymlink(path);
        if (!overwrite && File.Exists(path))
            RefuseExisting(path);
        File.Move(building, path, overwrite);
    }

    /// <summary>A region path that is a symbolic link is refused, dangling or not: the tool follows no link it did not make.</summary>
    private static void RefuseSymlink(string path)
    {
        var info = new FileInfo(path);
        if (info.LinkTarget is { } target)
            throw new IOException($"{path}: is a symbolic link (to {target}); a region is never opened or created through a link: give its real path");
    }

    private static Exception OpenError(string path, int errno, bool creating) => errno switch
    {
        Libc.ENoEnt => creating ? new DirectoryNotFoundException($"{path}: its directory does not exist") : new FileNotFoundException($"{path}: region file not found", path),
        Libc.EExist => new IOException($"{path}: region file already exists (pass overwrite, or --force, to replace it)"),
        Libc.ELoop => new IOException($"{path}: is a symbolic link; a region is never opened or created through a link: give its real path"),
        Libc.EAcces => new UnauthorizedAccessException($"{path}: permission denied"),
        _ => new IOException($"{path}: cannot open the region file (errno {errno})"),
    };

    /// <summary>
    /// Opens a region file read-only and maps it privately (copy-on-write): the file is never written through
    /// this mapping. Pages this process has not stored to still show other processes' later writes, so a
    /// reader that needs a stable picture holds the region lock shared (<see cref="TryLockShared"/>).
    /// </summary>
    public static Region OpenSnapshot(string path) => OpenExisting(path, snapshot: true);

    private static Region Map(SafeFileHandle handle, string path, long length, RegionKind kind, bool snapshot)
    {
        // A snapshot's private pages are copied only where it stores (what opening derives): reserve no memory
        // for the rest, or a region larger than memory could not be checked.
        int prot = Libc.ProtRead | Libc.ProtWrite, flags = snapshot ? Libc.MapPrivate | Libc.MapNoReserve : Libc.MapShared;
        nint p = Libc.Mmap(0, (nuint)length, prot, flags, (int)handle.DangerousGetHandle(), 0);
        if (p == Libc.MapFailed)
            throw new IOException($"{path}: mmap of {length} bytes failed (errno {Marshal.GetLastPInvokeError()})");
        return new Region(handle, (byte*)p, length, kind, path, snapshot);
    }

    /// <summary>
    /// What backs <paramref name="path"/> (or, before it exists, its directory), by what the memory is rather
    /// than by its name: a character device is a DAX device, a file on tmpfs, ramfs or hugetlbfs is memory
    /// (mounted anywhere), anything else is a disk file.
    /// </summary>
    internal static RegionKind KindOf(string path)
    {
        string full = System.IO.Path.GetFullPath(path);
        if (full.StartsWith("/dev/dax", StringComparison.Ordinal) || IsCharacterDevice(full))
            return RegionKind.DaxDevice;
        string probe = File.Exists(full) ? full : System.IO.Path.GetDirectoryName(full) ?? full;
        return Libc.FileSystemType(probe) is Libc.TmpfsMagic or Libc.RamfsMagic or Libc.HugetlbfsMagic
            ? RegionKind.Memory
            : RegionKind.File;
    }

    private static bool IsCharacterDevice(string path)
    {
        try
        {
            const uint typeMask = 0xF000, characterDevice = 0x2000;
            return File.Exists(path) && (UnixStatReader.Read(path).Mode & typeMask) == characterDevice;
        }
        catch (IOException)
        {
            return false;
        }
    }

    internal static long DaxDeviceSize(string path)
    {
        // A device DAX node has no length for stat; the kernel publishes it in sysfs.
        string name = System.IO.Path.GetFileName(path);
        string sys = $"/sys/bus/dax/devices/{name}/size";
        if (!File.Exists(sys))
            throw new IOException($"{path}: cannot find the device size at {sys}");
        return long.Parse(File.ReadAllText(sys).Trim(), System.Globalization.CultureInfo.InvariantCulture);
    }

    /// <summary>
    /// Throws <see cref="CorruptionException"/> when the file behind the mapping is now shorter than the mapping
    /// (someone truncated it while it was open): touching a mapped page past the file's end would raise SIGBUS
    /// and kill the process, so callers check here first, wherever a change or a served request begins. A DAX
    /// device cannot shrink.
    /// </summary>
    public void CheckBacking()
    {
        if (_base == null)
            ThrowDisposed();
        if (Kind == RegionKind.DaxDevice)
            return;
        long size = RandomAccess.GetLength(_file);
        long length = Volatile.Read(ref _length);
        if (size < length)
            ThrowHelper.Corrupt("region file", size, $"{Path} was truncated to {size} bytes while open (the region holds {length} bytes); what lay past byte {size} is gone");
    }

    /// <summary>Checks that [offset, offset+length) lies inside the mapping.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public void Check(long offset, long length)
    {
        if (_base == null)
            ThrowDisposed();
        long regionLength = Volatile.Read(ref _length);
        if ((ulong)offset > (ulong)regionLength || (ulong)length > (ulong)(regionLength - offset))
            ThrowHelper.OutOfRegion(offset, length, regionLength);
    }

    [System.Diagnostics.CodeAnalysis.DoesNotReturn]
    private void ThrowDisposed() => throw new ObjectDisposedException(nameof(Region), $"{Path}: the region was closed");

    /// <summary>True when [offset, offset+length) lies inside the mapping.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public bool Contains(long offset, long length)
        => (ulong)offset <= (ulong)Length && (ulong)length <= (ulong)(Length - offset);

    /// <summary>A reference to an unmanaged struct at <paramref name="offset"/>, bounds-checked.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public ref T At<T>(long offset) where T : unmanaged
    {
        Check(offset, sizeof(T));
        return ref Unsafe.AsRef<T>(_base + offset);
    }

    /// <summary>A 64-bit word shared between processes; must be 8-byte aligned.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public ref long Word(long offset)
    {
        if ((offset & 7) != 0)
            ThrowHelper.Corrupt("shared word", offset, "not 8-byte aligned");
        return ref At<long>(offset);
    }

    /// <summary>A read-only span over [offset, offset+length), bounds-checked.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public ReadOnlySpan<byte> Span(long offset, int length)
    {
        Check(offset, length);
        return new ReadOnlySpan<byte>(_base + offset, length);
    }

    /// <summary>A writable span over [offset, offset+length), bounds-checked.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public Span<byte> WritableSpan(long offset, int length)
    {
        Check(offset, length);
        return new Span<byte>(_base + offset, length);
    }

    /// <summary>Writes dirty pages of [offset, offset+length) back to the file (no-op on memory regions).</summary>
    public void Flush(long offset, long length)
    {
        if (Kind == RegionKind.Memory || IsSnapshot)
            return;
        Check(offset, length);
        long start = offset & ~4095L;
        long end = offset + length;
        if (Libc.Msync((nint)(_base + start), (nuint)(end - start), Libc.MsSync) != 0)
            throw new IOException($"{Path}: msync failed (errno {Marshal.GetLastPInvokeError()})");
    }

    public void Dispose()
    {
        if (_base != null)
        {
            Libc.Munmap((nint)_base, (nuint)_mapped);
            _base = null;
            _file.Dispose();
        }
    }
}
