using System.Text;
using Daxfs.Branching;
using Daxfs.Branching.Index;
using Xunit.Abstractions;

namespace Daxfs.Branching.Tests;

/// <summary>
/// Seeded random sequences of operations over many branches, checked after every step against a plain
/// in-memory model of each branch's tree. A failure names the seed and the step; rerun one seed with
/// DAXFS_MODEL_SEED=N (and DAXFS_MODEL_OPS=N for a longer run; DAXFS_MODEL_TRACE=TEXT prints the steps whose
/// operation mentions TEXT, say a branch name).
/// </summary>
public class ModelTests(ITestOutputHelper output)
{
    private sealed record MNode(NodeKind Kind, byte[] Data, string Target, uint Mode);

    private sealed class MBranch
    {
        public required string Name;
        public MBranch? Parent;
        public SortedDictionary<string, MNode> Tree = new(StringComparer.Ordinal);
        public readonly List<MBranch> Children = [];
        public bool IsMain => Parent is null;
        /// <summary>Forked to keep its changes for a rebase if a commit to main invalidates it.</summary>
        public bool Keep;
        /// <summary>The version of main its chain was forked from.</summary>
        public int BaseVersion;
        /// <summary>Paths its chain touched since that version (a superset of what changed: same-byte rewrites too).</summary>
        public HashSet<string> Touched = new(StringComparer.Ordinal);

        public IEnumerable<MBranch> SelfAndDescendants()
        {
            yield return this;
            foreach (var c in Children)
                foreach (var d in c.SelfAndDescendants())
                    yield return d;
        }
    }

    private sealed class ModelError(FileSystemError error) : Exception(error.ToString())
    {
        public FileSystemError Error { get; } = error;
    }

    private static readonly string[] s_names = ["a", "b", "c", "d", "e", "f"];

    public static IEnumerable<object[]> Seeds()
    {
        string? one = Environment.GetEnvironmentVariable("DAXFS_MODEL_SEED");
        if (one is not null)
        {
            yield return [int.Parse(one, System.Globalization.CultureInfo.InvariantCulture)];
            yield break;
        }
        foreach (int s in new[] { 1, 2, 3 })
            yield return [s];
    }

    [Theory]
    [MemberData(nameof(Seeds))]
    public void Random_operations_match_the_model(int seed)
    {
        int ops = int.TryParse(Environment.GetEnvironmentVariable("DAXFS_MODEL_OPS"), out int n) ? n : 10_000;
        var run = new Run(seed, output);
        try
        {
            run.Execute(ops);
        }
        catch (Exception ex)
        {
            throw new Xunit.Sdk.XunitException($"model test failed: seed {seed}, step {run.Step}, op {run.LastOp}: {ex.GetType().Name}: {ex.Message}\n{ex.StackTrace}");
        }
        finally
        {
            run.Dispose();
        }
    }

    private sealed class Run : IDisposable
    {
        private readonly Random _rng;
        private readonly TempRegion _region;
        private readonly ITestOutputHelper _out;
        private readonly MBranch _main;
        private readonly Dictionary<string, MBranch> _live = new(StringComparer.Ordinal);
        private readonly List<Branch> _deadHandles = [];
        private int _nameCounter;
        private readonly Dictionary<string, int> _opCounts = [];
        /// <summary>Main's tree after each version (index = version).</summary>
        private readonly List<SortedDictionary<string, MNode>> _history = [];
        private int _maxDepth;
        private int _maxLive;
        /// <summary>The oldest version still readable (the last compaction's).</summary>
        private int _oldest;
        /// <summary>Paths each version's commit touched (index = version).</summary>
        private readonly List<HashSet<string>> _versionTouched = [[]];
        /// <summary>Branches a commit invalidated that were forked to be kept, by name.</summary>
        private readonly Dictionary<string, MBranch> _kept = new(StringComparer.Ordinal);

        public Run(int seed, ITestOutputHelper output)
        {
            _rng = new Random(seed);
            _out = output;
            var image = new BaseImageBuilder()
                .AddFile("a", "base a"u8)
                .AddFile("d/b", TempRegion.Pattern(3000, seed))
                .AddDirectory("d/e")
                .AddSymlink("c", "a");
            _region = new TempRegion(image, capacity: 256L << 20, slots: 512);
            _region.Store.CheckpointEvery = 16;
            _main = new MBranch { Name = "main" };
            _main.Tree["/a"] = new MNode(NodeKind.File, "base a"u8.ToArray(), "", 0x1A4);
            _main.Tree["/d"] = new MNode(NodeKind.Directory, [], "", 0x1ED);
            _main.Tree["/d/b"] = new MNode(NodeKind.File, TempRegion.Pattern(3000, seed), "", 0x1A4);
            _main.Tree["/d/e"] = new MNode(NodeKind.Directory, [], "", 0x1ED);
            _main.Tree["/c"] = new MNode(NodeKind.Symlink, [], "a", 0x1FF);
            _live["main"] = _main;
            _history.Add(new SortedDictionary<string, MNode>(_main.Tree, StringComparer.Ordinal));
        }

