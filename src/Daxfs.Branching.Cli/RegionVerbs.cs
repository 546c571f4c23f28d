using Spectre.Console;

namespace Daxfs.Branching.Cli;

internal static class RegionVerbs
{
    public static int Inspect(Context c)
    {
        using var store = c.Open();
        var u = store.Usage;
        var branches = store.ListBranches();
        var versions = store.Versions;
        if (c.Json)
        {
            Output.WriteJson(new { usage = u, branches, versions, recovery = store.Recovery });
            return Program.Ok;
        }
        var o = Output.Out;
        o.MarkupLine($"[bold]region[/] {Output.Escape(u.Path)} ({u.Kind})");
        var t = Output.Table("", "");
        t.HideHeaders();
        t.AddRow("capacity", Output.Bytes(u.Capacity) + (u.MaxCapacity > u.Capacity ? $" (can grow to {Output.Bytes(u.MaxCapacity)}: daxfs resize)" : ""));
        t.AddRow("base image", $"{Output.Bytes(u.BaseImageBytes)}, {u.BaseInodes} inodes");
        t.AddRow("delta arena", $"{Output.Bytes(u.ArenaBytes - u.ArenaFreeBytes)} used of {Output.Bytes(u.ArenaBytes)}" + (u.ParkedBytes > 0 ? $", {Output.Bytes(u.ParkedBytes)} waiting for leases" : ""));
        t.AddRow("branches", $"{u.LiveBranches} live of {u.BranchSlots} slots");
        t.AddRow("versions", u.Versions.ToString(System.Globalization.CultureInfo.InvariantCulture));
        o.Write(t);
        BranchVerbs.WriteTable(branches);
        return Program.Ok;
    }

    /// <summary>
    /// Checks the whole region through a read-only snapshot (the file is opened for reading and mapped privately:
    /// verify never changes a byte of it), and reports every damaged structure it finds in one pass.
    /// </summary>
    public static int Verify(Context c)
    {
        string path = c.RegionPath;
        if (!File.Exists(path) && new FileInfo(path).LinkTarget is null)
            throw new FileNotFoundException($"{path}: region not found (create one with 'daxfs mkfs')", path);
        Store store;
        IReadOnlyList<DamageFound> found = [];
        try
        {
            store = Store.OpenSnapshot(path, TimeSpan.FromSeconds(30));
        }
        catch (CorruptionException)
        {
            // A damaged log stops a plain open at the first failure. A repairing snapshot (still read-only: its cuts
            // stay in this process) goes past each one, so every damaged log is listed, then the rest is checked.
            try
            {
                store = Store.OpenSnapshot(path, TimeSpan.FromSeconds(30), repair: true);
                found = store.Recovery.RepairedDamage;
            }
            catch (CorruptionException e)
            {
                var damage = new DamageFound(e.Structure, e.Offset, e.Detail, e.Consequences ?? "the region cannot be opened until it is repaired");
                return ReportDamage(c, path, [damage], null, null);
            }
        }
        using (store)
        {
            var report = Output.WithProgress("verifying", progress =>
            {
                progress(0.1, "checking base data and logs");
                return store.Check();
            });
            if (found.Count + report.Damage.Count > 0)
                return ReportDamage(c, path, [.. found, .. report.Damage], report, store.Recovery);
            if (c.Json)
            {
                Output.WriteJson(new { ok = true, region = path, report, wouldRepair = store.Recovery });
                return Program.Ok;
            }
            Output.Out.MarkupLine($"[green]ok[/]: {Output.Bytes(report.BaseDataBytes)} of base data, {report.Logs} logs, {report.Records} records ({Output.Bytes(report.RecordBytes)}) checked");
            foreach (var t in store.Recovery.TruncatedLogs)
                Console.Out.WriteLine($"note: the log of '{t}' ends in a write torn by a machine crash; the next open for writing cuts it back to its last whole record");
            return Program.Ok;
        }
    }

