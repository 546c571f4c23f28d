using System.Diagnostics;
using System.Text.Json;
using System.Text.Json.Nodes;
using ModelContextProtocol.Client;
using ModelContextProtocol.Protocol;

namespace Daxfs.Branching.Mcp.Tests;

/// <summary>A region made from a small tree, with the daxfs tool beside the tests.</summary>
public sealed class Workspace : IDisposable
{
    public string Region { get; } = Path.Combine("/dev/shm", $"daxfs-mcp-test-{Guid.NewGuid():N}.daxfs");

    public static string Daxfs => Path.Combine(AppContext.BaseDirectory, "daxfs.dll");

    public Workspace()
    {
        var b = new BaseImageBuilder();
        b.AddFile("/README.md", "hello\n"u8);
        b.AddFile("/src/app.py", "def answer():\n    return 41\n\nprint(answer())\n"u8);
        b.AddFile("/src/util.py", "X = 1\nX = 1\n"u8);
        b.AddFile("/data.bin", [0, 1, 2, 3, 255, 254]);
        b.AddFile("/test.sh", "#!/bin/sh\ngrep -q 'return 42' src/app.py\n"u8, mode: 0x1ED);
        Store.Create(Region, b, new StoreOptions { Capacity = 128L << 20 }).Dispose();
    }

    public void Dispose() => File.Delete(Region);

    /// <summary>A client of `daxfs mcp -r REGION` over stdio, the SDK's own client.</summary>
    public async Task<McpClient> Stdio(bool allowRun = true)
    {
        var args = new List<string> { Daxfs, "mcp", "-r", Region };
        if (allowRun) args.Add("--allow-run");
        var transport = new StdioClientTransport(new StdioClientTransportOptions
        {
            Name = "daxfs", Command = "dotnet", Arguments = args, StandardErrorLines = line => Console.Error.WriteLine("[daxfs mcp] " + line),
        });
        return await McpClient.CreateAsync(transport, new McpClientOptions { ProtocolVersion = "2025-11-25" });
    }

    /// <summary>Starts `daxfs mcp --http 0` and returns the process and the URL it printed.</summary>
    public (Process Server, string Url) Http(bool allowRun = true)
    {
        var psi = new ProcessStartInfo("dotnet") { RedirectStandardError = true, RedirectStandardOutput = true, RedirectStandardInput = true };
        foreach (var a in new[] { Daxfs, "mcp", "-r", Region, "--http", "0" }.Concat(allowRun ? ["--allow-run"] : Array.Empty<string>()))
            psi.ArgumentList.Add(a);
        var p = Process.Start(psi)!;
        var deadline = DateTime.UtcNow.AddSeconds(60);
        while (DateTime.UtcNow < deadline)
        {
            string? line = p.StandardError.ReadLine();
            if (line is null) break;
            int at = line.IndexOf("http://127.0.0.1:", StringComparison.Ordinal);
            if (at >= 0)
            {
                _ = p.StandardError.ReadToEndAsync(); // keep draining
                return (p, line[at..].Trim());
            }
        }
        p.Kill();
        throw new InvalidOperationException("daxfs mcp --http did not say where it serves");
    }
}

public static class Calls
{
    /// <summary>Calls a tool and returns its JSON result; fails the test on a tool error.</summary>
    public static async Task<JsonNode> Ok(this McpClient c, string tool, object? args = null)
    {
        var r = await c.CallToolAsync(tool, Args(args));
        string text = Text(r);
        Assert.True(r.IsError != true, $"{tool} failed: {text}");
        return JsonNode.Parse(text)!;
    }

    /// <summary>Calls a tool that must fail; returns the CLI's error object {error, code}.</summary>
    public static async Task<(string Error, int Code)> Fails(this McpClient c, string tool, object? args = null)
    {
        var r = await c.CallToolAsync(tool, Args(args));
        string text = Text(r);
        Assert.True(r.IsError == true, $"{tool} should have failed: {text}");
        var o = JsonNode.Parse(text)!;
        return ((string)o["error"]!, (int)o["code"]!);
    }

    public static string Text(CallToolResult r) => string.Concat(r.Content.OfType<TextContentBlock>().Select(b => b.Text));

    private static Dictionary<string, object?> Args(object? args) => args is null ? []
        : JsonSerializer.Deserialize<Dictionary<string, JsonElement>>(JsonSerializer.Serialize(args))!.ToDictionary(kv => kv.Key, kv => (object?)kv.Value);
}