        public int Step { get; private set; }

        public string LastOp { get; private set; } = "";

        private Store Store => _region.Store;

        public void Dispose() => _region.Dispose();

        public void Execute(int ops)
        {
            for (Step = 0; Step < ops; Step++)
            {
                OneStep();
                if (Environment.GetEnvironmentVariable("DAXFS_MODEL_TRACE") is { } tr && LastOp.Contains(tr, StringComparison.Ordinal)) _out.WriteLine($"{Step}: {LastOp}");
                foreach (var b in _live.Values) Check(b);
                _maxLive = Math.Max(_maxLive, _live.Count);
            }
            foreach (var b in _live.Values) Check(b);
            CheckHistory();
            _out.WriteLine($"{ops} ops; max live branches {_maxLive}; max depth {_maxDepth}; versions {Store.Versions.Count}; "
                + string.Join(", ", _opCounts.OrderBy(k => k.Key).Select(k => $"{k.Key} {k.Value}")));
            Assert.True(_maxLive >= 20, $"only {_maxLive} live branches at most");
            int rebases = _opCounts.GetValueOrDefault("rebase") + _opCounts.GetValueOrDefault("rebase-conflict") + _opCounts.GetValueOrDefault("rebase-overlap-ok");
            Assert.True(ops < 10_000 || rebases >= 10, $"only {rebases} rebases of kept branches");
            Assert.True(ops < 10_000 || _opCounts.GetValueOrDefault("clean-done") >= 5, $"only {_opCounts.GetValueOrDefault("clean-done")} logs cleaned");
            Assert.True(ops < 10_000 || _opCounts.GetValueOrDefault("resize") >= 3, $"only {_opCounts.GetValueOrDefault("resize")} resizes");
            Assert.True(ops < 10_000 || _opCounts.GetValueOrDefault("reopen-from-checkpoint") >= 3, $"only {_opCounts.GetValueOrDefault("reopen-from-checkpoint")} reopens read main from a checkpoint");
        }

        private void Count(string op) => _opCounts[op] = _opCounts.GetValueOrDefault(op) + 1;

        private Branch H(MBranch m) => Store.GetBranch(m.Name);

        private List<MBranch> Leaves() => _live.Values.Where(b => !b.IsMain && b.Children.Count == 0).ToList();

        private T Pick<T>(IReadOnlyList<T> list) => list[_rng.Next(list.Count)];

        /// <summary>Runs one random operation on store and model; returns the branches whose trees to check.</summary>
        private IEnumerable<MBranch> OneStep()
        {
            int roll = _rng.Next(100);
            if (_live.Count < 30 && roll < 12 || _live.Count < 3)
                return Fork();
            // Commits to main end every other branch: let the population grow between them.
            if (roll < 14) return _live.Count >= 20 || _rng.Next(8) == 0 ? CommitMain() : FileOp();
            if (roll < 17) return CommitParent();
            if (roll < 19) return Abort();
            if (roll < 22) return Discard();
            if (roll < 23) return Reopen();
            if (roll < 24) return UseDeadHandle();
            if (roll < 30 && _kept.Count > 0) return RebaseKept();
            if ((roll < 31 || _kept.Count > 12) && _kept.Count > 0) return DiscardKept();
            if (roll == 99 && _rng.Next(2) == 0) return Compact();
            if (roll >= 97) return Clean();
            return FileOp();
        }

        /// <summary>Grows the region by a few MiB: nothing any branch reads may change, and the new space is used.</summary>
        private IEnumerable<MBranch> Resize()
        {
            long before = Store.Usage.Capacity;
            LastOp = $"resize from {before}";
            Count("resize");
            Assert.Equal(before + (4L << 20), Store.Resize(before + (4L << 20)).NewCapacity);
            return _live.Values.ToList();
        }

        /// <summary>Cleans a live or kept branch's log: nothing any branch reads may change.</summary>
        private IEnumerable<MBranch> Clean()
        {
            if (_rng.Next(8) == 0)
                return Resize();
            // Logs of more than one block (only those have anything but their tail's block to clean).
            var names = Store.ListBranches().Where(i => i.Name != "main" && (i.Status != BranchStatus.Invalidated || i.Kept) && i.LogBytes > 4000)
                .Select(i => i.Name).Where(n => _live.ContainsKey(n) || _kept.ContainsKey(n)).ToList();
            if (names.Count == 0) return [];
            string name = Pick(names);
            LastOp = $"clean {name}";
            Count("clean");
            var report = Store.Clean(name, whole: true); // the whole log but its tail's block, worth it or not
            if (report.Cleaned) Count("clean-done");
            Assert.True(report.BytesAfter <= report.BytesBefore, $"cleaning {name} grew it: {report.BytesBefore} -> {report.BytesAfter}");
            return _live.TryGetValue(name, out var b) ? b.SelfAndDescendants().ToList() : [];
        }

