using System.Collections.Concurrent;
using System.Text;
using System.Text.Json;
using System.Text.Json.Nodes;
using Daxfs.Branching.Index;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Hosting;
using Microsoft.AspNetCore.Http;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;
using ModelContextProtocol;
using ModelContextProtocol.AspNetCore;
using ModelContextProtocol.Protocol;
using ModelContextProtocol.Server;

namespace Daxfs.Branching.Cli.Mcp;

/// <summary>
/// <c>daxfs mcp</c>: the store over the Model Context Protocol, on stdio (the default) or streamable HTTP bound to
/// 127.0.0.1. Tools (<see cref="McpTools"/>), files of every live branch as resources <c>daxfs://BRANCH/PATH</c>,
/// and notifications when a subscribed file changes (whoever changed it: this server, a mount, another process).
/// </summary>
internal sealed class McpServerHost : IDisposable
{
    /// <summary>The protocol revision served: the classic handshake, under which subscriptions work for every client.</summary>
    private const string ProtocolVersion = "2025-11-25";

    private readonly Store _store;
    private readonly McpTools _tools;
    private readonly Runner? _runner;
    private readonly Subscriptions _subscriptions;

    public McpServerHost(string regionPath, bool allowRun)
    {
        _store = Store.Open(regionPath);
        _runner = allowRun ? new Runner(regionPath) : null;
        _tools = new McpTools(_store, _runner);
        _subscriptions = new Subscriptions(this);
    }

    public void Dispose()
    {
        _subscriptions.Dispose();
        _runner?.Dispose();
        _store.Dispose();
    }

    private void Configure(IMcpServerBuilder mcp) => mcp
        .WithListToolsHandler((_, _) => ValueTask.FromResult(new ListToolsResult
        {
            Tools = [.. _tools.Tools.Select(t => new Tool { Name = t.Name, Description = t.Description, InputSchema = JsonSerializer.SerializeToElement(t.Schema) })],
        }))
        .WithCallToolHandler((ctx, _) => ValueTask.FromResult(Call(ctx.Params?.Name ?? "", ctx.Params?.Arguments)))
        .WithListResourcesHandler((_, _) => ValueTask.FromResult(new ListResourcesResult { Resources = ListResources() }))
        .WithListResourceTemplatesHandler((_, _) => ValueTask.FromResult(new ListResourceTemplatesResult
        {
            ResourceTemplates =
            [
                new ResourceTemplate
                {
                    UriTemplate = "daxfs://{branch}/{+path}", Name = "file",
                    Description = "A file of a branch (main, or any live branch), read as it is now.",
                },
            ],
        }))
        .WithReadResourceHandler((ctx, _) => ValueTask.FromResult(ReadResource(ctx.Params?.Uri ?? "")))
        .WithSubscribeToResourcesHandler((ctx, ct) =>
        {
            string uri = ctx.Params?.Uri ?? throw new McpProtocolException("resources/subscribe needs a uri", McpErrorCode.InvalidParams);
            Parse(uri); // a malformed URI is refused at once
            _subscriptions.Add(ctx.Server, uri);
            return ValueTask.FromResult(new EmptyResult());
        })
        .WithUnsubscribeFromResourcesHandler((ctx, _) =>
        {
            _subscriptions.Remove(ctx.Server, ctx.Params?.Uri ?? "");
            return ValueTask.FromResult(new EmptyResult());
        });

    private static void Options(McpServerOptions o)
    {
        o.ServerInfo = new Implementation { Name = "daxfs", Version = Commands.Version };
        o.ProtocolVersion = ProtocolVersion;
        o.ServerInstructions = "A versioned, branching file store. Fork a branch to try something (fork), change its files "
            + "(write_file, edit_file, move, remove), check it (read_file, diff, run), then keep it (commit) or throw it away "
            + "(abort). Main is read-only; every change happens in a branch.";
    }

    private static void QuietLogs(ILoggingBuilder logging)
    {
        logging.ClearProviders();
        logging.AddConsole(o => o.LogToStandardErrorThreshold = LogLevel.Trace); // stdout is the protocol on stdio
        logging.AddFilter("ModelContextProtocol", LogLevel.Warning);
        logging.AddFilter("Microsoft", LogLevel.Warning);
    }

    /// <summary>Serves on stdin and stdout until stdin closes.</summary>
    public void RunStdio(CancellationToken cancel)
    {
        var builder = Host.CreateApplicationBuilder([]);
        QuietLogs(builder.Logging);
        var mcp = builder.Services.AddMcpServer(Options).WithStdioServerTransport();
        Configure(mcp);
        using var host = builder.Build();
        host.RunAsync(cancel).GetAwaiter().GetResult();
    }

