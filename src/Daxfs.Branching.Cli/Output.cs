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