        private IEnumerable<MBranch> Fork()
        {
            var leaves = Leaves();
            var parent = leaves.Count > 0 && _rng.Next(2) == 0 ? Pick(leaves) : Pick(_live.Values.ToList());
            string name = $"br{++_nameCounter}";
            bool keep = parent.IsMain ? _rng.Next(2) == 0 : parent.Keep;
            LastOp = $"fork {parent.Name} -> {name}{(keep ? " (kept if invalidated)" : "")}";
            Count(keep ? "fork-kept" : "fork");
            H(parent).Fork(name, new ForkOptions { KeepForRebase = keep && parent.IsMain });
            var child = new MBranch
            {
                Name = name, Parent = parent, Tree = new(parent.Tree, StringComparer.Ordinal), Keep = keep,
                BaseVersion = parent.IsMain ? _history.Count - 1 : parent.BaseVersion,
                Touched = parent.IsMain ? new(StringComparer.Ordinal) : new(parent.Touched, StringComparer.Ordinal),
            };
            parent.Children.Add(child);
            _live[name] = child;
            _maxDepth = Math.Max(_maxDepth, Depth(child));
            return [child, parent];
        }

        private static int Depth(MBranch b) => b.Parent is null ? 0 : 1 + Depth(b.Parent);

        private IEnumerable<MBranch> CommitMain()
        {
            var leaves = Leaves();
            if (leaves.Count == 0) return [];
            var b = Pick(leaves);
            LastOp = $"commit {b.Name}";
            Count("commit");
            var handle = H(b);
            var others = _live.Values.Where(x => !x.IsMain && x != b).Select(H).ToList();
            var v = handle.Commit($"step {Step}");
            Assert.Equal(Store.Versions.Count, v.Sequence);
            _main.Tree = b.Tree;
            _history.Add(new SortedDictionary<string, MNode>(b.Tree, StringComparer.Ordinal));
            _versionTouched.Add(b.Touched);
            Assert.Equal(_history.Count - 1, v.Sequence);
            var chain = new HashSet<MBranch>();
            for (var x = b; !x.IsMain; x = x.Parent!) chain.Add(x);
            foreach (var x in _live.Values.Where(x => !x.IsMain).ToList())
            {
                _live.Remove(x.Name);
                var top = x;
                while (!top.Parent!.IsMain) top = top.Parent;
                if (x.Keep && !chain.Contains(top)) // under a committed branch, its base never was a version: not kept
                {
                    x.Children.Clear();
                    _kept[x.Name] = x; // invalidated, its tree kept for a rebase
                }
            }
            Assert.Equal(_kept.Keys.Order(StringComparer.Ordinal), Store.ListBranches().Where(i => i.Kept).Select(i => i.Name).Order(StringComparer.Ordinal));
            _main.Children.Clear();
            _deadHandles.AddRange(others);
            _deadHandles.Add(handle);
            return _live.Values.ToList();
        }

        private IEnumerable<MBranch> CommitParent()
        {
            var leaves = Leaves().Where(l => !l.Parent!.IsMain).ToList();
            if (leaves.Count == 0) return [];
            var b = Pick(leaves);
            var p = b.Parent!;
            LastOp = $"commit {b.Name} to parent {p.Name}";
            Count("commit-to-parent");
            var handle = H(b);
            var siblings = p.Children.Where(c => c != b).SelectMany(c => c.SelfAndDescendants()).ToList();
            var siblingHandles = siblings.Select(H).ToList();
            Assert.Null(handle.CommitToParent());
            p.Tree = b.Tree;
            p.Touched = new(b.Touched, StringComparer.Ordinal); // b started from p's touched paths
            foreach (var x in siblings) _live.Remove(x.Name);
            _deadHandles.AddRange(siblingHandles);
            _live.Remove(b.Name);
            p.Children.Clear();
            _deadHandles.Add(handle);
            return _live.Values.ToList();
        }

        private IEnumerable<MBranch> Abort()
        {
            var candidates = _live.Values.Where(x => !x.IsMain).ToList();
            if (candidates.Count == 0) return [];
            var b = Pick(candidates);
            var top = b;
            while (!top.Parent!.IsMain) top = top.Parent;
            LastOp = $"abort {b.Name} (chain top {top.Name})";
            Count("abort");
            var gone = top.SelfAndDescendants().ToList();
            var handles = gone.Select(H).ToList();
            H(b).Abort();
            foreach (var x in gone) _live.Remove(x.Name);
            _main.Children.Remove(top);
            _deadHandles.AddRange(handles);
            foreach (var x in gone)
                Assert.Throws<BranchNotFoundException>(() => Store.GetBranch(x.Name));
            return _live.Values.ToList();
        }

        private IEnumerable<MBranch> Discard()
        {
            var leaves = Leaves();
            if (leaves.Count == 0) return [];
            var b = Pick(leaves);
            LastOp = $"discard {b.Name}";
            Count("discard");
            var handle = H(b);
            handle.Discard();
            _live.Remove(b.Name);
            b.Parent!.Children.Remove(b);
            _deadHandles.Add(handle);
            return [b.Parent];
        }

