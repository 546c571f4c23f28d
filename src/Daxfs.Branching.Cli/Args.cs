using System.Globalization;

namespace Daxfs.Branching.Cli;

/// <summary>Bad command-line input: exit code 2.</summary>
internal sealed class UsageException(string message) : Exception(message);

/// <summary>One option a verb accepts.</summary>
internal sealed record OptionSpec(string Long, string? Short, string? ValueName, string Help)
{
    public bool TakesValue => ValueName is not null;
}

/// <summary>A parsed command line for one verb.</summary>
internal sealed class Args
{
    private readonly Dictionary<string, string?> _options = new(StringComparer.Ordinal);

    public List<string> Positional { get; } = [];

    public static Args Parse(IReadOnlyList<string> argv, IReadOnlyList<OptionSpec> specs, string verb)
    {
        var a = new Args();
        bool onlyPositional = false;
        for (int i = 0; i < argv.Count; i++)
        {
            string arg = argv[i];
            if (onlyPositional || arg == "-" || !arg.StartsWith('-') || IsNegativeNumber(arg))
            {
                a.Positional.Add(arg);
                continue;
            }
            if (arg == "--")
            {
                onlyPositional = true;
                continue;
            }
            string name = arg, value = "";
            bool inline = false;
            int eq = arg.IndexOf('=', StringComparison.Ordinal);
            if (arg.StartsWith("--", StringComparison.Ordinal) && eq > 0)
            {
                name = arg[..eq];
                value = arg[(eq + 1)..];
                inline = true;
            }
            var spec = specs.FirstOrDefault(s => s.Long == name || s.Short == name)
                ?? throw new UsageException($"unknown option '{name}' for '{verb}'");
            if (spec.TakesValue)
            {
                if (!inline)
                {
                    if (i + 1 >= argv.Count)
                        throw new UsageException($"option {spec.Long} needs a value ({spec.ValueName})");
                    // An option of this verb where the value should be is a missing value, not the value.
                    if (specs.Any(s => s.Long == argv[i + 1] || s.Short == argv[i + 1]))
                        throw new UsageException($"option {spec.Long} needs a value ({spec.ValueName}), not the option '{argv[i + 1]}'");
                    value = argv[++i];
                }
                a._options[spec.Long] = value;
            }
            else
            {
                if (inline)
                    throw new UsageException($"option {spec.Long} takes no value");
                a._options[spec.Long] = null;
            }
        }
        return a;
    }

    private static bool IsNegativeNumber(string s) => s.Length > 1 && s[0] == '-' && char.IsAsciiDigit(s[1]);

    public bool Flag(string name) => _options.ContainsKey(name);

    public string? Value(string name) => _options.TryGetValue(name, out var v) ? v : null;

    public string Arg(int index, string name)
        => index < Positional.Count ? Positional[index] : throw new UsageException($"missing argument {name}");

    public long? Long(string name)
    {
        string? v = Value(name);
        if (v is null) return null;
        if (!long.TryParse(v, NumberStyles.None, CultureInfo.InvariantCulture, out long n))
            throw new UsageException($"{name}: '{v}' is not a non-negative whole number");
        return n;
    }

    /// <summary>Parses sizes like 4096, 64K, 64M, 4GiB, 1.5G (K, M, G, T are powers of 1024; a B, iB or b suffix is allowed).</summary>
    public static long ParseSize(string text, string what)
    {
        string s = text.Trim();
        int i = 0;
        while (i < s.Length && (char.IsAsciiDigit(s[i]) || s[i] == '.')) i++;
        if (i == 0)
            throw new UsageException($"{what}: '{text}' is not a size (examples: 4096, 64M, 4GiB)");
        // decimal, not double: every byte count up to long.MaxValue is exact (a double rounds above 2^53).
        if (!decimal.TryParse(s[..i], NumberStyles.AllowDecimalPoint, CultureInfo.InvariantCulture, out decimal number))
            throw new UsageException($"{what}: '{text}' is not a size (examples: 4096, 64M, 4GiB)");
        string unit = s[i..].Trim().ToUpperInvariant();
        long scale = unit switch
        {
            "" or "B" => 1,
            "K" or "KB" or "KIB" => 1L << 10,
            "M" or "MB" or "MIB" => 1L << 20,
            "G" or "GB" or "GIB" => 1L << 30,
            "T" or "TB" or "TIB" => 1L << 40,
            _ => throw new UsageException($"{what}: unknown unit '{s[i..]}' in '{text}' (use K, M, G or T)"),
        };
        if (number > long.MaxValue / scale)
            throw new UsageException($"{what}: '{text}' is too large");
        decimal bytes = number * scale;
        if (bytes != decimal.Floor(bytes))
            throw new UsageException($"{what}: '{text}' is not a whole number of bytes");
        return (long)bytes;
    }
}
