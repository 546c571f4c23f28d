using System.Diagnostics;
using System.Text.Json.Nodes;
using ModelContextProtocol.Client;
using ModelContextProtocol.Protocol;

namespace Daxfs.Branching.Mcp.Tests;

/// <summary>Mounts (the run tool) and region files: one test at a time.</summary>
[CollectionDefinition("mcp", DisableParallelization = true)]
public sealed class McpCollection;

[Collection("mcp")]
public sealed class McpTests
{
    [Fact]
    public async Task Every_tool_works_over_stdio_through_the_sdk_client()
    {
        using var ws = new Workspace();
        await using var c = await ws.Stdio();
        var names = (await c.ListToolsAsync()).Select(t => t.Name).ToHashSet();
        foreach (var t in new[] { "fork", "list_branches", "read_file", "write_file", "edit_file", "list_dir", "stat", "remove", "move", "diff",
            "commit", "commit_to_parent", "abort", "discard", "rebase", "log", "read_at_version", "run" })
            Assert.Contains(t, names);

        Assert.Equal("agent", (string)(await c.Ok("fork", new { name = "agent" }))["branch"]!);
        Assert.Contains("agent", (await c.Ok("list_branches")).AsArray().Select(b => (string)b!["name"]!));
        var read = await c.Ok("read_file", new { path = "/src/app.py", branch = "agent" });
        Assert.Equal("utf-8", (string)read["encoding"]!);
        Assert.Contains("return 41", (string)read["content"]!);
        Assert.Equal("base64", (string)(await c.Ok("read_file", new { path = "/data.bin" }))["encoding"]!);
        var page = await c.Ok("read_file", new { path = "/src/app.py", length = 5 });
        Assert.False((bool)page["eof"]!);
        Assert.Equal(5, (long)page["next_offset"]!);

        await c.Ok("edit_file", new { branch = "agent", path = "/src/app.py", old_string = "return 41", new_string = "return 42" });
        var twice = await c.Fails("edit_file", new { branch = "agent", path = "/src/util.py", old_string = "X = 1", new_string = "X = 2" });
        Assert.Contains("occurs 2 times", twice.Error);
        await c.Ok("write_file", new { branch = "agent", path = "/docs/new.md", content = "# new\n" });
        await c.Ok("write_file", new { branch = "agent", path = "/docs/new.md", content = "X", offset = 2 });
        Assert.Equal("# Xew\n", (string)(await c.Ok("read_file", new { branch = "agent", path = "/docs/new.md" }))["content"]!);
        await c.Ok("write_file", new { branch = "agent", path = "/bin.dat", content = Convert.ToBase64String([0, 0, 7]), encoding = "base64" });
        await c.Ok("move", new { branch = "agent", from = "/README.md", to = "/README.txt" });
        await c.Ok("remove", new { branch = "agent", path = "/src/util.py" });
        var entries = (await c.Ok("list_dir", new { branch = "agent", path = "/" }))["entries"]!.AsArray().Select(e => (string)e!["name"]!).ToList();
        Assert.Contains("README.txt", entries);
        Assert.Contains("docs", entries);
        Assert.Equal("file", (string)(await c.Ok("stat", new { branch = "agent", path = "/README.txt" }))["kind"]!);

        var diff = await c.Ok("diff", new { from = "main", to = "agent" });
        string unified = (string)diff["unified"]!;
        Assert.Contains("-    return 41", unified);
        Assert.Contains("+    return 42", unified);
        Assert.Contains("+++ b/docs/new.md", unified);
        Assert.Contains(diff["changes"]!.AsArray(), ch => (string)ch!["path"]! == "/bin.dat" && (bool?)ch["binary"] == true);

        var run = await c.Ok("run", new { branch = "agent", argv = new[] { "sh", "test.sh" } });
        Assert.Equal(0, (int)run["exit_code"]!);
        var failing = await c.Ok("run", new { branch = "main", argv = new[] { "sh", "-c", "sh test.sh; echo out; echo err >&2; exit 3" } });
        Assert.Equal(3, (int)failing["exit_code"]!);
        Assert.Equal("out\n", (string)failing["stdout"]!);
        Assert.Equal("err\n", (string)failing["stderr"]!);
        await c.Ok("run", new { branch = "agent", argv = new[] { "sh", "-c", "echo built > out.txt" } });
        Assert.Equal("built\n", (string)(await c.Ok("read_file", new { branch = "agent", path = "/out.txt" }))["content"]!);
        // A command changes files, not the lifecycle: its mount refuses the control file's commit, abort and fork.
        var ctl = await c.Ok("run", new { branch = "agent", argv = new[] { "sh", "-c", "echo 'commit sneaky' > .daxfs/ctl; echo abort > .daxfs/ctl; mkdir .daxfs/branches/kid; true" } });
        Assert.Equal(0, (int)ctl["exit_code"]!);
        Assert.Contains("Operation not permitted", (string)ctl["stderr"]!);
        Assert.Empty((await c.Ok("log")).AsArray());
        Assert.DoesNotContain("kid", (await c.Ok("list_branches")).AsArray().Select(b => (string)b!["name"]!));
        var slow = await c.Ok("run", new { branch = "agent", argv = new[] { "sleep", "30" }, timeout_seconds = 1 });
        Assert.True((bool)slow["timed_out"]!);
        var noisy = await c.Ok("run", new { branch = "agent", argv = new[] { "sh", "-c", "head -c 200000 /dev/zero | tr '\\0' a" } });
        Assert.True((bool)noisy["stdout_truncated"]!);
        Assert.Equal(64 * 1024, ((string)noisy["stdout"]!).Length);

        await c.Ok("fork", new { name = "child", parent = "agent" });
        await c.Ok("write_file", new { branch = "child", path = "/child.txt", content = "c" });
        Assert.Equal("agent", (string)(await c.Ok("commit_to_parent", new { branch = "child" }))["into"]!);
        await c.Ok("fork", new { name = "loser", parent = "main" });
        await c.Ok("fork", new { name = "scratch" });
        await c.Ok("discard", new { branch = "scratch" });
        long version = (long)(await c.Ok("commit", new { branch = "agent", message = "the answer is 42" }))["version"]!;
        Assert.Equal(1, version);
        Assert.Contains("return 42", (string)(await c.Ok("read_file", new { path = "/src/app.py" }))["content"]!);
        Assert.Contains("return 41", (string)(await c.Ok("read_at_version", new { version = "0", path = "/src/app.py" }))["content"]!);
        var log = (await c.Ok("log")).AsArray();
        Assert.Equal("the answer is 42", (string)log[0]!["message"]!);
        var stale = await c.Fails("write_file", new { branch = "loser", path = "/x", content = "x" });
        Assert.Equal(1, stale.Code);
        await c.Ok("fork", new { name = "old", version = "0" });
        await c.Ok("write_file", new { branch = "old", path = "/late.txt", content = "late" });
        Assert.Equal("old-rebased", (string)(await c.Ok("rebase", new { branch = "old" }))["branch"]!);
        await c.Ok("abort", new { branch = "old-rebased" });
    }

