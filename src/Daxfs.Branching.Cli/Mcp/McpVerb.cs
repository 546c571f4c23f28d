using System.Runtime.InteropServices;

namespace Daxfs.Branching.Cli.Mcp;

/// <summary>The mcp verb.</summary>
internal static class McpVerb
{
    public static int Run(Context c)
    {
        string region = c.RegionPath;
        if (!File.Exists(region))
            throw new FileNotFoundException($"{region}: region not found (create one with 'daxfs mkfs')", region);
        long? port = c.Get(Verbs.Mcp.Http);
        if (port is > 65535)
            throw new UsageException($"--http {port}: a port is 0 to 65535");
        using var host = new McpServerHost(region, c.Get(Verbs.Mcp.AllowRun));
        using var cancel = new CancellationTokenSource();
        using var term = PosixSignalRegistration.Create(PosixSignal.SIGTERM, ctx => { ctx.Cancel = true; cancel.Cancel(); });
        using var intr = PosixSignalRegistration.Create(PosixSignal.SIGINT, ctx => { ctx.Cancel = true; cancel.Cancel(); });
        // A closed terminal or SIGQUIT ends the server the same way, so the run tool's mount goes with it.
        using var hup = PosixSignalRegistration.Create(PosixSignal.SIGHUP, ctx => { ctx.Cancel = true; cancel.Cancel(); });
        using var quit = PosixSignalRegistration.Create(PosixSignal.SIGQUIT, ctx => { ctx.Cancel = true; cancel.Cancel(); });
        if (port is long p)
            host.RunHttp((int)p, url => Console.Error.WriteLine($"daxfs mcp: serving {region} at {url}"), cancel.Token);
        else
            host.RunStdio(cancel.Token);
        return Program.Ok;
    }
}
