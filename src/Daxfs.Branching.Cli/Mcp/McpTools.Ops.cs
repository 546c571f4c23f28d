using System.Text;
using System.Text.Json.Nodes;
using Daxfs.Branching.Index;

namespace Daxfs.Branching.Cli.Mcp;

internal sealed partial class McpTools
{
    private JsonNode Fork(JsonObject a)
    {
        string name = Text(a, "name");
        if (Store.BranchNameProblem(name) is { } why)
            throw new ToolError($"invalid branch name '{name}': {why}", Program.Usage);
        if (a["version"] is not null && a["parent"] is not null)
            throw new ToolError("fork: give 'parent' or 'version', not both", Program.Usage);
        var parent = OptText(a, "version") is { } v ? Context.Resolve(_store, v, "version") : _store.GetBranch(OptText(a, "parent") ?? "main");
        var b = parent.Fork(name);
        return new JsonObject { ["branch"] = b.Name, ["parent"] = parent.Name, ["depth"] = b.Depth };
    }

    private JsonNode ListBranches() => new JsonArray(_store.ListBranches().Select(b => (JsonNode)new JsonObject
    {
        ["name"] = b.Name, ["parent"] = b.Parent, ["status"] = b.Status.ToString().ToLowerInvariant(), ["depth"] = b.Depth,
        ["log_bytes"] = b.LogBytes, ["records"] = b.Records,
    }).ToArray());

    private static JsonNode ReadFile(Branch b, JsonObject a)
    {
        string path = Text(a, "path");
        var st = b.Stat(path);
        if (st.Kind == NodeKind.Directory)
            throw new ToolError($"{path}: is a directory (use list_dir)", Program.Failed);
        if (st.Kind == NodeKind.Symlink)
            return new JsonObject { ["path"] = path, ["symlink"] = b.ReadLink(path) };
        long offset = OptLong(a, "offset") ?? 0;
        int length = (int)Math.Min(OptLong(a, "length") ?? MaxRead, MaxRead);
        var buffer = new byte[(int)Math.Max(0, Math.Min(length, st.Size - offset))];
        int got = offset >= st.Size ? 0 : b.Read(path, offset, buffer);
        var (encoding, content) = Encode(buffer.AsSpan(0, got));
        var o = new JsonObject
        {
            ["path"] = path, ["size"] = st.Size, ["offset"] = offset, ["length"] = got, ["eof"] = offset + got >= st.Size,
            ["encoding"] = encoding, ["content"] = content,
        };
        if (offset + got < st.Size) o["next_offset"] = offset + got;
        return o;
    }

    /// <summary>Text as it is when it is valid UTF-8 without NULs; otherwise base64.</summary>
    private static (string Encoding, string Content) Encode(ReadOnlySpan<byte> bytes)
    {
        if (bytes.IndexOf((byte)0) < 0)
        {
            try { return ("utf-8", new UTF8Encoding(false, true).GetString(bytes)); }
            catch (DecoderFallbackException) { }
        }
        return ("base64", Convert.ToBase64String(bytes));
    }

    private static byte[] Decode(JsonObject a, string tool)
    {
        string content = Text(a, "content");
        if ((OptText(a, "encoding") ?? "utf-8") == "base64")
        {
            if ((long)content.Length * 3 / 4 > MaxWrite)
                throw new ToolError($"{tool}: {content.Length * 3L / 4} bytes is more than one call writes ({MaxWrite / (1 << 20)} MiB): write in parts with 'offset'", Program.Usage);
            try { return Convert.FromBase64String(content); }
            catch (FormatException) { throw new ToolError($"{tool}: 'content' is not valid base64", Program.Usage); }
        }
        int n = Encoding.UTF8.GetByteCount(content);
        if (n > MaxWrite)
            throw new ToolError($"{tool}: {n} bytes is more than one call writes ({MaxWrite / (1 << 20)} MiB): write in parts with 'offset'", Program.Usage);
        return Encoding.UTF8.GetBytes(content);
    }

    private JsonNode WriteFile(JsonObject a)
    {
        var b = Writable(a);
        string path = Text(a, "path");
        var data = Decode(a, "write_file");
        if (OptBool(a, "create_parents", true) && path.LastIndexOf('/') is int slash and > 0)
            b.CreateDirectory(path[..slash], parents: true);
        if (OptLong(a, "offset") is long offset)
            b.Write(path, offset, data);
        else
            b.WriteAllBytes(path, data);
        return new JsonObject { ["path"] = path, ["written"] = data.Length, ["size"] = b.Stat(path).Size };
    }

