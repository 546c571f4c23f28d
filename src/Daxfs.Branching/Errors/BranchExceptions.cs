namespace Daxfs.Branching;

/// <summary>Base of the errors about a branch.</summary>
public class BranchException : DaxfsException
{
    /// <summary>Creates the exception.</summary>
    public BranchException(string branch, string message) : base(message) => Branch = branch;

    /// <summary>The branch's name.</summary>
    public string Branch { get; }
}

/// <summary>
/// The branch was invalidated: a commit elsewhere replaced the state it was forked from
/// (a commit to main invalidates every other branch; a commit to a parent invalidates the committed
/// branch's siblings), or an ancestor was aborted. Every operation on it fails with this error.
/// </summary>
public sealed class BranchInvalidatedException : BranchException
{
    /// <summary>Creates the exception.</summary>
    public BranchInvalidatedException(string branch)
        : base(branch, $"branch '{branch}' was invalidated by a commit or abort elsewhere; fork a new branch") { }

    /// <summary>Creates the exception for a branch whose changes a commit left kept for a rebase.</summary>
    public BranchInvalidatedException(string branch, bool kept)
        : base(branch, kept
            ? $"branch '{branch}' was invalidated by a commit to main; its changes are kept: rebase it onto main or discard it"
            : $"branch '{branch}' was invalidated by a commit or abort elsewhere; fork a new branch")
        => Kept = kept;

    /// <summary>Creates the exception with its own message.</summary>
    public BranchInvalidatedException(string branch, string message) : base(branch, message) { }

    /// <summary>True when the branch's changes were kept for a rebase (it was forked with <see cref="ForkOptions.KeepForRebase"/>).</summary>
    public bool Kept { get; }
}

/// <summary>No branch of that name exists (it never did, or it was committed, aborted or discarded).</summary>
public sealed class BranchNotFoundException : BranchException
{
    /// <summary>Creates the exception.</summary>
    public BranchNotFoundException(string branch) : base(branch, $"branch '{branch}' not found") { }

    /// <summary>Creates the exception with its own message (a name that is no branch, tag or version).</summary>
    public BranchNotFoundException(string branch, string message) : base(branch, message) { }
}

/// <summary>A live branch of that name already exists.</summary>
public sealed class BranchExistsException : BranchException
{
    /// <summary>Creates the exception.</summary>
    public BranchExistsException(string branch) : base(branch, $"branch '{branch}' already exists") { }

    /// <summary>Creates the exception with its own message.</summary>
    public BranchExistsException(string branch, string message) : base(branch, message) { }
}

/// <summary>The branch does not accept writes: it is main (which changes only by commits) or it is frozen.</summary>
public class BranchReadOnlyException : BranchException
{
    /// <summary>Creates the exception.</summary>
    public BranchReadOnlyException(string branch, string message) : base(branch, message) { }

    /// <summary>Creates the exception for main.</summary>
    public BranchReadOnlyException(string branch)
        : base(branch, $"branch '{branch}' is read-only: main changes only by commits; fork a branch to write") { }
}

/// <summary>The branch has live children, so it is read-only until they are committed, aborted or discarded.</summary>
public sealed class BranchFrozenException : BranchReadOnlyException
{
    /// <summary>Creates the exception.</summary>
    public BranchFrozenException(string branch, int liveChildren)
        : base(branch, $"branch '{branch}' is frozen: it has {liveChildren} live child branch(es); commit, abort or discard them first")
        => LiveChildren = liveChildren;

    /// <summary>How many live children the branch had.</summary>
    public int LiveChildren { get; }
}

/// <summary>The operation needs a leaf branch (one without live children).</summary>
public sealed class BranchNotLeafException : BranchException
{
    /// <summary>Creates the exception.</summary>
    public BranchNotLeafException(string branch, string operation)
        : base(branch, $"cannot {operation} branch '{branch}': it has live children (only a leaf can be {(operation.EndsWith('t') ? operation + "ted" : operation + "ed")})") { }
}

/// <summary>
/// The branch's chain was forked from a past version of main, and main has moved on since: committing it
/// would silently undo the versions in between. Rebase it onto main first.
/// </summary>
public sealed class BranchStaleBaseException : BranchException
{
    /// <summary>Creates the exception.</summary>
    public BranchStaleBaseException(string branch, long baseVersion, long mainVersion)
        : base(branch, $"cannot commit '{branch}' to main: its base is stale (forked from version {baseVersion}, main is at version {mainVersion}); rebase it first")
    {
        BaseVersion = baseVersion;
        MainVersion = mainVersion;
    }

    /// <summary>The version the branch's chain was forked from.</summary>
    public long BaseVersion { get; }

    /// <summary>Main's version now.</summary>
    public long MainVersion { get; }
}

/// <summary>The branch table has no free slot left (every slot holds a live branch).</summary>
public sealed class BranchTableFullException : DaxfsException
{
    /// <summary>Creates the exception.</summary>
    public BranchTableFullException(int slots)
        : base($"branch table full: all {slots} slots hold live branches; commit, abort or discard some") { }
}

/// <summary>A version that compaction folded into the base image was asked for.</summary>
public sealed class VersionFoldedException : DaxfsException
{
    /// <summary>Creates the exception.</summary>
    public VersionFoldedException(long version, long oldest)
        : base($"version {version} was folded into the base image by compaction; the oldest readable version is {oldest}")
    {
        Version = version;
        Oldest = oldest;
    }

    /// <summary>The version asked for.</summary>
    public long Version { get; }

    /// <summary>The oldest version that can still be read.</summary>
    public long Oldest { get; }
}