        private IEnumerable<MBranch> Reopen()
        {
            LastOp = "reopen";
            Count("reopen");
            string before = ReopenAndRecoveryTests.Snapshot(Store);
            _region.Reopen();
            Store.CheckpointEvery = 16; // checkpoints of main's view are written often, so reopens read main from them
            if (Store.FirstReadVersion > 0) Count("reopen-from-checkpoint");
            Assert.Equal(before, ReopenAndRecoveryTests.Snapshot(Store));
            Store.Verify(); // a checkpoint that disagrees with the history is damage
            Assert.Empty(Store.Recovery.TruncatedLogs);
            CheckHistory();
            CheckDiffs();
            _deadHandles.Clear(); // handles of the closed store are gone with it
            return _live.Values.ToList();
        }

        private IEnumerable<MBranch> Compact()
        {
            int keep = _rng.Next(0, 4);
            int current = _history.Count - 1;
            LastOp = $"compact keep {keep} (versions {_oldest} to {current})";
            Count("compact");
            var report = Store.Compact(new CompactOptions { Keep = keep });
            int target = Math.Min(current - keep, _kept.Values.Select(k => k.BaseVersion).DefaultIfEmpty(int.MaxValue).Min()); // kept branches pin their base
            int expect = target > _oldest ? target : -1;
            Assert.Equal(expect, report.FoldedVersion);
            if (expect > 0)
            {
                Count("compact-folded");
                Assert.Equal(expect - _oldest, report.RetiredVersions);
                _oldest = expect;
            }
            Assert.Equal(_oldest, Store.OldestVersion);
            Store.Verify();
            CheckHistory();
            return _live.Values.ToList();
        }

        private IEnumerable<MBranch> UseDeadHandle()
        {
            var handles = _deadHandles;
            if (handles.Count == 0) return [];
            var h = Pick(handles);
            LastOp = $"use ended handle {h.Name}";
            Count("ended-handle");
            Assert.Throws<BranchInvalidatedException>(() => h.List("/"));
            Assert.Throws<BranchInvalidatedException>(() => h.WriteAllBytes("x", "1"u8));
            return [];
        }

        // ---------------------------------------------------------------- file operations

        private string RandomPath(MBranch b)
        {
            var existing = b.Tree.Keys.ToList();
            if (existing.Count > 0 && _rng.Next(3) > 0)
            {
                string p = Pick(existing);
                return _rng.Next(4) == 0 ? p + "/" + Pick(s_names) : p;
            }
            var dirs = b.Tree.Where(kv => kv.Value.Kind == NodeKind.Directory).Select(kv => kv.Key).Prepend("").ToList();
            return Pick(dirs) + "/" + Pick(s_names);
        }

