using System.Text;
using System.Text.Json;
using System.Text.Json.Nodes;
using Daxfs.Branching.Index;

namespace Daxfs.Branching.Cli.Mcp;

/// <summary>A tool call that failed: the message and code the CLI would give for the same failure.</summary>
internal sealed class ToolError(string message, int code) : Exception(message)
{
    public int Code { get; } = code;
}

/// <summary>One tool: its name, what a model reads about it, and the JSON schema of its arguments.</summary>
internal sealed record ToolSpec(string Name, string Description, JsonObject Schema, Func<JsonObject, JsonNode> Run);

/// <summary>
/// The store's operations as MCP tools. Each takes a JSON object (checked against its schema here: unknown or
/// missing arguments, wrong types and out-of-range values are errors naming the argument) and returns JSON; a
/// failure is a <see cref="ToolError"/> with the CLI's message and exit code. Calls are serialized: one store.
/// </summary>
internal sealed partial class McpTools
{
    private readonly Store _store;
    private readonly object _gate = new();
    private readonly Runner? _runner;

    /// <summary>The most one read returns (a model pages through larger files).</summary>
    public const int MaxRead = 256 * 1024;

    /// <summary>The most one write takes (a larger file is written in parts, with offsets).</summary>
    public const int MaxWrite = 16 << 20;

    public IReadOnlyList<ToolSpec> Tools { get; }