    /// <summary>Serves streamable HTTP at http://127.0.0.1:PORT/mcp until cancelled; <paramref name="started"/> gets the URL.</summary>
    public void RunHttp(int port, Action<string> started, CancellationToken cancel)
    {
        var builder = WebApplication.CreateSlimBuilder();
        builder.WebHost.UseUrls($"http://127.0.0.1:{port}"); // loopback only: the tools act on the region with this process's rights
        QuietLogs(builder.Logging);
        var mcp = builder.Services.AddMcpServer(Options).WithHttpTransport(o => o.SessionMode = HttpServerSessionMode.Stateful);
        Configure(mcp);
        using var app = builder.Build();
        // DNS rebinding: a web page's script can reach 127.0.0.1 under a name it controls. Requests must name this
        // machine's loopback as their host, and come from no page or a page of the loopback (the MCP specification's
        // Origin check).
        app.Use(async (ctx, next) =>
        {
            string? origin = ctx.Request.Headers.Origin;
            bool hostOk = Loopback(ctx.Request.Host.Host);
            bool originOk = string.IsNullOrEmpty(origin) || (global::System.Uri.TryCreate(origin, UriKind.Absolute, out var o) && Loopback(o.Host));
            if (!hostOk || !originOk)
            {
                ctx.Response.StatusCode = StatusCodes.Status403Forbidden;
                await ctx.Response.WriteAsync($"daxfs mcp serves the loopback only (Host {ctx.Request.Host}, Origin {origin ?? "none"})", cancel).ConfigureAwait(false);
                return;
            }
            await next(ctx).ConfigureAwait(false);
        });
        app.MapMcp("/mcp");
        app.StartAsync(cancel).GetAwaiter().GetResult();
        started(app.Urls.First() + "/mcp");
        app.WaitForShutdownAsync(cancel).GetAwaiter().GetResult();
    }

    private static bool Loopback(string host) => host is "127.0.0.1" or "localhost" or "::1" or "[::1]";

    // ------------------------------------------------------------------ tools

    private CallToolResult Call(string name, IDictionary<string, JsonElement>? arguments)
    {
        try
        {
            var args = new JsonObject();
            foreach (var (k, v) in arguments ?? new Dictionary<string, JsonElement>())
                args[k] = JsonNode.Parse(v.GetRawText());
            var result = _tools.Call(name, args);
            return new CallToolResult { Content = [new TextContentBlock { Text = result.ToJsonString(s_json) }] };
        }
        catch (ToolError e)
        {
            return Error(e.Message, e.Code);
        }
        catch (Exception e) when (e is JsonException or InvalidOperationException or FormatException or OverflowException)
        {
            return Error($"{name}: malformed arguments: {e.Message}", Program.Usage);
        }
    }

    private static readonly JsonSerializerOptions s_json = new() { WriteIndented = false };

    /// <summary>A tool error: the CLI's JSON error object (<c>{"error", "code"}</c>), as its --json prints on failure.</summary>
    private static CallToolResult Error(string message, int code) => new()
    {
        IsError = true,
        Content = [new TextContentBlock { Text = new JsonObject { ["error"] = message, ["code"] = code }.ToJsonString() }],
    };

    // ------------------------------------------------------------------ resources

    /// <summary>The most files listed as resources (larger trees are reached through the template).</summary>
    private const int MaxListed = 1000;

    private List<Resource> ListResources()
    {
        var list = new List<Resource>();
        _tools.Locked(() =>
        {
            var branches = new[] { "main" }.Concat(_store.ListBranches().Where(b => b.Status == BranchStatus.Live).Select(b => b.Name));
            foreach (var name in branches)
            {
                var b = _store.GetBranch(name);
                var stack = new Stack<string>([ "/" ]);
                while (stack.Count > 0 && list.Count < MaxListed)
                {
                    string dir = stack.Pop();
                    foreach (var e in b.List(dir))
                    {
                        string path = dir == "/" ? "/" + e.Name : dir + "/" + e.Name;
                        if (e.Kind == NodeKind.Directory) stack.Push(path);
                        else if (e.Kind == NodeKind.File && list.Count < MaxListed)
                            list.Add(new Resource { Uri = Uri(name, path), Name = name + ":" + path, MimeType = "application/octet-stream" });
                    }
                }
            }
            return 0;
        });
        return list;
    }

    internal static string Uri(string branch, string path) =>
        "daxfs://" + branch + string.Join('/', path.Split('/').Select(global::System.Uri.EscapeDataString));