        private IEnumerable<MBranch> FileOp()
        {
            var b = Pick(_live.Values.ToList());
            var h = H(b);
            int kind = _rng.Next(13);
            string path = RandomPath(b);
            Action storeOp;
            Action<MBranch> modelOp;
            switch (kind)
            {
                case 0:
                case 1:
                case 2:
                {
                    var data = new byte[_rng.Next(0, _rng.Next(6) == 0 ? 6000 : 300)]; // now and then a write that fills a block (logs to clean)
                    _rng.NextBytes(data);
                    long offset = _rng.Next(0, 3500);
                    LastOp = $"{b.Name}: write {path} @{offset} +{data.Length}";
                    storeOp = () => h.Write(path, offset, data);
                    modelOp = m => WriteModel(m, path, offset, data, append: false);
                    break;
                }
                case 3:
                {
                    var data = Encoding.UTF8.GetBytes($"+{Step}");
                    LastOp = $"{b.Name}: append {path}";
                    storeOp = () => h.Append(path, data);
                    modelOp = m => WriteModel(m, path, 0, data, append: true);
                    break;
                }
                case 4:
                {
                    long size = _rng.Next(0, 4000);
                    LastOp = $"{b.Name}: truncate {path} {size}";
                    storeOp = () => h.Truncate(path, size);
                    modelOp = m =>
                    {
                        var node = RequireFile(m, path);
                        var d = node.Data;
                        var nd = new byte[size];
                        Array.Copy(d, nd, Math.Min(d.Length, size));
                        m.Tree[Norm(path)] = node with { Data = nd };
                    };
                    break;
                }
                case 5:
                    LastOp = $"{b.Name}: create {path}";
                    storeOp = () => h.CreateFile(path);
                    modelOp = m => CreateModel(m, path, new MNode(NodeKind.File, [], "", 0x1A4));
                    break;
                case 6:
                    LastOp = $"{b.Name}: mkdir {path}";
                    storeOp = () => h.CreateDirectory(path);
                    modelOp = m => CreateModel(m, path, new MNode(NodeKind.Directory, [], "", 0x1ED));
                    break;
                case 7:
                {
                    string target = Pick(s_names) + "/" + Pick(s_names);
                    LastOp = $"{b.Name}: symlink {path} -> {target}";
                    storeOp = () => h.CreateSymlink(path, target);
                    modelOp = m => CreateModel(m, path, new MNode(NodeKind.Symlink, [], target, 0x1FF));
                    break;
                }
                case 8:
                case 9:
                {
                    bool recursive = _rng.Next(3) == 0;
                    LastOp = $"{b.Name}: delete {path}{(recursive ? " -r" : "")}";
                    storeOp = () => h.Delete(path, recursive);
                    modelOp = m => DeleteModel(m, path, recursive);
                    break;
                }
                case 10:
                case 11:
                {
                    string to = RandomPath(b);
                    bool noReplace = _rng.Next(5) == 0;
                    LastOp = $"{b.Name}: rename {path} -> {to}{(noReplace ? " noreplace" : "")}";
                    storeOp = () => h.Rename(path, to, noReplace);
                    modelOp = m => RenameModel(m, path, to, noReplace);
                    break;
                }
                default:
                {
                    uint mode = (uint)_rng.Next(0, 0x200);
                    LastOp = $"{b.Name}: chmod {path} {Convert.ToString(mode, 8)}";
                    storeOp = () => h.Chmod(path, mode);
                    modelOp = m =>
                    {
                        var node = Resolve(m, path);
                        m.Tree[Norm(path)] = node with { Mode = mode };
                    };
                    break;
                }
            }
            Count(LastOp.Split(':')[1].Trim().Split(' ')[0]);
            Exception? expected = null;
            if (b.IsMain) expected = new BranchReadOnlyException("main");
            else if (b.Children.Count > 0) expected = new BranchFrozenException(b.Name, b.Children.Count);
            var copy = new MBranch { Name = b.Name, Parent = b.Parent, Tree = new(b.Tree, StringComparer.Ordinal) };
            if (expected is null)
            {
                try { modelOp(copy); }
                catch (ModelError e) { expected = e; }
            }
            var actual = Record.Exception(storeOp);
            switch (expected)
            {
                case null:
                    Assert.Null(actual);
                    b.Touched.UnionWith(Changed(b.Tree, copy.Tree));
                    b.Touched.Add(Norm(path)); // rewritten with the same bytes, still touched
                    b.Tree = copy.Tree;
                    Count("ok");
                    break;
                case ModelError me:
                    var io = Assert.IsType<DaxfsIOException>(actual);
                    Assert.Equal(me.Error, io.Error);
                    Count("fs-error");
                    break;
                default:
                    Assert.NotNull(actual);
                    Assert.Equal(expected.GetType(), actual!.GetType());
                    break;
            }
            return [b];
        }

        // ---------------------------------------------------------------- rebase of kept branches

        private static bool Same(MNode? a, MNode? b) => a is null || b is null ? a is null && b is null
            : a.Kind == b.Kind && a.Mode == b.Mode && a.Target == b.Target && a.Data.AsSpan().SequenceEqual(b.Data);

        /// <summary>Paths whose node differs between two trees.</summary>
        private static IEnumerable<string> Changed(SortedDictionary<string, MNode> a, SortedDictionary<string, MNode> b)
            => a.Keys.Union(b.Keys).Where(k => !Same(a.GetValueOrDefault(k), b.GetValueOrDefault(k))).ToList();

        private static bool Related(string p, string q)
            => p == q || p.StartsWith(q + "/", StringComparison.Ordinal) || q.StartsWith(p + "/", StringComparison.Ordinal);