    [Fact]
    public async Task Errors_are_tool_errors_with_the_cli_s_message_and_code()
    {
        using var ws = new Workspace();
        await using var c = await ws.Stdio(allowRun: false);
        Assert.DoesNotContain("run", (await c.ListToolsAsync()).Select(t => t.Name)); // off unless --allow-run
        await c.Ok("fork", new { name = "b" });
        var dots = await c.Fails("read_file", new { path = "/src/../README.md" });
        Assert.Equal(2, dots.Code);
        Assert.Contains("..", dots.Error);
        var unknown = await c.Fails("read_file", new { path = "/README.md", branch = "nope" });
        Assert.Equal(1, unknown.Code);
        Assert.Contains("nope", unknown.Error);
        var huge = await c.Fails("write_file", new { branch = "b", path = "/big", content = new string('x', 17 << 20) });
        Assert.Equal(2, huge.Code);
        Assert.Contains("more than one call writes", huge.Error);
        Assert.Contains("read-only", (await c.Fails("write_file", new { branch = "main", path = "/x", content = "x" })).Error);
        Assert.Contains("unknown argument 'colour'", (await c.Fails("stat", new { path = "/README.md", colour = "red" })).Error);
        Assert.Contains("'path' is required", (await c.Fails("stat", new { })).Error);
        Assert.Contains("must be a non-negative integer", (await c.Fails("read_file", new { path = "/README.md", offset = -1 })).Error);
        Assert.Contains("must be a string", (await c.Fails("read_file", new { path = 7 })).Error);
        Assert.Contains("does not occur", (await c.Fails("edit_file", new { branch = "b", path = "/README.md", old_string = "absent", new_string = "x" })).Error);
        Assert.Contains("no tool 'format_disk'", (await c.Fails("format_disk")).Error);
        Assert.Contains("invalid branch name", (await c.Fails("fork", new { name = "../evil" })).Error);
        Assert.Equal(2, (await c.Fails("remove", new { branch = "b", path = "/" })).Code);
        Assert.Contains("base64", (await c.Fails("write_file", new { branch = "b", path = "/x", content = "!!!", encoding = "base64" })).Error);
        // The server is still up and answers.
        Assert.Contains("b", (await c.Ok("list_branches")).AsArray().Select(x => (string)x!["name"]!));
    }

