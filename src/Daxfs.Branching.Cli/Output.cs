using System.Text.Json;
using System.Text.Json.Serialization;
using Spectre.Console;

namespace Daxfs.Branching.Cli;

/// <summary>Human tables on a console, JSON for scripts.</summary>
internal static class Output
{
    public static readonly JsonSerializerOptions Json = new(JsonSerializerDefaults.Web)
    {
        WriteIndented = true,
        Converters = { new JsonStringEnumConverter(JsonNamingPolicy.CamelCase) },
    };

    /// <summary>The console for human output: plain text (no colors, wide lines) when redirected or NO_COLOR is set.</summary>
    public static IAnsiConsole Out { get; } = Create();

    private static IAnsiConsole Create()
    {
        bool plain = Console.IsOutputRedirected || Environment.GetEnvironmentVariable("NO_COLOR") is not null;
        var console = AnsiConsole.Create(new AnsiConsoleSettings
        {
            Ansi = plain ? AnsiSupport.No : AnsiSupport.Detect,
            ColorSystem = plain ? ColorSystemSupport.NoColors : ColorSystemSupport.Detect,
            Out = new AnsiConsoleOutput(Console.Out),
        });
        if (Console.IsOutputRedirected)
            console.Profile.Width = 200;
        return console;
    }

    public static void WriteJson<T>(T value) => Console.Out.WriteLine(JsonSerializer.Serialize(value, Json));

    /// <summary>
    /// A file's attributes as JSON: the one object every verb prints for a file (stat, and each entry of ls); see
    /// docs/cli.md. Modes are octal strings, times ISO 8601 (and nanoseconds for the access time).
    /// </summary>
    public static object FileJson(Branch b, string path, FileStat s, bool xattrs)
    {
        // Attribute values as text when they are UTF-8 without NUL, else as base64 (with "base64:" before them).
        static string Show(byte[] v) => v.AsSpan().IndexOf((byte)0) < 0 && System.Text.Unicode.Utf8.IsValid(v)
            ? System.Text.Encoding.UTF8.GetString(v) : "base64:" + Convert.ToBase64String(v);
        return new
        {
            path = s.Path, inode = s.Inode, kind = s.Kind, mode = Convert.ToString(s.Mode, 8), uid = s.Uid, gid = s.Gid, size = s.Size,
            modified = s.ModifiedTime, changed = s.ChangedTime, accessedNs = s.AccessedTimeNs, links = s.LinkCount,
            device = s.Device == 0 ? null : (long?)s.Device,
            target = s.Kind == Index.NodeKind.Symlink ? b.ReadLink(path) : null,
            xattrs = xattrs ? b.GetExtendedAttributes(path).ToDictionary(kv => kv.Key, kv => Show(kv.Value)) : null,
        };
    }

    /// <summary>An error as JSON on standard error (with --json): the message and the exit code it comes with.</summary>
    public static void WriteJsonError(string message, int code)
        => Console.Error.WriteLine(JsonSerializer.Serialize(new { error = message, code }, Json));

    public static string Bytes(long n) => n switch
    {
        < 1024 => $"{n} B",
        < 1L << 20 => $"{n / 1024.0:0.#} KiB",
        < 1L << 30 => $"{n / (double)(1L << 20):0.#} MiB",
        _ => $"{n / (double)(1L << 30):0.##} GiB",
    };

    public static string Mode(uint perm, Index.NodeKind kind)
    {
        char t = kind switch
        {
            Index.NodeKind.Directory => 'd', Index.NodeKind.Symlink => 'l', Index.NodeKind.Fifo => 'p', Index.NodeKind.Socket => 's',
            Index.NodeKind.CharDevice => 'c', Index.NodeKind.BlockDevice => 'b', _ => '-',
        };
        var s = new char[10];
        s[0] = t;
        const string rwx = "rwxrwxrwx";
        for (int i = 0; i < 9; i++) s[i + 1] = (perm & (1u << (8 - i))) != 0 ? rwx[i] : '-';
        return new string(s);
    }

    public static string Time(DateTimeOffset t) => t.UtcDateTime.ToString("yyyy-MM-dd HH:mm:ss'Z'", System.Globalization.CultureInfo.InvariantCulture);

    public static Table Table(params string[] columns)
    {
        var table = new Table().Border(TableBorder.Simple);
        foreach (var c in columns) table.AddColumn(new TableColumn(c));
        return table;
    }

    public static string Escape(string s) => Markup.Escape(s);

    /// <summary>Runs <paramref name="work"/> with a progress bar when the output is a terminal, plainly otherwise.</summary>
    public static T WithProgress<T>(string title, Func<Action<double, string>, T> work)
    {
        if (Console.IsOutputRedirected || Console.IsErrorRedirected)
            return work((_, _) => { });
        T result = default!;
        AnsiConsole.Progress()
            .AutoClear(true)
            .Columns(new TaskDescriptionColumn(), new ProgressBarColumn(), new PercentageColumn(), new RemainingTimeColumn())
            .Start(ctx =>
            {
                var task = ctx.AddTask(Escape(title), maxValue: 1.0);
                result = work((fraction, text) =>
                {
                    task.Value = Math.Clamp(fraction, 0, 1);
                    task.Description = Escape(text);
                });
                task.Value = 1.0;
            });
        return result;
    }
}
