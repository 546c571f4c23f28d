using System.Globalization;
using Daxfs.Branching.Index;
using Spectre.Console;

namespace Daxfs.Branching.Cli;

internal static class FileVerbs
{
    private static readonly CultureInfo s_inv = CultureInfo.InvariantCulture;

    public static int Mkfs(Context c)
    {
        string source = c.Get(Verbs.Mkfs.Source);
        string region = c.RegionPath;
        if (!Directory.Exists(source))
            throw new UsageException($"{source}: source directory not found");
        long capacity = c.Get(Verbs.Mkfs.Capacity) ?? 0;
        if (c.Given(Verbs.Mkfs.Capacity) && capacity == 0)
            throw new UsageException("--capacity 0: a region needs a size; leave --capacity out for the default (the base image plus 1 GiB)");
        long maxCapacity = c.Get(Verbs.Mkfs.MaxCapacity) ?? 0;
        if (c.Given(Verbs.Mkfs.MaxCapacity) && maxCapacity == 0)
            throw new UsageException("--max-capacity 0: give a size, or leave it out for the default (twice the capacity, at least 16G)");
        long slotCount = c.Get(Verbs.Mkfs.Slots) ?? 4096;
        if (slotCount is < 2 or > 1 << 20)
            throw new UsageException($"--slots: {slotCount} is out of range (2 to {1 << 20})");
        int slots = (int)slotCount;
        bool force = c.Get(Verbs.Mkfs.Force);
        if (File.Exists(region) && !force && new FileInfo(region).LinkTarget is null) // (a link is refused by the create, naming it)
            throw new IOException($"{region}: region exists; pass --force to replace it");
        var builder = BaseImageBuilder.FromDirectory(source, c.Get(Verbs.Mkfs.Strict) ? UnsupportedEntryPolicy.Refuse : UnsupportedEntryPolicy.Warn);
        foreach (var w in builder.Warnings)
            Console.Error.WriteLine($"daxfs: warning: {w}");
        var sw = System.Diagnostics.Stopwatch.StartNew();
        var usage = Output.WithProgress("building base image", report =>
        {
            var progress = new SyncProgress<BuildProgress>(p => report(
                p.BytesTotal > 0 ? (double)p.BytesDone / p.BytesTotal : (double)p.FilesDone / Math.Max(1, p.FilesTotal),
                $"{p.FilesDone}/{p.FilesTotal} entries"));
            using var store = Store.Create(region, builder, new StoreOptions { Capacity = capacity, MaxCapacity = maxCapacity, BranchSlots = slots, Overwrite = force, Progress = progress, Sparse = c.Get(Verbs.Mkfs.Sparse) });
            return store.Usage;
        });
        if (c.Json)
        {
            Output.WriteJson(new { region, entries = builder.EntryCount, contentBytes = builder.ContentBytes, warnings = builder.Warnings, usage, seconds = sw.Elapsed.TotalSeconds });
            return Program.Ok;
        }
        Console.Out.WriteLine($"built {region}: {builder.EntryCount} entries, {Output.Bytes(builder.ContentBytes)} of content " +
            $"({Output.Bytes(usage.BaseImageBytes)} stored), capacity {Output.Bytes(usage.Capacity)}, in {sw.Elapsed.TotalSeconds:0.00} s");
        return Program.Ok;
    }

    /// <summary>Calls back on the reporting thread (Progress&lt;T&gt; would post to the thread pool).</summary>
    internal sealed class SyncProgress<T>(Action<T> report) : IProgress<T>
    {
        public void Report(T value) => report(value);
    }

    public static int Ls(Context c)
    {
        using var store = c.Open();
        var b = c.OpenBranch(store);
        string path = c.Get(Verbs.Ls.Path) ?? "/";
        var st = b.Stat(path);
        var entries = st.Kind == NodeKind.Directory ? b.List(path) : [new DirectoryEntry(Path.GetFileName(path.TrimEnd('/')), st.Inode, st.Kind)];
        string Child(string name) => st.Kind != NodeKind.Directory ? path : (path.TrimEnd('/') + "/" + name);
        if (c.Json)
        {
            Output.WriteJson(entries.Select(e => new { name = e.Name, kind = e.Kind, stat = Output.FileJson(b, Child(e.Name), b.Stat(Child(e.Name)), xattrs: false) }));
            return Program.Ok;
        }
        if (!c.Get(Verbs.Ls.Long))
        {
            foreach (var e in entries)
                Console.Out.WriteLine(e.Kind == NodeKind.Directory ? e.Name + "/" : e.Name);
            return Program.Ok;
        }
        foreach (var e in entries)
        {
            var s = b.Stat(Child(e.Name));
            string name = e.Kind == NodeKind.Symlink ? $"{e.Name} -> {b.ReadLink(Child(e.Name))}" : e.Name;
            Console.Out.WriteLine($"{Output.Mode(s.Mode, s.Kind)} {s.LinkCount,3} {s.Uid,5} {s.Gid,5} {s.Size,12} {Output.Time(s.ModifiedTime)} {name}");
        }
        return Program.Ok;
    }