    [Fact]
    public async Task Files_are_resources_and_a_subscribed_one_is_notified_when_another_process_changes_it()
    {
        using var ws = new Workspace();
        await using var c = await ws.Stdio(allowRun: false);
        await c.Ok("fork", new { name = "w" });
        var resources = await c.ListResourcesAsync();
        Assert.Contains(resources, r => r.Uri == "daxfs://main/README.md");
        Assert.Contains(resources, r => r.Uri == "daxfs://w/src/app.py");
        Assert.Contains(await c.ListResourceTemplatesAsync(), t => t.UriTemplate == "daxfs://{branch}/{+path}");
        var read = await c.ReadResourceAsync("daxfs://w/README.md");
        Assert.Equal("hello\n", Assert.IsType<TextResourceContents>(Assert.Single(read.Contents)).Text);
        Assert.Equal(new byte[] { 0, 1, 2, 3, 255, 254 }, Assert.IsType<BlobResourceContents>(Assert.Single((await c.ReadResourceAsync("daxfs://main/data.bin")).Contents)).DecodedData.ToArray());

        var updated = new TaskCompletionSource<string>(TaskCreationOptions.RunContinuationsAsynchronously);
        await using (await c.SubscribeToResourceAsync("daxfs://w/README.md", (p, _) => { updated.TrySetResult(p.Uri); return ValueTask.CompletedTask; }))
        {
            // Another process (the CLI) writes the file.
            var put = Process.Start(new ProcessStartInfo("bash", ["-c", $"echo changed | dotnet '{Workspace.Daxfs}' put /README.md -b w -r '{ws.Region}'"]))!;
            put.WaitForExit();
            Assert.Equal(0, put.ExitCode);
            Assert.Same(updated.Task, await Task.WhenAny(updated.Task, Task.Delay(TimeSpan.FromSeconds(20))));
            Assert.Equal("daxfs://w/README.md", await updated.Task);
        }
        Assert.Equal("changed\n", Assert.IsType<TextResourceContents>(Assert.Single((await c.ReadResourceAsync("daxfs://w/README.md")).Contents)).Text);
        await Assert.ThrowsAsync<ModelContextProtocol.McpProtocolException>(async () => await c.ReadResourceAsync("daxfs://w/no-such-file"));
        await Assert.ThrowsAsync<ModelContextProtocol.McpProtocolException>(async () => await c.ReadResourceAsync("http://example.com/x"));
    }