    /// <summary>
    /// Repairs a damaged region: says what a repair would cut and what stays (a repairing snapshot: the file is
    /// untouched); with --yes, exports everything that stays readable into the salvage directory first, then
    /// opens the region for repair, which cuts each damaged log back to its last valid record.
    /// </summary>
    public static int Repair(Context c)
    {
        string path = c.RegionPath;
        if (!File.Exists(path) && new FileInfo(path).LinkTarget is null)
            throw new FileNotFoundException($"{path}: region not found", path);
        bool yes = c.Get(Verbs.Repair.Yes);
        string? salvage = c.Get(Verbs.Repair.Salvage);
        using (var clean = TryOpenWhole(path))
        {
            if (clean is not null)
            {
                var damage = clean.Check().Damage;
                if (damage.Count == 0)
                {
                    if (c.Json) Output.WriteJson(new { region = path, damaged = false, repairs = Array.Empty<string>() });
                    else Console.Out.WriteLine($"{path}: no damage found; nothing to repair");
                    return Program.Ok;
                }
                if (damage.All(d => d.Structure is "checkpoint" or "allocation bitmap"))
                {
                    // Derived data only: a checkpoint is dropped and free space rebuilt from what the logs reach; nothing is lost.
                    var derived = damage.Select(d => d.Structure == "checkpoint" ? $"drop the damaged checkpoint at {d.Offset} (opens replay main's history until a commit writes a new one)"
                        : $"mark block {d.Offset} in use again (free space is rebuilt from what the logs reach)").Distinct().ToList();
                    if (!yes)
                    {
                        if (c.Json) Output.WriteJson(new { region = path, damaged = true, repairs = derived, changed = false });
                        else
                        {
                            Console.Out.WriteLine($"{path}: a repair would (nothing has been changed; nothing is lost):");
                            foreach (var p in derived) Console.Out.WriteLine($"  {p}");
                            Console.Out.WriteLine("run again with --yes to do it (with no other process using the region)");
                        }
                        return Program.Ok;
                    }
                    clean.Dispose();
                    using (Store.OpenRepairing(path)) { }
                    using var after = Store.OpenSnapshot(path, TimeSpan.FromSeconds(30));
                    var left = after.Check().Damage;
                    if (c.Json) Output.WriteJson(new { region = path, damaged = true, repairs = derived, changed = true, damageLeft = left });
                    else
                    {
                        Console.Out.WriteLine($"{path}: repaired:");
                        foreach (var p in derived) Console.Out.WriteLine($"  {p}");
                        Console.Out.WriteLine(left.Count == 0 ? "verify: ok" : $"verify: {left.Count} damaged structure(s) left (another process has the region open? free space is rebuilt only by a store alone)");
                    }
                    return left.Count == 0 ? Program.Ok : Program.Corrupt;
                }
                // The picture builds, but something it reads is damaged (base data, a merged log): not cut here.
                ReportDamage(c, path, damage, null, null);
                Console.Error.WriteLine("daxfs: repair cuts only damaged logs of branches and main; this damage is not one it can cut");
                return Program.Corrupt;
            }
        }
        Store plan;
        try
        {
            plan = Store.OpenSnapshot(path, TimeSpan.FromSeconds(30), repair: true);
        }
        catch (CorruptionException e)
        {
            ReportDamage(c, path, [new DamageFound(e.Structure, e.Offset, e.Detail, e.Consequences ?? "")], null, null);
            Console.Error.WriteLine("daxfs: repair cannot cut this damage (it lies in history a version or merge brought in); export what is readable with 'daxfs export --at VERSION'");
            return Program.Corrupt;
        }
        using (plan)
        {
            var repairs = plan.Recovery.Repairs
                .Concat(plan.Recovery.TruncatedLogs.Select(t => $"the log of '{t}' ends in a write torn by a machine crash: cut back to its last whole record"))
                .Concat(plan.Recovery.InvalidatedBranches.Select(b => $"branch '{b}' is invalidated"))
                .ToList();
            long newest = plan.Versions.Count == 0 ? 0 : plan.Versions[^1].Sequence;
            var versions = Enumerable.Range(0, (int)(newest - plan.OldestVersion + 1)).Select(i => plan.OldestVersion + i).ToList(); // the base image's version too
            var branches = plan.ListBranches().Where(b => b.Status is not (BranchStatus.Main or BranchStatus.Invalidated)).Select(b => b.Name).ToList();
            if (yes && salvage is null)
                throw new UsageException("repair --yes drops what depends on the damage: give --salvage DIR, where everything that stays readable is exported first");
            if (!yes)
            {
                if (c.Json)
                    Output.WriteJson(new { region = path, damaged = true, repairs, keeps = new { versions, branches }, changed = false });
                else
                {
                    Console.Out.WriteLine($"{path}: a repair would cut (nothing has been changed):");
                    foreach (var r in repairs) Console.Out.WriteLine($"  {r}");
                    Console.Out.WriteLine($"and keep versions {string.Join(", ", versions)} of main" + (branches.Count > 0 ? $" and branches {string.Join(", ", branches)}" : "") + ".");
                    Console.Out.WriteLine("run again with --salvage DIR --yes to export all of that into DIR first, then cut");
                }
                return Program.Ok;
            }
            string dir = Path.GetFullPath(salvage!).TrimEnd('/');
            if (new FileInfo(dir).LinkTarget is not null)
                throw new UsageException($"--salvage {salvage}: is a symbolic link; give a real directory");
            if (File.Exists(dir) || Directory.Exists(dir) && Directory.EnumerateFileSystemEntries(dir).Any())
                throw new UsageException($"--salvage {salvage}: exists and is not an empty directory");
            // Private while it is filled (0700): nobody else can plant a link inside it between the exports.
            Directory.CreateDirectory(dir, UnixFileMode.UserRead | UnixFileMode.UserWrite | UnixFileMode.UserExecute);
            foreach (long v in versions)
                plan.AtVersion(v).Export(Path.Combine(dir, $"version-{v}"));
            foreach (var b in branches)
                plan.GetBranch(b).Export(Path.Combine(dir, $"branch-{b}"));
        }
        RecoveryReport done;
        using (var store = Store.OpenRepairing(path))
            done = store.Recovery;
        using (var check = Store.OpenSnapshot(path, TimeSpan.FromSeconds(30)))
        {
            var left = check.Check().Damage;
            var cuts = done.Repairs
                .Concat(done.TruncatedLogs.Select(t => $"the log of '{t}' ends in a write torn by a machine crash: cut back to its last whole record"))
                .Concat(done.InvalidatedBranches.Select(b => $"branch '{b}' is invalidated"))
                .ToList();
            if (c.Json)
                Output.WriteJson(new { region = path, damaged = true, repairs = cuts, salvaged = salvage, changed = true, damageLeft = left });
            else
            {
                Console.Out.WriteLine($"{path}: salvaged into {salvage}, then repaired:");
                foreach (var r in cuts) Console.Out.WriteLine($"  {r}");
                Console.Out.WriteLine(left.Count == 0 ? "verify: ok" : $"verify: {left.Count} damaged structure(s) left");
            }
            return left.Count == 0 ? Program.Ok : Program.Corrupt;
        }
    }

