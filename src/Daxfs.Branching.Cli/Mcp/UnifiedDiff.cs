using System.Text;

namespace Daxfs.Branching.Cli.Mcp;

/// <summary>Unified diffs of text files: the shortest edit script between their lines (Myers), with 3 lines of context.</summary>
internal static class UnifiedDiff
{
    private const int Context = 3;

    /// <summary>The most edits looked for; past it the diff says the files differ and stops.</summary>
    private const int MaxEdits = 4000;

    /// <summary>True for bytes that read as UTF-8 text without NULs.</summary>
    public static bool IsText(byte[] bytes)
    {
        if (Array.IndexOf(bytes, (byte)0) >= 0) return false;
        try { _ = new UTF8Encoding(false, true).GetString(bytes); return true; }
        catch (DecoderFallbackException) { return false; }
    }

    private static string[] Lines(byte[] bytes)
    {
        string s = Encoding.UTF8.GetString(bytes);
        if (s.Length == 0) return [];
        var lines = s.Split('\n');
        return s.EndsWith('\n') ? lines[..^1] : lines;
    }

    public static string Make(string oldPath, string newPath, byte[] before, byte[] after, ChangeKind kind)
    {
        var a = Lines(before);
        var b = Lines(after);
        var sb = new StringBuilder();
        sb.Append("--- ").Append(kind == ChangeKind.Added ? "/dev/null" : "a" + oldPath).Append('\n');
        sb.Append("+++ ").Append(kind == ChangeKind.Deleted ? "/dev/null" : "b" + newPath).Append('\n');
        var ops = Script(a, b);
        if (ops is null)
            return sb.Append("@@ more than ").Append(MaxEdits).Append(" lines differ; not drawn @@\n").ToString();
        // ops: (kind ' ', '-', '+', index into a or b). Hunks: runs of changes with up to Context lines around them.
        int n = ops.Count;
        int i = 0;
        while (i < n)
        {
            while (i < n && ops[i].Op == ' ') i++;
            if (i >= n) break;
            int start = Math.Max(0, i - Context);
            int end = i;
            while (true)
            {
                while (end < n && ops[end].Op != ' ') end++;
                int next = end;
                while (next < n && ops[next].Op == ' ') next++;
                if (next < n && next - end <= 2 * Context) { end = next; continue; }
                end = Math.Min(n, end + Context);
                break;
            }
            int aStart = 0, bStart = 0, aCount = 0, bCount = 0;
            for (int k = 0; k < start; k++) { if (ops[k].Op != '+') aStart++; if (ops[k].Op != '-') bStart++; }
            for (int k = start; k < end; k++) { if (ops[k].Op != '+') aCount++; if (ops[k].Op != '-') bCount++; }
            sb.Append("@@ -").Append(aCount == 0 ? aStart : aStart + 1).Append(',').Append(aCount)
              .Append(" +").Append(bCount == 0 ? bStart : bStart + 1).Append(',').Append(bCount).Append(" @@\n");
            for (int k = start; k < end; k++)
                sb.Append(ops[k].Op).Append(ops[k].Op == '+' ? b[ops[k].Index] : a[ops[k].Index]).Append('\n');
            i = end;
        }
        return sb.ToString();
    }

    /// <summary>The edit script from <paramref name="a"/> to <paramref name="b"/>, or null when it would take more than <see cref="MaxEdits"/> edits.</summary>
    private static List<(char Op, int Index)>? Script(string[] a, string[] b)
    {
        int n = a.Length, m = b.Length, max = Math.Min(n + m, MaxEdits);
        int offset = max + 1;
        var v = new int[2 * max + 3];
        var trace = new List<int[]>();
        int found = -1;
        for (int d = 0; d <= max && found < 0; d++)
        {
            trace.Add((int[])v.Clone());
            for (int k = -d; k <= d; k += 2)
            {
                int x = k == -d || (k != d && v[offset + k - 1] < v[offset + k + 1]) ? v[offset + k + 1] : v[offset + k - 1] + 1;
                int y = x - k;
                while (x < n && y < m && a[x] == b[y]) { x++; y++; }
                v[offset + k] = x;
                if (x >= n && y >= m) { found = d; break; }
            }
        }
        if (found < 0) return null;
        var ops = new List<(char, int)>();
        int cx = n, cy = m;
        for (int d = found; d > 0; d--)
        {
            var pv = trace[d];
            int k = cx - cy;
            int prevK = k == -d || (k != d && pv[offset + k - 1] < pv[offset + k + 1]) ? k + 1 : k - 1;
            int px = pv[offset + prevK], py = px - prevK;
            while (cx > px && cy > py) { ops.Add((' ', --cx)); cy--; }
            if (cx == px) ops.Add(('+', --cy));
            else ops.Add(('-', --cx));
        }
        while (cx > 0 && cy > 0) { ops.Add((' ', --cx)); cy--; }
        ops.Reverse();
        return ops;
    }
}