    [Fact]
    public async Task The_tools_work_over_streamable_http_on_loopback()
    {
        using var ws = new Workspace();
        var (server, url) = ws.Http();
        try
        {
            Assert.StartsWith("http://127.0.0.1:", url);
            // A page elsewhere (DNS rebinding, or any site's script) is refused: another Host, or another Origin.
            using (var http = new HttpClient())
            {
                foreach (var (host, origin) in new[] { ("evil.example", (string?)null), ((string?)null, "http://evil.example") })
                {
                    using var req = new HttpRequestMessage(HttpMethod.Post, url) { Content = new StringContent("{}", System.Text.Encoding.UTF8, "application/json") };
                    if (host is not null) req.Headers.Host = host;
                    if (origin is not null) req.Headers.Add("Origin", origin);
                    Assert.Equal(System.Net.HttpStatusCode.Forbidden, (await http.SendAsync(req)).StatusCode);
                }
            }
            await using var c = await McpClient.CreateAsync(new HttpClientTransport(new HttpClientTransportOptions
            {
                Endpoint = new Uri(url), TransportMode = HttpTransportMode.StreamableHttp,
            }), new McpClientOptions { ProtocolVersion = "2025-11-25" });
            Assert.Contains("run", (await c.ListToolsAsync()).Select(t => t.Name));
            await c.Ok("fork", new { name = "h" });
            await c.Ok("edit_file", new { branch = "h", path = "/src/app.py", old_string = "return 41", new_string = "return 42" });
            Assert.Equal(0, (int)(await c.Ok("run", new { branch = "h", argv = new[] { "sh", "test.sh" } }))["exit_code"]!);
            Assert.Equal(1, (long)(await c.Ok("commit", new { branch = "h" }))["version"]!);
            Assert.Equal(1, (await c.Fails("read_file", new { path = "/nope" })).Code);
            var updated = new TaskCompletionSource<string>(TaskCreationOptions.RunContinuationsAsynchronously);
            await c.Ok("fork", new { name = "h2" });
            await using (await c.SubscribeToResourceAsync("daxfs://h2/README.md", (p, _) => { updated.TrySetResult(p.Uri); return ValueTask.CompletedTask; }))
            {
                await c.Ok("write_file", new { branch = "h2", path = "/README.md", content = "over http\n" });
                Assert.Same(updated.Task, await Task.WhenAny(updated.Task, Task.Delay(TimeSpan.FromSeconds(20))));
            }
        }
        finally
        {
            // SIGTERM: the server unmounts the run tool's mount and exits (a kill would leave the mount behind).
            using (var term = Process.Start("kill", ["-TERM", server.Id.ToString(System.Globalization.CultureInfo.InvariantCulture)])) term.WaitForExit();
            if (!server.WaitForExit(20_000)) server.Kill();
        }
        Assert.DoesNotContain("daxfs-mcp-", File.ReadAllText("/proc/self/mountinfo"));
    }