        /// <summary>
        /// Rebases a kept branch and checks the result three ways: when the paths its chain touched and the paths
        /// main's commits touched since its base neither meet nor nest, the rebase must succeed and give, path by
        /// path, the branch's node where it changed it and main's elsewhere; when they do meet, a conflict is
        /// allowed, and a success must still agree on every path away from the meeting points.
        /// </summary>
        private IEnumerable<MBranch> RebaseKept()
        {
            var k = Pick(_kept.Values.OrderBy(x => x.Name, StringComparer.Ordinal).ToList());
            string name = $"br{++_nameCounter}";
            LastOp = $"rebase {k.Name} (based on version {k.BaseVersion}) as {name}";
            var baseTree = _history[k.BaseVersion];
            var ours = new HashSet<string>(k.Touched.Concat(Changed(baseTree, k.Tree)), StringComparer.Ordinal);
            var theirs = new HashSet<string>(Changed(baseTree, _main.Tree), StringComparer.Ordinal);
            for (int v = k.BaseVersion + 1; v < _versionTouched.Count; v++) theirs.UnionWith(_versionTouched[v]);
            var meeting = ours.Where(p => theirs.Any(q => Related(p, q))).ToList();
            Branch rebased;
            try
            {
                rebased = Store.Rebase(k.Name, name);
            }
            catch (RebaseConflictException e)
            {
                Count("rebase-conflict");
                Assert.True(meeting.Count > 0, $"conflict reported ({e.Message}) though the two sides touched no common path");
                Assert.NotEmpty(e.Conflicts);
                Assert.False(Store.BranchExists(name));
                if (_rng.Next(2) == 0) ForgetKept(k);
                return [];
            }
            var expected = new SortedDictionary<string, MNode>(StringComparer.Ordinal);
            foreach (var p in baseTree.Keys.Union(k.Tree.Keys).Union(_main.Tree.Keys))
            {
                var node = ours.Contains(p) ? k.Tree.GetValueOrDefault(p) : _main.Tree.GetValueOrDefault(p);
                if (node is not null) expected[p] = node;
            }
            var result = new MBranch { Name = name, Parent = _main, Tree = expected, BaseVersion = _history.Count - 1 };
            if (meeting.Count > 0)
            {
                // Both sides touched related paths and the store found no collision (say, other bytes of one file):
                // check the paths away from them, then let the branch go, as the model cannot say what it holds.
                Count("rebase-overlap-ok");
                var actual = ReadTree(rebased);
                foreach (var p in expected.Keys.Union(actual.Keys).Where(p => !meeting.Any(m => Related(p, m))))
                    Assert.True(Same(expected.GetValueOrDefault(p), actual.GetValueOrDefault(p)), $"{name}: {p} differs from the model after the rebase: expected {Show(expected.GetValueOrDefault(p))}, got {Show(actual.GetValueOrDefault(p))} (base {Show(baseTree.GetValueOrDefault(p))}, branch {Show(k.Tree.GetValueOrDefault(p))}, main {Show(_main.Tree.GetValueOrDefault(p))}; meeting at {string.Join(' ', meeting)})");
                rebased.Discard();
            }
            else
            {
                Count("rebase");
                CheckHandle(rebased, result);
                result.Touched.UnionWith(ours);
                result.Touched.UnionWith(Changed(_main.Tree, expected));
                _main.Children.Add(result);
                _live[name] = result;
            }
            if (_rng.Next(4) == 0)
                ForgetKept(k);
            return [];
        }

        private static string Show(MNode? n) => n is null ? "absent" : $"{n.Kind} {Convert.ToString(n.Mode, 8)} {n.Data.Length}B {n.Target}";

        private static SortedDictionary<string, MNode> ReadTree(Branch h)
        {
            var tree = new SortedDictionary<string, MNode>(StringComparer.Ordinal);
            void Walk(string dir)
            {
                foreach (var e in h.List(dir))
                {
                    string p = dir == "/" ? "/" + e.Name : dir + "/" + e.Name;
                    var st = h.Stat(p);
                    tree[p] = e.Kind switch
                    {
                        NodeKind.File => new MNode(NodeKind.File, h.ReadAllBytes(p), "", st.Mode),
                        NodeKind.Symlink => new MNode(NodeKind.Symlink, [], h.ReadLink(p), st.Mode),
                        _ => new MNode(NodeKind.Directory, [], "", st.Mode),
                    };
                    if (e.Kind == NodeKind.File)
                        Assert.Equal(st.Size, tree[p].Data.Length); // the size it reports is the bytes it reads
                    if (e.Kind == NodeKind.Directory) Walk(p);
                }
            }
            Walk("/");
            return tree;
        }

        private IEnumerable<MBranch> DiscardKept()
        {
            var k = Pick(_kept.Values.OrderBy(x => x.Name, StringComparer.Ordinal).ToList());
            LastOp = $"discard kept {k.Name}";
            Count("discard-kept");
            ForgetKept(k);
            return [];
        }

        /// <summary>Discards a kept branch in store and model, with the kept branches forked from it.</summary>
        private void ForgetKept(MBranch k)
        {
            Store.DiscardInvalidated(k.Name);
            foreach (var x in _kept.Values.Where(x => { for (var a = x; a is not null; a = a.Parent) if (a == k) return true; return false; }).ToList())
            {
                _kept.Remove(x.Name);
                Assert.Throws<BranchNotFoundException>(() => Store.GetBranch(x.Name));
            }
            Assert.Equal(_kept.Keys.Order(StringComparer.Ordinal), Store.ListBranches().Where(i => i.Kept).Select(i => i.Name).Order(StringComparer.Ordinal));
        }

        private static string Norm(string path) => "/" + string.Join('/', path.Split('/', StringSplitOptions.RemoveEmptyEntries));

        private static MNode Resolve(MBranch m, string path)
        {
            var parts = path.Split('/', StringSplitOptions.RemoveEmptyEntries);
            string cur = "";
            MNode node = new(NodeKind.Directory, [], "", 0);
            foreach (var p in parts)
            {
                if (node.Kind != NodeKind.Directory) throw new ModelError(FileSystemError.NotADirectory);
                cur += "/" + p;
                if (!m.Tree.TryGetValue(cur, out node!)) throw new ModelError(FileSystemError.NotFound);
            }
            return node;
        }

        private static (string Parent, string Name) ResolveParent(MBranch m, string path)
        {
            var parts = path.Split('/', StringSplitOptions.RemoveEmptyEntries);
            string cur = "";
            for (int i = 0; i < parts.Length - 1; i++)
            {
                cur += "/" + parts[i];
                if (!m.Tree.TryGetValue(cur, out var node)) throw new ModelError(FileSystemError.NotFound);
                if (node.Kind != NodeKind.Directory) throw new ModelError(FileSystemError.NotADirectory);
            }
            return (cur, parts[^1]);
        }