    public McpTools(Store store, Runner? runner)
    {
        _store = store;
        _runner = runner;
        var tools = new List<ToolSpec>
        {
            Tool("fork", "Fork a new branch: a private, copy-on-write view of its parent's files (O(1), nothing is copied). "
                + "Changes in the branch are invisible elsewhere until committed. Use it before trying something you may throw away.",
                Props(("name", Str("the new branch's name: ASCII letters, digits, '-', '_', '.'")), ("parent", Str("the branch to fork (default: main)")),
                    ("version", Str("instead of a branch: fork main as of this version number or tag (see log)"))), ["name"], Fork),
            Tool("list_branches", "List the branches: name, parent, status (live, invalidated, ...), depth, and the size of each one's changes.",
                Props(), [], _ => ListBranches()),
            Tool("read_file", $"Read a file of a branch. Text comes back as UTF-8, anything else as base64. At most {MaxRead} bytes per call: "
                + "when 'eof' is false, call again with 'offset' set to 'next_offset'.",
                Props(("path", Str("absolute path, e.g. /src/app.py")), ("branch", Str("default: main")), ("offset", Int("first byte (default 0)")),
                    ("length", Int($"bytes to read (default and most: {MaxRead})"))), ["path"], a => ReadFile(Branch(a), a)),
            Tool("write_file", $"Write a file in a branch (not main: fork first). Without 'offset' the file's whole content becomes 'content' "
                + $"(created if missing); with 'offset' the bytes are written there. At most {MaxWrite / (1 << 20)} MiB per call.",
                Props(("branch", Str("the branch to write in")), ("path", Str("absolute path")), ("content", Str("the bytes, as text or base64")),
                    ("encoding", Enum("how 'content' is written", "utf-8", "base64")), ("offset", Int("write at this byte instead of replacing the file")),
                    ("create_parents", Bool("create missing parent directories (default true)"))), ["branch", "path", "content"], WriteFile),
            Tool("edit_file", "Replace one exact string in a text file of a branch. Fails when the string is missing or appears more "
                + "than once (then give more surrounding text so it is unique).",
                Props(("branch", Str("the branch")), ("path", Str("absolute path")), ("old_string", Str("the exact text to replace")),
                    ("new_string", Str("what replaces it"))), ["branch", "path", "old_string", "new_string"], EditFile),
            Tool("list_dir", "List a directory of a branch: name, kind (file, directory, symlink, ...) and size of each entry.",
                Props(("path", Str("absolute path (default /)")), ("branch", Str("default: main"))), [], a => ListDir(Branch(a), a)),
            Tool("stat", "A file's attributes: kind, mode, owner, size, times, link target.",
                Props(("path", Str("absolute path")), ("branch", Str("default: main"))), ["path"], a => Stat(Branch(a), Text(a, "path"))),
            Tool("remove", "Remove a file, symlink or empty directory in a branch; with recursive, a whole tree.",
                Props(("branch", Str("the branch")), ("path", Str("absolute path")), ("recursive", Bool("remove a directory and everything in it"))),
                ["branch", "path"], Remove),
            Tool("move", "Rename or move a file or directory in a branch (POSIX rules: a file replaces a file).",
                Props(("branch", Str("the branch")), ("from", Str("absolute path")), ("to", Str("absolute path")),
                    ("no_replace", Bool("fail instead of replacing an existing target"))), ["branch", "from", "to"], Move),
            Tool("diff", "What changed between two refs (branch names, version numbers or tags; 'to' defaults to 'from''s own changes "
                + "against its parent). Text files as unified diffs, other files as changed byte ranges.",
                Props(("from", Str("the older ref, or the branch whose own changes to show")), ("to", Str("the newer ref")),
                    ("max_bytes", Int("cap on the unified text returned (default 65536)"))), ["from"], Diff),
            Tool("commit", "Commit a leaf branch: its changes (and its parents') become main's next version. Every other branch is then "
                + "invalidated (they saw the old main).",
                Props(("branch", Str("the branch")), ("message", Str("the version's message"))), ["branch"], Commit),
            Tool("commit_to_parent", "Fold a branch into its parent branch only (the parent goes on; the branch's siblings are invalidated).",
                Props(("branch", Str("the branch")), ("message", Str("a message"))), ["branch"], CommitToParent),
            Tool("abort", "Throw away a branch's whole chain back to main, and every branch forked from it.",
                Props(("branch", Str("the branch"))), ["branch"], a => End(a, abort: true)),
            Tool("discard", "Throw away one leaf branch; its parent goes on. Also frees the name of an invalidated branch.",
                Props(("branch", Str("the branch"))), ["branch"], a => End(a, abort: false)),
            Tool("rebase", "Re-apply what a branch changed onto main as it is now, as a new branch (for a branch forked from a past "
                + "version, or one kept for rebase that a commit invalidated). Colliding paths are reported and nothing is made.",
                Props(("branch", Str("the branch")), ("as", Str("the new branch's name (default BRANCH-rebased)"))), ["branch"], Rebase),
            Tool("log", "The versions of main, newest first: number, time, message, source branch, tags.",
                Props(("limit", Int("how many (default 20)"))), [], Log),
            Tool("read_at_version", "Read a file (or list a directory) of main as it was at a version number or tag.",
                Props(("version", Str("a version number or a tag")), ("path", Str("absolute path")), ("offset", Int("first byte")),
                    ("length", Int($"bytes (default and most: {MaxRead})"))), ["version", "path"], ReadAtVersion),
        };
        if (runner is not null)
            tools.Add(Tool("run", "Run a command with its working directory at a branch (the branch is mounted; as root the command runs in "
                + $"its own mount and PID namespaces and sees only that branch). Output is captured (at most {Runner.MaxOutput / 1024} KiB "
                + "of each stream) and the exit code returned. Files it writes land in the branch.",
                Props(("branch", Str("the branch (main is read-only)")), ("argv", new JsonObject { ["type"] = "array", ["items"] = Str("a word"), ["minItems"] = 1, ["description"] = "the program and its arguments, e.g. [\"make\", \"test\"]" }),
                    ("timeout_seconds", Int("killed after this long (default 60, at most 3600)"))), ["branch", "argv"], Run));
        Tools = tools;
    }

    /// <summary>Runs <paramref name="body"/> under the gate that serializes the tools' use of the store.</summary>
    public T Locked<T>(Func<T> body)
    {
        lock (_gate)
            return body();
    }

    /// <summary>Runs tool <paramref name="name"/>; a bad call or a failed operation is a <see cref="ToolError"/>.</summary>
    public JsonNode Call(string name, JsonObject? arguments)
    {
        var tool = Tools.FirstOrDefault(t => t.Name == name)
            ?? throw new ToolError($"no tool '{name}' (tools: {string.Join(", ", Tools.Select(t => t.Name))})", Program.Usage);
        arguments ??= [];
        CheckArguments(tool, arguments);
        try
        {
            if (tool.Name == "run")
                return tool.Run(arguments); // long: not under the gate (the store serializes what it must)
            lock (_gate)
                return tool.Run(arguments);
        }
        catch (ToolError)
        {
            throw;
        }
        catch (UsageException e)
        {
            throw new ToolError(e.Message, Program.Usage);
        }
        catch (Exception e) when (Program.ExitCodeOf(e) is int code)
        {
            throw new ToolError(Program.MessageOf(e), code);
        }
    }

