using System.Collections.Concurrent;
using System.Text;

namespace Daxfs.Branching.Fuse;

/// <summary>
/// The control entry: a process that sees only a branch's directory (a sandbox's bind-mounted workspace) forks,
/// commits and ends branches through <c>.daxfs/ctl</c> and <c>.daxfs/branches</c>, with plain file operations.
/// </summary>
internal sealed unsafe partial class FuseServer
{
    /// <summary>The commands <c>.daxfs/ctl</c> takes, one per write.</summary>
    public const string CommandsHelp = "fork NAME | commit [MESSAGE] | commit-parent [MESSAGE] | abort | discard";

    /// <summary>A command longer than this is refused (EINVAL).</summary>
    private const int MaxCommand = 4096;

    /// <summary>The last failed command's message, by branch (slot and generation).</summary>
    private readonly ConcurrentDictionary<(int, long), string> _lastFailure = new();

    /// <summary>
    /// Runs one command written to <paramref name="mb"/>'s control file. Each write is one whole command (a
    /// trailing newline is allowed): a command written in pieces is refused piece by piece, never pieced
    /// together. A failure is kept as the branch's last failure, readable from the file, and rethrown (the
    /// writer gets its errno).
    /// </summary>
    /// <returns>True when the command committed or ended branches (the watcher should look at once, after the reply).</returns>
    private bool Command(MountedBranch mb, ReadOnlySpan<byte> data)
    {
        try
        {
            if (data.Length == 0 || data.Length > MaxCommand)
                throw new ArgumentException($"a command is 1 to {MaxCommand} bytes, one per write: {CommandsHelp}");
            string text;
            try
            {
                text = new UTF8Encoding(false, true).GetString(data);
            }
            catch (DecoderFallbackException)
            {
                throw new ArgumentException("a command is UTF-8 text");
            }
            if (text.EndsWith('\n')) text = text[..^1];
            if (text.Contains('\n') || text.Contains('\0'))
                throw new ArgumentException($"one command per write: {CommandsHelp}");
            if (text.Any(ch => char.IsControl(ch) && ch != '\t'))
                throw new ArgumentException("a command holds no control characters (a commit message ends up in logs and terminals)");
            int space = text.IndexOf(' ');
            string verb = space < 0 ? text : text[..space];
            string argument = space < 0 ? "" : text[(space + 1)..].Trim();
            if (mb.Branch.IsMain && verb is "commit" or "commit-parent" or "abort" or "discard")
                throw new BranchReadOnlyException(mb.Name, $"main cannot {verb}: it changes only by the commits of its branches");
            switch (verb)
            {
                case "fork":
                    if (argument.Length == 0)
                        throw new ArgumentException("fork needs a name: fork NAME");
                    RequireLifecycle(mb);
                    _nodes.Attach(mb.Branch.Fork(argument), NodeIds.Control(mb.Index, NodeIds.ChildrenDirIno), argument, ReadOnly);
                    break;
                case "commit":
                    RequireLifecycle(mb);
                    mb.Branch.Commit(argument);
                    break;
                case "commit-parent":
                    RequireLifecycle(mb);
                    mb.Branch.CommitToParent(argument);
                    break;
                case "abort":
                    RequireNoArgument(verb, argument);
                    RequireLifecycle(mb);
                    mb.Branch.Abort();
                    break;
                case "discard":
                    RequireNoArgument(verb, argument);
                    RequireLifecycle(mb);
                    mb.Branch.Discard();
                    break;
                default:
                    throw new ArgumentException($"unknown command '{verb}': {CommandsHelp}");
            }
            _lastFailure.TryRemove(mb.Key, out _);
            return verb != "fork";
        }
        catch (Exception e)
        {
            _lastFailure[mb.Key] = $"{e.Message} ({FuseNative.Describe(ErrnoOf(e))})";
            throw;
        }
        // What the command ended or invalidated is dropped from the kernel's caches by the watcher's next look,
        // within 0.1 s: not from here (a handler never notifies the kernel), and not woken at once either,
        // which would put the watcher's work on the CPU the writer needs to get its answer.
    }

    private static void RequireNoArgument(string verb, string argument)
    {
        if (argument.Length != 0)
            throw new ArgumentException($"{verb} takes no argument");
    }

    /// <summary>What reading <c>.daxfs/ctl</c> gives: the branch, its state, its children and the last failure.</summary>
    private string ControlText(MountedBranch mb)
    {
        var info = mb.Branch.Info; // ESTALE once the branch is gone
        var children = _store.LiveBranches().Where(b => b.Parent == mb.Name).Select(b => b.Name);
        var sb = new StringBuilder();
        sb.Append("branch: ").Append(mb.Name).Append('\n');
        sb.Append("parent: ").Append(info.Parent ?? "-").Append('\n');
        sb.Append("status: ").Append(info.Status.ToString().ToLowerInvariant()).Append('\n');
        sb.Append("children: ").Append(string.Join(' ', children)).Append('\n');
        sb.Append("last-failure: ").Append(_lastFailure.TryGetValue(mb.Key, out var failure) ? failure : "none").Append('\n');
        sb.Append("commands: ").Append(CommandsHelp).Append('\n');
        return sb.ToString();
    }
}
