namespace Daxfs.Branching;

/// <summary>The POSIX-style reason a file operation failed. Each value maps to one errno.</summary>
public enum FileSystemError
{
    /// <summary>EPERM: the operation is not permitted on this entry (for example a file operation on the mount's control entry).</summary>
    NotPermitted = 1,
    /// <summary>ENOENT: a path component does not exist.</summary>
    NotFound = 2,
    /// <summary>EEXIST: the target already exists.</summary>
    Exists = 17,
    /// <summary>EXDEV: the operation would cross from one branch to another (a rename between two branch directories of one mount).</summary>
    CrossDevice = 18,
    /// <summary>ENOTDIR: a path component is not a directory.</summary>
    NotADirectory = 20,
    /// <summary>EISDIR: the operation needs a non-directory.</summary>
    IsADirectory = 21,
    /// <summary>EINVAL: the argument is invalid (for example renaming a directory into itself).</summary>
    InvalidArgument = 22,
    /// <summary>EFBIG: the offset or size is beyond what a file may hold.</summary>
    FileTooLarge = 27,
    /// <summary>EMLINK: the file already has the most names (hard links) it may have.</summary>
    TooManyNames = 31,
    /// <summary>ENAMETOOLONG: a name is longer than 255 bytes of UTF-8.</summary>
    NameTooLong = 36,
    /// <summary>ENOTEMPTY: the directory is not empty.</summary>
    NotEmpty = 39,
    /// <summary>EOPNOTSUPP: the operation is not supported here (for example extended attributes on a format version 2 region).</summary>
    NotSupported = 95,
    /// <summary>ENODATA: no such extended attribute.</summary>
    NoData = 61,
    /// <summary>ELOOP: too many symbolic links (reserved for path resolution that follows links).</summary>
    TooManyLinks = 40,
}

/// <summary>A file operation on a branch failed for a POSIX reason (not found, exists, not a directory …).</summary>
public sealed class DaxfsIOException : DaxfsException
{
    /// <summary>Creates the exception.</summary>
    public DaxfsIOException(FileSystemError error, string path, string? detail = null)
        : base($"{path}: {Describe(error)}{(detail is null ? "" : " (" + detail + ")")}")
    {
        Error = error;
        Path = path;
    }

    /// <summary>The reason.</summary>
    public FileSystemError Error { get; }

    /// <summary>The path the operation was given.</summary>
    public string Path { get; }

    /// <summary>The errno value of <see cref="Error"/>.</summary>
    public int Errno => (int)Error;

    internal static string Describe(FileSystemError error) => error switch
    {
        FileSystemError.NotPermitted => "operation not permitted",
        FileSystemError.CrossDevice => "cross-branch link",
        FileSystemError.NotFound => "no such file or directory",
        FileSystemError.Exists => "file exists",
        FileSystemError.NotADirectory => "not a directory",
        FileSystemError.IsADirectory => "is a directory",
        FileSystemError.InvalidArgument => "invalid argument",
        FileSystemError.FileTooLarge => "file too large",
        FileSystemError.NameTooLong => "file name too long",
        FileSystemError.TooManyNames => "too many links",
        FileSystemError.NoData => "no such attribute",
        FileSystemError.NotSupported => "operation not supported",
        FileSystemError.NotEmpty => "directory not empty",
        FileSystemError.TooManyLinks => "too many levels of symbolic links",
        _ => error.ToString(),
    };
}