    /// <summary>BRANCH and PATH of <c>daxfs://BRANCH/PATH</c>; a JSON-RPC error (invalid params) when it is not one.</summary>
    internal static (string Branch, string Path) Parse(string uri)
    {
        const string Scheme = "daxfs://";
        if (!uri.StartsWith(Scheme, StringComparison.Ordinal))
            throw new McpProtocolException($"{uri}: not a daxfs://BRANCH/PATH URI", McpErrorCode.InvalidParams);
        string rest = uri[Scheme.Length..];
        int slash = rest.IndexOf('/', StringComparison.Ordinal);
        if (slash <= 0)
            throw new McpProtocolException($"{uri}: not a daxfs://BRANCH/PATH URI", McpErrorCode.InvalidParams);
        string branch = rest[..slash], path = global::System.Uri.UnescapeDataString(rest[slash..]);
        if (branch != "main" && Store.BranchNameProblem(branch) is { } why)
            throw new McpProtocolException($"{uri}: {why}", McpErrorCode.InvalidParams);
        return (branch, path);
    }

    private ReadResourceResult ReadResource(string uri)
    {
        var (branch, path) = Parse(uri);
        try
        {
            return _tools.Locked(() =>
            {
                var b = _store.GetBranch(branch);
                var st = b.Stat(path);
                if (st.Kind != NodeKind.File)
                    throw new McpProtocolException($"{uri}: not a regular file", McpErrorCode.ResourceNotFound);
                if (st.Size > McpTools.MaxWrite)
                    throw new McpProtocolException($"{uri}: {st.Size} bytes; read it in parts with the read_file tool", McpErrorCode.InvalidParams);
                var bytes = b.ReadAllBytes(path);
                ResourceContents contents = UnifiedDiff.IsText(bytes)
                    ? new TextResourceContents { Uri = uri, MimeType = "text/plain", Text = Encoding.UTF8.GetString(bytes) }
                    : BlobResourceContents.FromBytes(bytes, uri, "application/octet-stream");
                return new ReadResourceResult { Contents = [contents] };
            });
        }
        catch (Exception e) when (e is not McpProtocolException && Program.ExitCodeOf(e) is not null)
        {
            throw new McpProtocolException($"{uri}: {Program.MessageOf(e)}", McpErrorCode.ResourceNotFound);
        }
    }

    /// <summary>What a subscribed URI looks like now: its kind, size, time and inode, or why it cannot be read.</summary>
    internal string Fingerprint(string uri)
    {
        try
        {
            var (branch, path) = Parse(uri);
            return _tools.Locked(() =>
            {
                var st = _store.GetBranch(branch).Stat(path);
                return $"{st.Kind} {st.Size} {st.ModifiedTimeNs} {st.Inode} {st.ChangedTime.Ticks}";
            });
        }
        catch (Exception e) when (e is McpProtocolException || Program.ExitCodeOf(e) is not null)
        {
            return "gone: " + e.GetType().Name;
        }
    }

    /// <summary>
    /// Subscribed URIs, per client session, and a watcher that checks them every quarter second and notifies the
    /// sessions whose files changed (a change by any process shows: the store reads the region again).
    /// </summary>
    private sealed class Subscriptions : IDisposable
    {
        private readonly McpServerHost _host;
        private readonly ConcurrentDictionary<McpServer, ConcurrentDictionary<string, string>> _sessions = new();
        private readonly CancellationTokenSource _stop = new();
        private readonly Thread _watcher;

        public Subscriptions(McpServerHost host)
        {
            _host = host;
            _watcher = new Thread(Watch) { IsBackground = true, Name = "daxfs-mcp-watch" };
            _watcher.Start();
        }

        /// <summary>Subscriptions one session may hold (each is checked four times a second).</summary>
        public const int MaxPerSession = 1000;

        public void Add(McpServer server, string uri)
        {
            var uris = _sessions.GetOrAdd(server, _ => new());
            if (uris.Count >= MaxPerSession && !uris.ContainsKey(uri))
                throw new McpProtocolException($"a session holds at most {MaxPerSession} subscriptions; unsubscribe from some first", McpErrorCode.InvalidParams);
            uris[uri] = _host.Fingerprint(uri);
        }

        public void Remove(McpServer server, string uri)
        {
            if (_sessions.TryGetValue(server, out var uris)) uris.TryRemove(uri, out _);
        }

        private void Watch()
        {
            while (!_stop.Token.WaitHandle.WaitOne(250))
            {
                foreach (var (server, uris) in _sessions)
                    foreach (var (uri, seen) in uris)
                    {
                        string now = _host.Fingerprint(uri);
                        if (now == seen) continue;
                        uris[uri] = now;
                        try
                        {
                            server.SendNotificationAsync(NotificationMethods.ResourceUpdatedNotification,
                                new ResourceUpdatedNotificationParams { Uri = uri }, cancellationToken: _stop.Token).GetAwaiter().GetResult();
                        }
                        catch (Exception e) when (e is not OutOfMemoryException)
                        {
                            _sessions.TryRemove(server, out _); // the session is gone
                        }
                    }
            }
        }

        public void Dispose()
        {
            _stop.Cancel();
            _watcher.Join(TimeSpan.FromSeconds(2));
            _stop.Dispose();
        }
    }
}