        private static MNode RequireFile(MBranch m, string path)
        {
            var node = Resolve(m, path);
            if (node.Kind == NodeKind.Directory) throw new ModelError(FileSystemError.IsADirectory);
            if (node.Kind != NodeKind.File) throw new ModelError(FileSystemError.InvalidArgument);
            return node;
        }

        private static void CreateModel(MBranch m, string path, MNode node)
        {
            var (parent, name) = ResolveParent(m, path);
            string full = parent + "/" + name;
            if (m.Tree.ContainsKey(full)) throw new ModelError(FileSystemError.Exists);
            m.Tree[full] = node;
        }

        private static void WriteModel(MBranch m, string path, long offset, byte[] data, bool append)
        {
            MNode node;
            try
            {
                node = Resolve(m, path);
            }
            catch (ModelError e) when (e.Error == FileSystemError.NotFound)
            {
                CreateModel(m, path, new MNode(NodeKind.File, [], "", 0x1A4));
                node = m.Tree[Norm(path)];
            }
            if (node.Kind == NodeKind.Directory) throw new ModelError(FileSystemError.IsADirectory);
            if (node.Kind != NodeKind.File) throw new ModelError(FileSystemError.InvalidArgument);
            if (append) offset = node.Data.Length;
            if (data.Length == 0) return; // POSIX: writing nothing does not extend the file
            long end = Math.Max(node.Data.Length, offset + data.Length);
            var nd = new byte[end];
            node.Data.CopyTo(nd, 0);
            data.CopyTo(nd, offset);
            m.Tree[Norm(path)] = node with { Data = nd };
        }

        private static bool HasChildren(MBranch m, string dir) => m.Tree.Keys.Any(k => k.StartsWith(dir + "/", StringComparison.Ordinal));

        private static void DeleteModel(MBranch m, string path, bool recursive)
        {
            var (parent, name) = ResolveParent(m, path);
            string full = parent + "/" + name;
            if (!m.Tree.TryGetValue(full, out var node)) throw new ModelError(FileSystemError.NotFound);
            if (node.Kind == NodeKind.Directory && HasChildren(m, full))
            {
                if (!recursive) throw new ModelError(FileSystemError.NotEmpty);
                foreach (var k in m.Tree.Keys.Where(k => k.StartsWith(full + "/", StringComparison.Ordinal)).ToList())
                    m.Tree.Remove(k);
            }
            m.Tree.Remove(full);
        }

        private static void RenameModel(MBranch m, string from, string to, bool noReplace)
        {
            var (sp, sn) = ResolveParent(m, from);
            var (dp, dn) = ResolveParent(m, to);
            string src = sp + "/" + sn, dst = dp + "/" + dn;
            if (!m.Tree.TryGetValue(src, out var moving)) throw new ModelError(FileSystemError.NotFound);
            if (m.Tree.TryGetValue(dst, out var existing))
            {
                if (noReplace) throw new ModelError(FileSystemError.Exists);
                if (src == dst) return;
                if (moving.Kind == NodeKind.Directory && existing.Kind != NodeKind.Directory) throw new ModelError(FileSystemError.NotADirectory);
                if (moving.Kind != NodeKind.Directory && existing.Kind == NodeKind.Directory) throw new ModelError(FileSystemError.IsADirectory);
                if (existing.Kind == NodeKind.Directory && HasChildren(m, dst)) throw new ModelError(FileSystemError.NotEmpty);
            }
            if (moving.Kind == NodeKind.Directory && (dp == src || dp.StartsWith(src + "/", StringComparison.Ordinal)))
                throw new ModelError(FileSystemError.InvalidArgument);
            var moved = m.Tree.Where(kv => kv.Key == src || kv.Key.StartsWith(src + "/", StringComparison.Ordinal)).ToList();
            m.Tree.Remove(dst);
            foreach (var kv in moved) m.Tree.Remove(kv.Key);
            foreach (var kv in moved) m.Tree[dst + kv.Key[src.Length..]] = kv.Value;
        }

        // ---------------------------------------------------------------- checking