    /// <summary>A read-only snapshot of the region, or null when its picture cannot be built (damage in a log).</summary>
    private static Store? TryOpenWhole(string path)
    {
        try
        {
            return Store.OpenSnapshot(path, TimeSpan.FromSeconds(30));
        }
        catch (CorruptionException)
        {
            return null;
        }
    }

    private static int ReportDamage(Context c, string path, IReadOnlyList<DamageFound> damage, VerifyReport? report, RecoveryReport? recovery)
    {
        if (c.Json)
        {
            Output.WriteJson(new { ok = false, region = path, damage, report, wouldRepair = recovery });
            return Program.Corrupt;
        }
        Console.Error.WriteLine($"daxfs: {path}: {damage.Count} damaged structure{(damage.Count == 1 ? "" : "s")} found (nothing was changed):");
        foreach (var d in damage)
            Console.Error.WriteLine($"  {d.Structure} at offset {d.Offset} (0x{d.Offset:X}): {d.Detail}; {d.Consequences}");
        return Program.Corrupt;
    }

    public static int Tag(Context c)
    {
        if (c.Get(Verbs.Tag.List) && c.Get(Verbs.Tag.Delete))
            throw new UsageException("--list and --delete exclude each other");
        using var store = c.Open();
        if (c.Get(Verbs.Tag.List) || c.Get(Verbs.Tag.Name) is null && !c.Get(Verbs.Tag.Delete))
        {
            var tags = store.Tags;
            if (c.Json) Output.WriteJson(tags);
            else foreach (var (tagName, tagVersion) in tags) Console.Out.WriteLine($"{tagName}\tversion {tagVersion}");
            return Program.Ok;
        }
        string name = c.Get(Verbs.Tag.Name) ?? throw new UsageException("tag --delete needs the NAME of the tag");
        if (c.Get(Verbs.Tag.Delete))
        {
            store.DeleteTag(name);
            Console.Out.WriteLine($"deleted tag '{name}'");
            return Program.Ok;
        }
        if (Store.TagNameProblem(name) is { } why)
            throw new UsageException($"invalid tag name '{name}': {why}");
        string? versionText = c.Get(Verbs.Tag.Version);
        long version = versionText is not null
            ? (long.TryParse(versionText.TrimStart('@'), System.Globalization.NumberStyles.None, System.Globalization.CultureInfo.InvariantCulture, out long v) ? v
                : throw new UsageException($"VERSION: '{versionText}' is not a version number"))
            : store.Versions.Count;
        if (version > store.Versions.Count)
            throw new DaxfsException($"no version {version}: main is at version {store.Versions.Count}");
        store.Tag(name, version);
        Console.Out.WriteLine($"tagged version {version} as '{name}'");
        return Program.Ok;
    }

