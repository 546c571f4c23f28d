namespace Daxfs.Branching;

/// <summary>Base of every error the store raises for a condition of the region or of a branch.</summary>
/// <remarks>Misuse of the API (null arguments, disposed objects) raises the standard .NET exceptions instead.</remarks>
public class DaxfsException : Exception
{
    /// <summary>Creates the exception with a message.</summary>
    public DaxfsException(string message) : base(message) { }

    /// <summary>Creates the exception with a message and the exception that caused it.</summary>
    public DaxfsException(string message, Exception? inner) : base(message, inner) { }
}

/// <summary>A structure read from the region failed validation: a checksum, a bound, a count, a name or a link.</summary>
public sealed class CorruptionException : DaxfsException
{
    /// <summary>Creates the exception naming the structure and its offset in the region.</summary>
    public CorruptionException(string structure, long offset, string detail)
        : this(structure, offset, detail, null)
    {
    }

    /// <summary>Creates the exception naming the structure, its offset, and what depends on it and what is still intact.</summary>
    public CorruptionException(string structure, long offset, string detail, string? consequences)
        : base($"region corrupt: {structure} at offset {offset} (0x{offset:X}): {detail}{(consequences is null ? "" : "; " + consequences)}")
    {
        Structure = structure;
        Offset = offset;
        Detail = detail;
        Consequences = consequences;
    }

    /// <summary>What depends on the damaged structure and what is still intact (for example "versions 2 to 3 depend on it; versions 0 to 1 are intact"), when known.</summary>
    public string? Consequences { get; }

    /// <summary>The name of the structure that failed validation (for example <c>record</c> or <c>base inode 12</c>).</summary>
    public string Structure { get; }

    /// <summary>The byte offset in the region where the structure lies.</summary>
    public long Offset { get; }

    /// <summary>What was wrong.</summary>
    public string Detail { get; }
}

/// <summary>The file is not a region at all: it holds neither a region's superblock nor its control block.</summary>
public sealed class NotARegionException : DaxfsException
{
    /// <summary>Creates the exception.</summary>
    public NotARegionException(string path)
        : base($"{path}: not a daxfs region (no region header at its start; make one with daxfs mkfs)") => Path = path;

    /// <summary>The file.</summary>
    public string Path { get; }
}

/// <summary>The region was written by a format version this library does not read.</summary>
public sealed class FormatVersionException : DaxfsException
{
    /// <summary>Creates the exception.</summary>
    public FormatVersionException(uint found, uint supported)
        : base($"region format version {found} is not supported (this library reads versions {Format.FormatConstants.OldestVersion} to {supported})")
    {
        Found = found;
        Supported = supported;
    }

    /// <summary>The version found in the region.</summary>
    public uint Found { get; }

    /// <summary>The version this library reads and writes.</summary>
    public uint Supported { get; }
}

/// <summary>The store hit a broken invariant and refuses every further call, so nothing is written on top of damage.</summary>
public sealed class StorePoisonedException : DaxfsException
{
    /// <summary>Creates the exception.</summary>
    public StorePoisonedException(Exception cause)
        : base("the store is poisoned by an earlier failure and refuses further calls; reopen the region: " + cause.Message, cause) { }
}

/// <summary>The region has no free space left for the record or block being written. Nothing was changed.</summary>
public sealed class RegionFullException : DaxfsException
{
    /// <summary>Creates the exception.</summary>
    public RegionFullException(long requested, long free)
        : this(requested, free, $"region full: {requested} bytes requested, {free} bytes free in the delta arena; "
            + "give space back with daxfs gc (branch logs), daxfs compact (main's history) or by discarding branches, or grow the region with daxfs resize")
    {
    }

    /// <summary>Creates the exception with its own message.</summary>
    public RegionFullException(long requested, long free, string message)
        : base(message)
    {
        Requested = requested;
        Free = free;
    }

    /// <summary>Bytes the operation asked for.</summary>
    public long Requested { get; }

    /// <summary>Bytes free in the arena when the request failed.</summary>
    public long Free { get; }
}

/// <summary>The region lock could not be taken in time because another live process holds it.</summary>
public sealed class StoreBusyException : DaxfsException
{
    /// <summary>Creates the exception.</summary>
    public StoreBusyException(string message) : base(message) { }
}
