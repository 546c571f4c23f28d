// An MCP client (the official C# SDK) driving `daxfs mcp` through a best-of-3 workflow, as an agent would:
// fork three branches, write a candidate fix into each, run the test command in each, commit the one that passes
// and abort the others. The "model" here is three fixed candidates; a real agent would have written them.
//
//   dotnet run --project examples/McpAgent [-- REGION]
//
// The run tool mounts the region, so this needs FUSE (as root: the commands also get their own namespaces).
using System.Text.Json;
using System.Text.Json.Nodes;
using Daxfs.Branching;
using ModelContextProtocol.Client;
using ModelContextProtocol.Protocol;

string region = args.Length > 0 ? args[0] : Path.Combine("/dev/shm", $"daxfs-mcp-agent-{Environment.ProcessId}.daxfs");
bool made = !File.Exists(region);
if (made)
{
    // The workspace: a function with a bug and its test.
    var image = new BaseImageBuilder()
        .AddFile("/calc.sh", "add() { echo $(( $1 - $2 )); }\n"u8)
        .AddFile("/test.sh", "#!/bin/sh\n. ./calc.sh\n[ \"$(add 2 3)\" = 5 ] && [ \"$(add -1 1)\" = 0 ] && echo ok\n"u8, mode: 0x1ED);
    Store.Create(region, image, new StoreOptions { Capacity = 64L << 20 }).Dispose();
}

var transport = new StdioClientTransport(new StdioClientTransportOptions
{
    Name = "daxfs",
    Command = "dotnet",
    Arguments = [Path.Combine(AppContext.BaseDirectory, "daxfs.dll"), "mcp", "-r", region, "--allow-run"],
    StandardErrorLines = line => Console.Error.WriteLine("  [server] " + line),
});
await using var client = await McpClient.CreateAsync(transport, new McpClientOptions { ProtocolVersion = "2025-11-25" });
Console.WriteLine($"connected to {client.ServerInfo?.Name} {client.ServerInfo?.Version}: {(await client.ListToolsAsync()).Count} tools");

async Task<JsonNode> Call(string tool, object arguments)
{
    var dict = JsonSerializer.Deserialize<Dictionary<string, JsonElement>>(JsonSerializer.Serialize(arguments))!.ToDictionary(kv => kv.Key, kv => (object?)kv.Value);
    var result = await client.CallToolAsync(tool, dict);
    string text = string.Concat(result.Content.OfType<TextContentBlock>().Select(b => b.Text));
    if (result.IsError == true) throw new InvalidOperationException($"{tool}: {text}");
    return JsonNode.Parse(text)!;
}

string[] candidates =
[
    "add() { echo $(( $1 * $2 )); }\n",  // wrong
    "add() { echo $(( $1 + $2 )); }\n",  // right
    "add() { echo $(( $2 - $1 )); }\n",  // wrong
];
string? winner = null;
for (int i = 0; i < candidates.Length; i++)
{
    string branch = $"candidate-{i + 1}-{Environment.ProcessId}";
    await Call("fork", new { name = branch });
    await Call("write_file", new { branch, path = "/calc.sh", content = candidates[i] });
    var run = await Call("run", new { branch, argv = new[] { "sh", "test.sh" }, timeout_seconds = 30 });
    bool passed = (int?)run["exit_code"] == 0;
    Console.WriteLine($"{branch}: test {(passed ? "passed" : "failed")} (exit {run["exit_code"]})");
    if (passed && winner is null) winner = branch;
}
if (winner is null)
{
    Console.Error.WriteLine("no candidate passed");
    return 1;
}
var diff = await Call("diff", new { from = "main", to = winner });
Console.Write((string)diff["unified"]!);
var version = await Call("commit", new { branch = winner, message = $"{winner} passed test.sh" });
Console.WriteLine($"committed {winner} as version {version["version"]}; the other candidates were invalidated by the commit");
foreach (var b in (await Call("list_branches", new { })).AsArray())
    if ((string)b!["name"]! != winner && ((string)b["name"]!).StartsWith("candidate-", StringComparison.Ordinal))
        await Call("discard", new { branch = (string)b["name"]! });
var check = await Call("read_file", new { path = "/calc.sh" });
if (!((string)check["content"]!).Contains("$1 + $2", StringComparison.Ordinal))
    throw new InvalidOperationException("main does not hold the passing fix");
Console.WriteLine("main now holds the passing fix");
if (made) File.Delete(region);
return 0;