    public static int Compact(Context c)
    {
        long keep = c.Get(Verbs.Compact.Keep) ?? 0;
        if (keep < 0)
            throw new UsageException($"--keep: {keep} is negative");
        using var store = c.Open();
        var report = Output.WithProgress("compacting", progress => store.Compact(new CompactOptions
        {
            Keep = keep,
            Progress = new FileVerbs.SyncProgress<BuildProgress>(p => progress(
                p.BytesTotal > 0 ? (double)p.BytesDone / p.BytesTotal : (double)p.FilesDone / Math.Max(1, p.FilesTotal),
                $"{p.FilesDone}/{p.FilesTotal} entries, {Output.Bytes(p.BytesDone)} of {Output.Bytes(p.BytesTotal)}")),
        }));
        if (c.Json)
        {
            Output.WriteJson(new
            {
                report.FoldedVersion, report.RetiredVersions, report.Entries, report.CopiedBytes, report.BaseBytes, report.ReleasedBytes,
                seconds = report.Elapsed.TotalSeconds, report.Reason, oldestVersion = store.OldestVersion,
            });
            return Program.Ok;
        }
        if (report.FoldedVersion < 0)
        {
            Console.Out.WriteLine($"nothing compacted: {report.Reason}");
            return Program.Ok;
        }
        double seconds = Math.Max(report.Elapsed.TotalSeconds, 1e-6);
        Console.Out.WriteLine($"folded versions up to {report.FoldedVersion} into a new base image ({report.Entries} entries, {Output.Bytes(report.CopiedBytes)} copied, " +
            $"{Output.Bytes(report.BaseBytes)} image) in {report.Elapsed.TotalSeconds:0.000} s ({Output.Bytes((long)(report.CopiedBytes / seconds))}/s); " +
            $"{report.RetiredVersions} version(s) retired, {Output.Bytes(report.ReleasedBytes)} given back; oldest readable version: {store.OldestVersion}");
        return Program.Ok;
    }

