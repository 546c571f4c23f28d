using System.Runtime.CompilerServices;

namespace Daxfs.Branching.Index;

/// <summary>A node of a persistent treap keyed by a 64-bit integer. Immutable: updates copy the path they touch.</summary>
internal sealed class LongMapNode<T>
{
    public readonly long Key;
    public readonly T Value;
    public readonly uint Priority;
    public readonly LongMapNode<T>? Left;
    public readonly LongMapNode<T>? Right;
    public readonly int Count;

    public LongMapNode(long key, T value, uint priority, LongMapNode<T>? left, LongMapNode<T>? right)
    {
        Key = key;
        Value = value;
        Priority = priority;
        Left = left;
        Right = right;
        Count = 1 + (left?.Count ?? 0) + (right?.Count ?? 0);
    }

    public LongMapNode<T> WithChildren(LongMapNode<T>? left, LongMapNode<T>? right)
        => ReferenceEquals(left, Left) && ReferenceEquals(right, Right) ? this : new(Key, Value, Priority, left, right);
}

/// <summary>
/// Operations on a persistent treap keyed by <see cref="long"/>. Every update returns a new root and
/// shares all untouched nodes with the old one, so a snapshot is one reference (O(1) fork) and a lookup
/// is O(log n) whatever the history that built the tree.
/// </summary>
/// <remarks>
/// Priorities are a hash of the key, so the shape of the tree depends only on the set of keys: two
/// processes replaying the same log build identical trees. Lookups are iterative and allocate nothing.
/// </remarks>
internal static class LongMap
{
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static uint PriorityOf(long key)
    {
        ulong x = (ulong)key * 0x9E3779B97F4A7C15UL;
        x ^= x >> 29;
        x *= 0xBF58476D1CE4E5B9UL;
        x ^= x >> 32;
        return (uint)x;
    }

    public static int Count<T>(LongMapNode<T>? root) => root?.Count ?? 0;

    public static bool TryGet<T>(LongMapNode<T>? node, long key, out T value)
    {
        while (node is not null)
        {
            if (key < node.Key) node = node.Left;
            else if (key > node.Key) node = node.Right;
            else { value = node.Value; return true; }
        }
        value = default!;
        return false;
    }

    /// <summary>The node with the largest key ≤ <paramref name="key"/>, or null.</summary>
    public static LongMapNode<T>? Floor<T>(LongMapNode<T>? node, long key)
    {
        LongMapNode<T>? best = null;
        while (node is not null)
        {
            if (node.Key <= key) { best = node; node = node.Right; }
            else node = node.Left;
        }
        return best;
    }

    /// <summary>The node with the smallest key ≥ <paramref name="key"/>, or null.</summary>
    public static LongMapNode<T>? Ceiling<T>(LongMapNode<T>? node, long key)
    {
        LongMapNode<T>? best = null;
        while (node is not null)
        {
            if (node.Key >= key) { best = node; node = node.Left; }
            else node = node.Right;
        }
        return best;
    }

    public static LongMapNode<T>? Max<T>(LongMapNode<T>? node)
    {
        if (node is null) return null;
        while (node.Right is not null) node = node.Right;
        return node;
    }

    /// <summary>Splits into keys &lt; <paramref name="key"/> and keys ≥ <paramref name="key"/>.</summary>
    public static (LongMapNode<T>? Less, LongMapNode<T>? AtLeast) Split<T>(LongMapNode<T>? node, long key)
    {
        if (node is null) return (null, null);
        if (node.Key < key)
        {
            var (l, r) = Split(node.Right, key);
            return (node.WithChildren(node.Left, l), r);
        }
        else
        {
            var (l, r) = Split(node.Left, key);
            return (l, node.WithChildren(r, node.Right));
        }
    }

    /// <summary>Joins two trees where every key of <paramref name="a"/> is below every key of <paramref name="b"/>.</summary>
    public static LongMapNode<T>? Merge<T>(LongMapNode<T>? a, LongMapNode<T>? b)
    {
        if (a is null) return b;
        if (b is null) return a;
        if (a.Priority >= b.Priority)
            return a.WithChildren(a.Left, Merge(a.Right, b));
        return b.WithChildren(Merge(a, b.Left), b.Right);
    }

    public static LongMapNode<T> Single<T>(long key, T value) => new(key, value, PriorityOf(key), null, null);

    /// <summary>Sets <paramref name="key"/> to <paramref name="value"/>, replacing any earlier value.</summary>
    public static LongMapNode<T> Set<T>(LongMapNode<T>? root, long key, T value)
    {
        var (less, atLeast) = Split(root, key);
        var (_, greater) = Split(atLeast, key + 1);
        return Merge(Merge(less, Single(key, value)), greater)!;
    }

    public static LongMapNode<T>? Remove<T>(LongMapNode<T>? root, long key)
    {
        var (less, atLeast) = Split(root, key);
        var (_, greater) = Split(atLeast, key + 1);
        return Merge(less, greater);
    }

    /// <summary>
    /// Calls <paramref name="changed"/> for every key whose value differs (by reference) between two maps, or
    /// that only one holds. Subtrees the maps share are skipped whole, so for maps derived from one another
    /// the cost follows the number of changes, not the size of the maps.
    /// </summary>
    public static void Diff<T>(LongMapNode<T>? a, LongMapNode<T>? b, Action<long> changed) where T : class
    {
        if (ReferenceEquals(a, b))
            return;
        if (a is null) { foreach (var n in InOrder(b)) changed(n.Key); return; }
        if (b is null) { foreach (var n in InOrder(a)) changed(n.Key); return; }
        if (a.Key == b.Key)
        {
            if (!ReferenceEquals(a.Value, b.Value)) changed(a.Key);
            Diff(a.Left, b.Left, changed);
            Diff(a.Right, b.Right, changed);
            return;
        }
        // Different roots: cut b at a's key, so both sides line up around it.
        var (less, atLeast) = Split(b, a.Key);
        var (same, greater) = Split(atLeast, a.Key + 1);
        if (same is null || !ReferenceEquals(same.Value, a.Value)) changed(a.Key);
        Diff(a.Left, less, changed);
        Diff(a.Right, greater, changed);
    }

    /// <summary>In-order traversal (allocates an enumerator; not for hot paths).</summary>
    public static IEnumerable<LongMapNode<T>> InOrder<T>(LongMapNode<T>? root)
    {
        var stack = new Stack<LongMapNode<T>>();
        var node = root;
        while (node is not null || stack.Count > 0)
        {
            while (node is not null) { stack.Push(node); node = node.Left; }
            node = stack.Pop();
            yield return node;
            node = node.Right;
        }
    }
}