        /// <summary>
        /// Each live branch's diff against its parent (main's against the version before) agrees with a plain
        /// oracle that walks both trees whole and compares inodes, paths, bytes and attributes.
        /// </summary>
        private void CheckDiffs()
        {
            foreach (var m in _live.Values)
            {
                if (m.IsMain && Store.Versions.Count >= 1 && Store.Versions.Count - 1 < _oldest)
                {
                    Assert.Throws<VersionFoldedException>(() => Store.Main.Diff()); // the version before main's was folded away
                    continue;
                }
                var newer = H(m);
                var older = m.IsMain
                    ? Store.AtVersion(Math.Max(0, Store.Versions.Count - 1))
                    : m.Parent!.IsMain ? Store.Main : H(m.Parent);
                var diff = newer.Diff();
                var a = Scan(older);
                var b = Scan(newer);
                var expect = new List<string>();
                var maybeModified = new HashSet<string>();
                // A file that left a path and a file that came to it are one modification of that path (a replace).
                var cameFiles = new Dictionary<string, Scanned>();
                var goneFiles = new Dictionary<string, Scanned>();
                foreach (var (ino, eb) in b)
                {
                    if (!a.TryGetValue(ino, out var ea))
                    {
                        if (eb.Kind == NodeKind.File) cameFiles[eb.Path] = eb;
                        else expect.Add($"Added {eb.Path}");
                        continue;
                    }
                    if (ea.Kind != eb.Kind) { expect.Add($"Deleted {ea.Path}"); expect.Add($"Added {eb.Path}"); continue; }
                    bool movedWithParent = ea.ParentIno == eb.ParentIno && ea.Name == eb.Name;
                    if (ea.Path != eb.Path && !movedWithParent) expect.Add($"Renamed {ea.Path} -> {eb.Path}");
                    if (ea.Content != eb.Content) expect.Add($"Modified {eb.Path}");
                    else if (eb.Kind == NodeKind.File) maybeModified.Add($"Modified {eb.Path}"); // same bytes, maybe rewritten
                    if (ea.Attrs != eb.Attrs) expect.Add($"AttributesChanged {eb.Path}");
                }
                foreach (var (ino, ea) in a)
                {
                    if (b.ContainsKey(ino)) continue;
                    if (ea.Kind == NodeKind.File) goneFiles[ea.Path] = ea;
                    else expect.Add($"Deleted {ea.Path}");
                }
                foreach (var (path, eb) in cameFiles)
                {
                    if (!goneFiles.Remove(path, out var ea)) { expect.Add($"Added {path}"); continue; }
                    if (ea.Content != eb.Content) expect.Add($"Modified {path}");
                    else maybeModified.Add($"Modified {path}");
                    if (ea.Attrs != eb.Attrs) expect.Add($"AttributesChanged {path}");
                }
                foreach (var path in goneFiles.Keys) expect.Add($"Deleted {path}");
                var actual = diff.Select(c => c.Kind == ChangeKind.Renamed ? $"Renamed {c.OldPath} -> {c.Path}" : $"{c.Kind} {c.Path}").ToList();
                var missing = expect.Except(actual).ToList();
                var extra = actual.Except(expect).Where(x => !maybeModified.Contains(x)).ToList();
                Assert.True(missing.Count == 0 && extra.Count == 0,
                    $"{m.Name}: diff disagrees with the oracle; missing [{string.Join(", ", missing)}], extra [{string.Join(", ", extra)}]");
            }
        }

        private sealed record Scanned(string Path, string Name, long ParentIno, NodeKind Kind, string Content, string Attrs);

        private static Dictionary<long, Scanned> Scan(Branch h)
        {
            var map = new Dictionary<long, Scanned>();
            void Walk(string dir, long dirIno)
            {
                foreach (var e in h.List(dir))
                {
                    string p = dir == "/" ? "/" + e.Name : dir + "/" + e.Name;
                    var st = h.Stat(p);
                    string content = e.Kind switch
                    {
                        NodeKind.File => Convert.ToHexString(System.Security.Cryptography.SHA256.HashData(h.ReadAllBytes(p))),
                        NodeKind.Symlink => h.ReadLink(p),
                        _ => "",
                    };
                    map[e.Inode] = new Scanned(p, e.Name, dirIno, e.Kind, content, $"{st.Mode}/{st.Uid}/{st.Gid}");
                    if (e.Kind == NodeKind.Directory) Walk(p, e.Inode);
                }
            }
            Walk("/", h.Stat("/").Inode);
            return map;
        }

        /// <summary>Every version of main reads as main's model did right after that commit.</summary>
        private void CheckHistory()
        {
            Assert.Equal(_history.Count - 1, Store.Versions.Count);
            for (int k = 0; k < _oldest; k++)
                Assert.Throws<VersionFoldedException>(() => Store.AtVersion(k));
            for (int k = _oldest; k < _history.Count; k++)
            {
                var snapshot = new MBranch { Name = $"main@{k}", Tree = _history[k] };
                CheckHandle(Store.AtVersion(k), snapshot);
            }
        }

        private void Check(MBranch m) => CheckHandle(H(m), m);

        private static void CheckHandle(Branch h, MBranch m)
        {
            var actual = ReadTree(h);
            foreach (var p in actual.Keys)
                Assert.True(m.Tree.ContainsKey(p), $"{m.Name}: {p} exists in the store but not in the model");
            Assert.Equal(m.Tree.Keys, actual.Keys);
            foreach (var (p, node) in m.Tree)
            {
                var a = actual[p];
                Assert.Equal(node.Kind, a.Kind);
                Assert.Equal(node.Mode, a.Mode);
                Assert.Equal(node.Target, a.Target);
                Assert.True(node.Data.AsSpan().SequenceEqual(a.Data), $"{m.Name}: {p} content differs");
            }
        }
    }
}