    public static int Cat(Context c)
    {
        using var store = c.Open();
        var b = c.OpenBranch(store);
        string path = c.Get(Verbs.Cat.Path);
        long offset = c.Get(Verbs.Cat.Offset) ?? 0;
        long length = c.Get(Verbs.Cat.Length) ?? -1;
        using var lease = store.BeginRead();
        // A symbolic link is a real file of the branch, just not one with bytes to show: a failure (exit 1), not a usage error.
        if (b.TryStat(path, out var st) && st.Kind == Daxfs.Branching.Index.NodeKind.Symlink)
            throw new IOException($"{path}: is a symbolic link (to {b.ReadLink(path)}); daxfs follows no links: cat its target");
        using var stdout = Console.OpenStandardOutput();
        foreach (var span in b.Read(path, offset, length))
            stdout.Write(span); // straight from the mapping to the pipe
        return Program.Ok;
    }

    public static int Stat(Context c)
    {
        using var store = c.Open();
        var b = c.OpenBranch(store);
        string path = c.Get(Verbs.Stat.Path);
        var s = b.Stat(path);
        var xattrs = b.GetExtendedAttributes(path);
        if (c.Json)
        {
            Output.WriteJson(Output.FileJson(b, path, s, xattrs: true));
            return Program.Ok;
        }
        Console.Out.WriteLine($"  path: {s.Path}");
        Console.Out.WriteLine($"  kind: {s.Kind.ToString().ToLowerInvariant()}{(s.Kind == NodeKind.Symlink ? " -> " + b.ReadLink(path) : "")}");
        Console.Out.WriteLine($"  size: {s.Size}");
        Console.Out.WriteLine($"  mode: {Convert.ToString(s.Mode, 8).PadLeft(4, '0')} ({Output.Mode(s.Mode, s.Kind)})");
        Console.Out.WriteLine($" owner: {s.Uid}:{s.Gid}");
        Console.Out.WriteLine($" inode: {s.Inode}   links: {s.LinkCount}");
        Console.Out.WriteLine($"modify: {Output.Time(s.ModifiedTime)}");
        Console.Out.WriteLine($"change: {Output.Time(s.ChangedTime)}");
        foreach (var (name, value) in xattrs)
            Console.Out.WriteLine($" xattr: {name} ({value.Length} bytes)");
        return Program.Ok;
    }

    public static int Put(Context c)
    {
        string path = c.Get(Verbs.Put.Path);
        long? offset = c.Get(Verbs.Put.Offset);
        bool append = c.Get(Verbs.Put.Append);
        if (offset is not null && append)
            throw new UsageException("--offset and --append exclude each other");
        // Read all of standard input first: a failed read must not leave a half-written file.
        using var stdin = Console.OpenStandardInput();
        using var buffer = new MemoryStream();
        stdin.CopyTo(buffer);
        var data = buffer.GetBuffer().AsSpan(0, (int)buffer.Length);
        using var store = c.Open();
        var b = c.OpenBranch(store);
        if (append) b.Append(path, data);
        else if (offset is { } o) b.Write(path, o, data);
        else b.ReplaceFile(path, data); // all or nothing: a killed put leaves the old content
        return Program.Ok;
    }

    public static int Rm(Context c)
    {
        using var store = c.Open();
        string path = c.Get(Verbs.Rm.Path);
        bool recursive = c.Get(Verbs.Rm.Recursive);
        try
        {
            c.OpenBranch(store).Delete(path, recursive);
        }
        catch (DaxfsIOException e) when (e.Error == FileSystemError.NotEmpty && !recursive)
        {
            throw new DaxfsIOException(e.Error, e.Path, "rm -r (or -R) removes it and everything under it");
        }
        return Program.Ok;
    }

    public static int Mkdir(Context c)
    {
        using var store = c.Open();
        c.OpenBranch(store).CreateDirectory(c.Get(Verbs.Mkdir.Path), parents: c.Get(Verbs.Mkdir.Parents));
        return Program.Ok;
    }