    public static int Gc(Context c)
    {
        using var store = c.Open();
        var named = c.Get(Verbs.Gc.Branches) ?? [];
        var reports = named.Length == 0 ? store.CleanAll() : named.Distinct(StringComparer.Ordinal).Select(store.Clean).ToList();
        if (c.Json)
        {
            Output.WriteJson(reports.Select(r => new
            {
                branch = r.Branch, kept = r.Kept, cleaned = r.Cleaned, bytesBefore = r.BytesBefore, bytesAfter = r.BytesAfter,
                copiedBytes = r.CopiedBytes, freedBytes = r.FreedBytes, seconds = r.Elapsed.TotalSeconds, lockSeconds = r.LockHeld.TotalSeconds,
            }));
            return Program.Ok;
        }
        foreach (var r in reports)
        {
            string name = r.Kept ? $"{r.Branch} (kept)" : r.Branch;
            if (!r.Cleaned)
            {
                Console.Out.WriteLine($"{name}: nothing worth cleaning ({Output.Bytes(r.BytesBefore)} in its log)");
                continue;
            }
            double seconds = Math.Max(r.Elapsed.TotalSeconds, 1e-6);
            Console.Out.WriteLine($"{name}: {Output.Bytes(r.BytesBefore)} -> {Output.Bytes(r.BytesAfter)}, {Output.Bytes(r.FreedBytes)} given back, " +
                $"{Output.Bytes(r.CopiedBytes)} copied in {r.Elapsed.TotalMilliseconds:0.0} ms ({Output.Bytes((long)(r.CopiedBytes / seconds))}/s; lock held {r.LockHeld.TotalMilliseconds:0.0} ms)");
        }
        long freed = reports.Sum(r => r.FreedBytes);
        Console.Out.WriteLine($"{reports.Count(r => r.Cleaned)} of {reports.Count} branch log(s) cleaned, {Output.Bytes(freed)} given back; {Output.Bytes(store.Usage.ArenaFreeBytes)} free");
        return Program.Ok;
    }

    public static int Resize(Context c)
    {
        long capacity = c.Get(Verbs.Resize.Capacity) ?? throw new UsageException("resize needs --capacity SIZE (the new size, e.g. 8G)");
        using var store = c.Open();
        var report = store.Resize(capacity);
        if (c.Json)
        {
            Output.WriteJson(new { oldCapacity = report.OldCapacity, newCapacity = report.NewCapacity, maxCapacity = report.MaxCapacity, arenaFreeBytes = report.ArenaFreeBytes });
            return Program.Ok;
        }
        Console.Out.WriteLine(report.NewCapacity == report.OldCapacity
            ? $"the region is already {Output.Bytes(report.NewCapacity)}; {Output.Bytes(report.ArenaFreeBytes)} free"
            : $"grew the region from {Output.Bytes(report.OldCapacity)} to {Output.Bytes(report.NewCapacity)} (it can grow to {Output.Bytes(report.MaxCapacity)}); {Output.Bytes(report.ArenaFreeBytes)} free; open processes and mounts take the new size at once");
        return Program.Ok;
    }

    public static int Log(Context c)
    {
        using var store = c.Open();
        var all = store.Versions;
        long shown = c.Get(Verbs.Log.MaxCount) ?? long.MaxValue;
        var versions = shown >= all.Count ? all : all.Skip(all.Count - (int)shown).ToList();
        var tags = store.Tags.GroupBy(kv => kv.Value).ToDictionary(g => g.Key, g => string.Join(", ", g.Select(kv => kv.Key)));
        if (c.Json)
        {
            var tagLists = store.Tags.GroupBy(kv => kv.Value).ToDictionary(g => g.Key, g => g.Select(kv => kv.Key).ToArray());
            Output.WriteJson(versions.Select(v => new { v.Sequence, v.Time, v.Message, v.SourceBranch, v.Records, v.Bytes, v.Folded, tags = tagLists.GetValueOrDefault(v.Sequence) ?? [] }));
            return Program.Ok;
        }
        if (versions.Count == 0 && all.Count > 0)
            return Program.Ok; // -n 0
        if (versions.Count == 0)
        {
            Output.Out.WriteLine("no versions yet: main is the base image");
            return Program.Ok;
        }
        var t = Output.Table("version", "time", "source", "records", "size", "tags", "message");
        foreach (var v in versions.Reverse())
            t.AddRow(v.Sequence.ToString(System.Globalization.CultureInfo.InvariantCulture), Output.Time(v.Time), Output.Escape(v.SourceBranch),
                v.Records.ToString(System.Globalization.CultureInfo.InvariantCulture), Output.Bytes(v.Bytes), Output.Escape(tags.GetValueOrDefault(v.Sequence) ?? ""),
                Output.Escape(v.Folded ? "(compacted) " + v.Message : v.Message));
        Output.Out.Write(t);
        return Program.Ok;
    }
}