    private JsonNode EditFile(JsonObject a)
    {
        var b = Writable(a);
        string path = Text(a, "path"), old = Text(a, "old_string"), now = Text(a, "new_string");
        if (old.Length == 0)
            throw new ToolError("edit_file: 'old_string' must not be empty", Program.Usage);
        var st = b.Stat(path);
        if (st.Kind != NodeKind.File)
            throw new ToolError($"{path}: not a regular file", Program.Failed);
        if (st.Size > MaxWrite)
            throw new ToolError($"{path}: {st.Size} bytes is larger than edit_file edits ({MaxWrite / (1 << 20)} MiB)", Program.Failed);
        string text;
        try { text = new UTF8Encoding(false, true).GetString(b.ReadAllBytes(path)); }
        catch (DecoderFallbackException) { throw new ToolError($"{path}: not UTF-8 text (use write_file with base64)", Program.Failed); }
        int first = text.IndexOf(old, StringComparison.Ordinal);
        if (first < 0)
            throw new ToolError($"{path}: 'old_string' does not occur in the file", Program.Failed);
        int count = 0;
        for (int at = first; at >= 0; at = text.IndexOf(old, at + 1, StringComparison.Ordinal)) count++;
        if (count > 1)
            throw new ToolError($"{path}: 'old_string' occurs {count} times; give more surrounding text so it occurs once", Program.Failed);
        var result = Encoding.UTF8.GetBytes(string.Concat(text.AsSpan(0, first), now, text.AsSpan(first + old.Length)));
        b.WriteAllBytes(path, result);
        int line = text.AsSpan(0, first).Count('\n') + 1;
        return new JsonObject { ["path"] = path, ["line"] = line, ["size"] = result.Length };
    }

    private static string KindName(NodeKind k) => k switch
    {
        NodeKind.File => "file", NodeKind.Directory => "directory", NodeKind.Symlink => "symlink", NodeKind.Fifo => "fifo",
        NodeKind.Socket => "socket", NodeKind.CharDevice => "char-device", NodeKind.BlockDevice => "block-device", _ => k.ToString(),
    };

    private static JsonNode ListDir(Branch b, JsonObject a)
    {
        string path = OptText(a, "path") ?? "/";
        return new JsonObject
        {
            ["path"] = path,
            ["entries"] = new JsonArray(b.List(path).Select(e =>
            {
                string full = path.TrimEnd('/') + "/" + e.Name;
                var st = b.Stat(full);
                return (JsonNode)new JsonObject { ["name"] = e.Name, ["kind"] = KindName(e.Kind), ["size"] = st.Size };
            }).ToArray()),
        };
    }

    private static JsonNode Stat(Branch b, string path)
    {
        var st = b.Stat(path);
        var o = new JsonObject
        {
            ["path"] = path, ["kind"] = KindName(st.Kind), ["mode"] = Convert.ToString(st.Mode & 0xFFF, 8), ["uid"] = st.Uid, ["gid"] = st.Gid,
            ["size"] = st.Size, ["modified"] = st.ModifiedTime.ToString("O"), ["inode"] = st.Inode, ["links"] = st.LinkCount,
        };
        if (st.Kind == NodeKind.Symlink) o["target"] = b.ReadLink(path);
        return o;
    }

    private JsonNode Remove(JsonObject a)
    {
        var b = Writable(a);
        string path = Text(a, "path");
        if (path.Trim('/').Length == 0)
            throw new ToolError("remove: refusing to remove the root directory", Program.Usage);
        b.Delete(path, OptBool(a, "recursive", false));
        return new JsonObject { ["removed"] = path };
    }

    private JsonNode Move(JsonObject a)
    {
        var b = Writable(a);
        b.Rename(Text(a, "from"), Text(a, "to"), OptBool(a, "no_replace", false));
        return new JsonObject { ["from"] = Text(a, "from"), ["to"] = Text(a, "to") };
    }

    private JsonNode Diff(JsonObject a)
    {
        var from = Context.Resolve(_store, Text(a, "from"), "from");
        Branch older, newer;
        IReadOnlyList<Change> changes;
        if (OptText(a, "to") is { } to)
        {
            newer = Context.Resolve(_store, to, "to");
            older = from;
            changes = older.DiffTo(newer);
        }
        else
        {
            newer = from;
            older = from.Info.Status is BranchStatus.Main or BranchStatus.Version
                ? _store.AtVersion(Math.Max(0, (from.Info.Status == BranchStatus.Main ? _store.CurrentVersion : long.Parse(from.Name.Split('@')[1], System.Globalization.CultureInfo.InvariantCulture)) - 1))
                : from.Parent ?? _store.Main;
            changes = from.Diff();
        }
        int cap = (int)Math.Min(OptLong(a, "max_bytes") ?? 65536, 1 << 20);
        var text = new StringBuilder();
        var list = new JsonArray();
        foreach (var c in changes)
        {
            var item = new JsonObject { ["kind"] = c.Kind.ToString().ToLowerInvariant(), ["path"] = c.Path, ["node"] = KindName(c.NodeKind) };
            if (c.OldPath is not null) item["old_path"] = c.OldPath;
            if (c.Detail is not null) item["detail"] = c.Detail;
            if (c.NodeKind == NodeKind.File && c.Kind is ChangeKind.Modified or ChangeKind.Added or ChangeKind.Deleted or ChangeKind.Renamed)
            {
                byte[]? before = c.Kind == ChangeKind.Added ? [] : SmallFile(older, c.OldPath ?? c.Path);
                byte[]? after = c.Kind == ChangeKind.Deleted ? [] : SmallFile(newer, c.Path);
                if (before is null || after is null)
                {
                    item["large"] = true; // not drawn line by line
                    item["ranges"] = new JsonArray(c.Ranges.Take(64).Select(r => (JsonNode)new JsonObject { ["offset"] = r.Offset, ["length"] = r.Length }).ToArray());
                }
                else if (UnifiedDiff.IsText(before) && UnifiedDiff.IsText(after))
                {
                    if (text.Length < cap)
                        text.Append(UnifiedDiff.Make(c.OldPath ?? c.Path, c.Path, before, after, c.Kind));
                }
                else
                {
                    item["binary"] = true;
                    item["ranges"] = new JsonArray(c.Ranges.Take(64).Select(r => (JsonNode)new JsonObject { ["offset"] = r.Offset, ["length"] = r.Length }).ToArray());
                }
            }
            list.Add(item);
        }
        bool truncated = text.Length > cap;
        return new JsonObject
        {
            ["from"] = older.Name, ["to"] = newer.Name, ["changes"] = list,
            ["unified"] = truncated ? text.ToString(0, cap) : text.ToString(), ["truncated"] = truncated,
        };
    }