    public static int Mv(Context c)
    {
        using var store = c.Open();
        c.OpenBranch(store).Rename(c.Get(Verbs.Mv.From), c.Get(Verbs.Mv.To), c.Get(Verbs.Mv.NoReplace));
        return Program.Ok;
    }

    public static int Ln(Context c)
    {
        if (!c.Get(Verbs.Ln.Symbolic))
            throw new UsageException("only symbolic links exist in a branch: use 'ln -s TARGET PATH'");
        using var store = c.Open();
        c.OpenBranch(store).CreateSymlink(c.Get(Verbs.Ln.Path), c.Get(Verbs.Ln.Target));
        return Program.Ok;
    }

    public static int Truncate(Context c)
    {
        long size = Opt.ParseSize(c.Get(Verbs.Truncate.Size), "SIZE");
        using var store = c.Open();
        c.OpenBranch(store).Truncate(c.Get(Verbs.Truncate.Path), size);
        return Program.Ok;
    }

    public static int Chmod(Context c)
    {
        string mode = c.Get(Verbs.Chmod.Mode);
        uint bits;
        try { bits = Convert.ToUInt32(mode, 8); }
        catch (FormatException) { throw new UsageException($"MODE: '{mode}' is not an octal mode like 644 or 0755"); }
        catch (OverflowException) { throw new UsageException($"MODE: '{mode}' is too large"); }
        if (bits > 0xFFF)
            throw new UsageException($"MODE: '{mode}' has bits beyond 07777");
        using var store = c.Open();
        c.OpenBranch(store).Chmod(c.Get(Verbs.Chmod.Path), bits);
        return Program.Ok;
    }

    public static int Diff(Context c)
    {
        using var store = c.Open();
        string? from = c.Get(Verbs.Diff.From), to = c.Get(Verbs.Diff.To);
        IReadOnlyList<Change> changes;
        string newer, older;
        if (from is not null || to is not null)
        {
            if (c.Get(Opt.At) is not null || c.Get(Opt.Branch) is not null)
                throw new UsageException("--from/--to exclude -b and --at");
            var a = Context.Resolve(store, from ?? throw new UsageException("--to needs --from"), "--from");
            var b2 = Context.Resolve(store, to ?? "main", "--to");
            changes = a.DiffTo(b2);
            (older, newer) = (a.Name, b2.Name);
        }
        else
        {
            var b = c.OpenBranch(store);
            changes = b.Diff();
            newer = b.Name;
            older = b.Info.Status is BranchStatus.Main or BranchStatus.Version ? "the version before" : b.Parent?.Name ?? "the base image";
        }
        if (c.Json)
        {
            Output.WriteJson(new { branch = newer, against = older, changes });
            return Program.Ok;
        }
        Console.Out.WriteLine($"{newer} against {older}: {changes.Count} change(s)");
        foreach (var ch in changes)
        {
            string what = ch.Kind switch
            {
                ChangeKind.Added => $"+ {ch.Path}",
                ChangeKind.Deleted => $"- {ch.Path}",
                ChangeKind.Renamed => $"R {ch.OldPath} -> {ch.Path}",
                ChangeKind.AttributesChanged => $"A {ch.Path}",
                _ => $"M {ch.Path}",
            };
            string ranges = ch.Ranges.Count == 0 ? "" : " bytes " + string.Join(", ", ch.Ranges.Take(8).Select(r => $"[{r.Offset}, {r.Offset + r.Length})"))
                + (ch.Ranges.Count > 8 ? $" and {ch.Ranges.Count - 8} more" : "");
            Console.Out.WriteLine($"  {what}{(ch.Detail is null ? "" : "  (" + ch.Detail + ")")}{ranges}");
        }
        return Program.Ok;
    }

    public static int Export(Context c)
    {
        string dest = c.Get(Verbs.Export.Dest);
        using var store = c.Open();
        var b = c.OpenBranch(store);
        using var lease = store.BeginRead();
        var sw = System.Diagnostics.Stopwatch.StartNew();
        ExportProgress last = default;
        Output.WithProgress($"exporting {b.Name}", report =>
        {
            b.Export(dest, new SyncProgress<ExportProgress>(p =>
            {
                last = p;
                report(p.TotalBytes > 0 ? (double)p.Bytes / p.TotalBytes : (double)p.Entries / Math.Max(1, p.TotalEntries), $"{p.Entries}/{p.TotalEntries} entries");
            }));
            return 0;
        });
        Console.Out.WriteLine($"exported {b.Name} to {dest}: {last.Entries} entries, {Output.Bytes(last.Bytes)} in {sw.Elapsed.TotalSeconds:0.00} s");
        return Program.Ok;
    }
}