    [Fact]
    public async Task A_thousand_random_calls_each_get_a_result_or_a_tool_error_and_the_server_stays_up()
    {
        using var ws = new Workspace();
        await using var c = await ws.Stdio(allowRun: false);
        var listed = await c.ListToolsAsync();
        var tools = listed.Select(t => t.Name).Append("no_such_tool").ToArray();
        var rng = new Random(12345);
        string[] words = ["main", "b", "/", "/README.md", "/src", "/src/app.py", "..", "/../x", "", "daxfs", "\u0000", "x/y", "/a/b/c", "0", "1", "99", "-1", new string('z', 300)];
        object RandomValue() => rng.Next(6) switch
        {
            0 => words[rng.Next(words.Length)],
            1 => rng.Next(-5, 100000),
            2 => rng.Next(2) == 0,
            3 => new[] { words[rng.Next(words.Length)], words[rng.Next(words.Length)] },
            4 => new { nested = words[rng.Next(words.Length)] },
            _ => rng.NextDouble() * 1e12,
        };
        // Mostly well-typed values for the tool's own arguments (so calls get past the schema and reach the store),
        // now and then a wrong type, an unknown name or a missing required one.
        var schemas = listed.ToDictionary(t => t.Name, t => t.JsonSchema);
        object Typed(string type) => type switch
        {
            "integer" => rng.Next(4) == 0 ? rng.Next(0, 1 << 20) : rng.Next(0, 4),
            "boolean" => rng.Next(2) == 0,
            "array" => Enumerable.Range(0, rng.Next(1, 3)).Select(_ => words[rng.Next(words.Length)]).ToArray(),
            _ => words[rng.Next(words.Length)],
        };
        string[] argNames = ["name", "parent", "path", "branch", "offset", "content", "bogus"];
        int results = 0, errors = 0;
        await c.Ok("fork", new { name = "b" });
        for (int i = 0; i < 1000; i++)
        {
            string tool = tools[rng.Next(tools.Length)];
            var args = new Dictionary<string, object?>();
            if (schemas.TryGetValue(tool, out var schema))
            {
                var required = schema.TryGetProperty("required", out var req) ? req.EnumerateArray().Select(x => x.GetString()!).ToHashSet() : [];
                foreach (var prop in schema.GetProperty("properties").EnumerateObject())
                    if (rng.NextDouble() < (required.Contains(prop.Name) ? 0.95 : 0.4))
                        args[prop.Name] = rng.Next(8) == 0 ? RandomValue() : Typed(prop.Value.GetProperty("type").GetString()!);
            }
            if (rng.Next(10) == 0) args[argNames[rng.Next(argNames.Length)]] = RandomValue();
            var r = await c.CallToolAsync(tool, args);
            var body = JsonNode.Parse(Calls.Text(r)); // every answer is JSON: a result, or {error, code}
            if (r.IsError == true)
            {
                errors++;
                Assert.NotNull(body!["error"]);
                Assert.InRange((int)body["code"]!, 1, 3);
            }
            else
            {
                results++;
            }
        }
        Assert.True(results > 50 && errors > 50, $"{results} results, {errors} errors");
        Assert.NotNull(await c.Ok("list_branches"));
    }

    [Fact]
    public async Task The_reference_typescript_client_lists_the_tools_and_forks_writes_runs_diffs_and_commits()
    {
        string dir = Path.Combine(AppContext.BaseDirectory, "ts");
        string sdk = Path.Combine(dir, "node_modules", "@modelcontextprotocol", "sdk");
        if (!Directory.Exists(sdk))
        {
            var install = Process.Start(new ProcessStartInfo("npm", ["ci", "--no-audit", "--no-fund"]) { WorkingDirectory = dir, RedirectStandardOutput = true, RedirectStandardError = true })!;
            string err = install.StandardError.ReadToEnd();
            install.WaitForExit();
            Assert.True(install.ExitCode == 0, "npm ci failed (the test command installs node and npm): " + err);
        }
        using var ws = new Workspace();
        var psi = new ProcessStartInfo("node", ["client.mjs", "dotnet", Workspace.Daxfs, "mcp", "-r", ws.Region, "--allow-run"])
        {
            WorkingDirectory = dir, RedirectStandardOutput = true, RedirectStandardError = true,
        };
        using var p = Process.Start(psi)!;
        var stdout = p.StandardOutput.ReadToEndAsync();
        var stderr = p.StandardError.ReadToEndAsync();
        using (var hang = new CancellationTokenSource(TimeSpan.FromSeconds(120)))
            await p.WaitForExitAsync(hang.Token);
        string output = await stdout;
        Assert.True(p.ExitCode == 0, $"the TypeScript client failed: {await stderr}\n{output}");
        var report = JsonNode.Parse(output)!;
        Assert.True(report["tools"]!.AsArray().Count >= 18);
        Assert.Equal(0, (int)report["run"]!["exit_code"]!);
        Assert.Contains("+    return 42", (string)report["diff"]!["unified"]!);
        Assert.Equal(1, (int)report["commit"]!["version"]!);
        using var s = Store.Open(ws.Region);
        Assert.Contains("return 42", System.Text.Encoding.UTF8.GetString(s.Main.ReadAllBytes("/src/app.py")));
    }
}