    // ------------------------------------------------------------------ schema

    private static ToolSpec Tool(string name, string description, JsonObject props, string[] required, Func<JsonObject, JsonNode> run) =>
        new(name, description, new JsonObject
        {
            ["type"] = "object",
            ["properties"] = props,
            ["required"] = new JsonArray(required.Select(r => (JsonNode)r).ToArray()),
            ["additionalProperties"] = false,
        }, run);

    private static JsonObject Props(params (string Name, JsonObject Schema)[] props)
    {
        var o = new JsonObject();
        foreach (var (n, s) in props) o[n] = s;
        return o;
    }

    private static JsonObject Str(string d) => new() { ["type"] = "string", ["description"] = d };
    private static JsonObject Int(string d) => new() { ["type"] = "integer", ["minimum"] = 0, ["description"] = d };
    private static JsonObject Bool(string d) => new() { ["type"] = "boolean", ["description"] = d };
    private static JsonObject Enum(string d, params string[] values) => new() { ["type"] = "string", ["enum"] = new JsonArray(values.Select(v => (JsonNode)v).ToArray()), ["description"] = d };

    /// <summary>Checks the arguments against the tool's schema: no unknown names, every required one, the right JSON types.</summary>
    private static void CheckArguments(ToolSpec tool, JsonObject args)
    {
        var props = (JsonObject)tool.Schema["properties"]!;
        foreach (var (name, value) in args)
        {
            if (props[name] is not JsonObject schema)
                throw new ToolError($"{tool.Name}: unknown argument '{name}' (it takes {string.Join(", ", props.Select(p => p.Key))})", Program.Usage);
            string type = (string)schema["type"]!;
            bool ok = value switch
            {
                null => false,
                JsonValue v => type switch
                {
                    "string" => v.GetValueKind() == JsonValueKind.String,
                    "integer" => v.TryGetValue<long>(out long n) && n >= 0,
                    "boolean" => v.GetValueKind() is JsonValueKind.True or JsonValueKind.False,
                    _ => false,
                },
                JsonArray arr => type == "array" && arr.Count > 0 && arr.All(x => x is JsonValue s && s.GetValueKind() == JsonValueKind.String),
                _ => false,
            };
            if (!ok)
                throw new ToolError($"{tool.Name}: argument '{name}' must be {(type == "integer" ? "a non-negative integer" : type == "array" ? "a non-empty array of strings" : "a " + type)}", Program.Usage);
            if (schema["enum"] is JsonArray allowed && !allowed.Any(x => (string)x! == (string)value!))
                throw new ToolError($"{tool.Name}: argument '{name}' must be one of {string.Join(", ", allowed)}", Program.Usage);
        }
        foreach (var r in (JsonArray)tool.Schema["required"]!)
            if (!args.ContainsKey((string)r!))
                throw new ToolError($"{tool.Name}: argument '{(string)r!}' is required", Program.Usage);
    }

    private static string Text(JsonObject a, string name) => (string)a[name]!;
    private static string? OptText(JsonObject a, string name) => a[name] is JsonNode n ? (string)n! : null;
    private static long? OptLong(JsonObject a, string name) => a[name] is JsonNode n ? (long)n : null;
    private static bool OptBool(JsonObject a, string name, bool fallback) => a[name] is JsonNode n ? (bool)n : fallback;

    private Branch Branch(JsonObject a) => _store.GetBranch(OptText(a, "branch") ?? "main");

    private Branch Writable(JsonObject a)
    {
        string name = Text(a, "branch");
        if (name == "main")
            throw new ToolError("main is read-only: fork a branch (the fork tool), change it, then commit it", Program.Failed);
        return _store.GetBranch(name);
    }
}
