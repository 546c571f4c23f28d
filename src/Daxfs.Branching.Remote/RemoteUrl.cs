namespace Daxfs.Branching.Remote;

/// <summary>Where a remote lives: <c>s3://BUCKET/PREFIX</c> (the prefix may be empty).</summary>
public sealed record RemoteUrl(string Bucket, string Prefix)
{
    /// <summary>Parses <paramref name="text"/>; throws <see cref="ArgumentException"/> naming what is wrong.</summary>
    public static RemoteUrl Parse(string text)
    {
        ArgumentNullException.ThrowIfNull(text);
        if (!text.StartsWith("s3://", StringComparison.Ordinal))
            throw new ArgumentException($"{text}: a remote is s3://BUCKET/PREFIX");
        string rest = text["s3://".Length..];
        int slash = rest.IndexOf('/', StringComparison.Ordinal);
        string bucket = slash < 0 ? rest : rest[..slash];
        string prefix = slash < 0 ? "" : rest[(slash + 1)..].Trim('/');
        if (BucketProblem(bucket) is { } why)
            throw new ArgumentException($"{text}: {why}");
        foreach (var part in prefix.Split('/', StringSplitOptions.None))
            if (prefix.Length > 0 && (part.Length == 0 || part is "." or ".."))
                throw new ArgumentException($"{text}: the prefix has an empty, '.' or '..' part");
        if (prefix.Any(c => char.IsControl(c) || c is '\\' or '?' or '#'))
            throw new ArgumentException($"{text}: the prefix holds a control character, a backslash, '?' or '#'");
        return new RemoteUrl(bucket, prefix);
    }

    /// <summary>Why <paramref name="bucket"/> is not a bucket name S3 accepts, or null.</summary>
    public static string? BucketProblem(string bucket)
    {
        if (bucket.Length is < 3 or > 63)
            return "a bucket name has 3 to 63 characters";
        foreach (char c in bucket)
            if (!(char.IsAsciiLetterLower(c) || char.IsAsciiDigit(c) || c is '-' or '.'))
                return $"a bucket name holds only lowercase letters, digits, '-' and '.', not '{c}'";
        if (!char.IsAsciiLetterOrDigit(bucket[0]) || !char.IsAsciiLetterOrDigit(bucket[^1]))
            return "a bucket name starts and ends with a letter or digit";
        return null;
    }

    /// <summary>The key of <paramref name="name"/> under the prefix.</summary>
    public string Key(string name) => Prefix.Length == 0 ? name : Prefix + "/" + name;

    /// <inheritdoc/>
    public override string ToString() => Prefix.Length == 0 ? $"s3://{Bucket}" : $"s3://{Bucket}/{Prefix}";
}
