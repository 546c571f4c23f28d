namespace Daxfs.Branching.Remote;

/// <summary>What went wrong with a remote.</summary>
public enum RemoteError
{
    /// <summary>The remote's ref moved on since this region last exchanged with it: pull (with --rebase), then push again.</summary>
    Behind,
    /// <summary>An object read from the remote does not match its hash, or cannot be decoded: nothing of it was used.</summary>
    Damaged,
    /// <summary>A ref, version, tag or branch the call names is not on the remote (or not in the region).</summary>
    NotFound,
    /// <summary>The object store refused the credentials (or found none).</summary>
    Access,
    /// <summary>The bucket does not exist.</summary>
    NoBucket,
    /// <summary>The object store could not be reached or kept failing.</summary>
    Unreachable,
    /// <summary>The object store lacks something this needs (conditional writes), or the region cannot hold remotes.</summary>
    Unsupported,
    /// <summary>Local and remote changes touch the same paths: they cannot be put together without a choice.</summary>
    Conflict,
}

/// <summary>A remote operation failed; <see cref="Error"/> says how, the message says what and what to do.</summary>
public sealed class RemoteException : DaxfsException
{
    /// <summary>Creates the exception.</summary>
    public RemoteException(RemoteError error, string message, Exception? inner = null) : base(message, inner) => Error = error;

    /// <summary>How it failed.</summary>
    public RemoteError Error { get; }
}