    /// <summary>A file's bytes for a line diff, or null past 1 MiB (its diff is given as byte ranges).</summary>
    private static byte[]? SmallFile(Branch b, string path) => b.Stat(path).Size > (1 << 20) ? null : b.ReadAllBytes(path);

    private JsonNode Commit(JsonObject a)
    {
        var b = Writable(a);
        var v = b.Commit(OptText(a, "message") ?? $"commit {b.Name}");
        return new JsonObject { ["branch"] = b.Name, ["version"] = v.Sequence, ["records"] = v.Records, ["bytes"] = v.Bytes };
    }

    private JsonNode CommitToParent(JsonObject a)
    {
        var b = Writable(a);
        string parent = b.Parent?.Name ?? "main";
        var v = b.CommitToParent(OptText(a, "message") ?? $"commit {b.Name} to {parent}");
        return v is { } version
            ? new JsonObject { ["branch"] = b.Name, ["into"] = "main", ["version"] = version.Sequence }
            : new JsonObject { ["branch"] = b.Name, ["into"] = parent };
    }

    private JsonNode End(JsonObject a, bool abort)
    {
        string name = Text(a, "branch");
        if (name == "main")
            throw new ToolError($"main cannot be {(abort ? "aborted" : "discarded")}", Program.Failed);
        if (abort)
            _store.GetBranch(name).Abort();
        else if (_store.BranchExists(name))
            _store.GetBranch(name).Discard();
        else
            _store.DiscardInvalidated(name); // an invalidated branch: its name (and, when kept, its space) is given back
        return new JsonObject { [abort ? "aborted" : "discarded"] = name };
    }

    private JsonNode Rebase(JsonObject a)
    {
        string name = Text(a, "branch");
        string target = OptText(a, "as") ?? name + "-rebased";
        if (Store.BranchNameProblem(target) is { } why)
            throw new ToolError($"invalid branch name '{target}': {why}", Program.Usage);
        var made = _store.Rebase(name, target);
        return new JsonObject { ["branch"] = made.Name, ["from"] = name };
    }

    private JsonNode Log(JsonObject a)
    {
        long limit = Math.Min(OptLong(a, "limit") ?? 20, 1000);
        var tags = _store.Tags.GroupBy(t => t.Value).ToDictionary(g => g.Key, g => g.Select(t => t.Key).ToList());
        return new JsonArray(_store.Versions.Reverse().Take((int)limit).Select(v => (JsonNode)new JsonObject
        {
            ["version"] = v.Sequence, ["time"] = v.Time.ToString("O"), ["message"] = v.Message, ["source"] = v.SourceBranch,
            ["tags"] = new JsonArray((tags.TryGetValue(v.Sequence, out var t) ? t : []).Select(x => (JsonNode)x).ToArray()),
        }).ToArray());
    }

    private JsonNode ReadAtVersion(JsonObject a)
    {
        var b = Context.Resolve(_store, Text(a, "version"), "version");
        string path = Text(a, "path");
        return b.Stat(path).Kind == NodeKind.Directory ? ListDir(b, a) : ReadFile(b, a);
    }

    private JsonNode Run(JsonObject a)
    {
        string branch = Text(a, "branch");
        var argv = ((JsonArray)a["argv"]!).Select(x => (string)x!).ToArray();
        long timeout = Math.Min(OptLong(a, "timeout_seconds") ?? 60, 3600);
        lock (_gate)
            _ = _store.GetBranch(branch).Info; // a missing or invalidated branch is the store's error, before anything runs
        return _runner!.Run(branch, argv, TimeSpan.FromSeconds(Math.Max(1, timeout)));
    }
}
