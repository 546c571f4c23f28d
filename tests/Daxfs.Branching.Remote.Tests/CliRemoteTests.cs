using System.Diagnostics;
using System.Text.Json;

namespace Daxfs.Branching.Remote.Tests;

/// <summary>The verbs, as a user runs them: remote add, push, clone, fork-remote, pull, --json and the errors.</summary>
[Collection("s3")]
public sealed class CliRemoteTests(S3Fixture s3)
{
    private static (int Code, string Out, string Err) Daxfs(IDictionary<string, string?>? env, params string[] args)
    {
        var psi = new ProcessStartInfo("dotnet") { RedirectStandardOutput = true, RedirectStandardError = true };
        psi.ArgumentList.Add(Path.Combine(AppContext.BaseDirectory, "daxfs.dll"));
        foreach (var a in args) psi.ArgumentList.Add(a);
        foreach (var (k, v) in env ?? new Dictionary<string, string?>()) psi.Environment[k] = v;
        using var p = Process.Start(psi)!;
        var o = p.StandardOutput.ReadToEndAsync();
        string e = p.StandardError.ReadToEnd();
        p.WaitForExit();
        return (p.ExitCode, o.Result, e);
    }

    private static (int Code, string Out, string Err) Daxfs(params string[] args) => Daxfs(null, args);

    private static void Ok((int Code, string Out, string Err) r, string what) => Assert.True(r.Code == 0, $"{what}: exit {r.Code}: {r.Err}{r.Out}");

    [Fact]
    public void The_verbs_push_clone_fork_a_pushed_branch_pull_and_say_what_they_moved()
    {
        var target = s3.Fresh();
        using var a = new Region();
        string b = Path.Combine("/dev/shm", $"daxfs-remote-cli-{Guid.NewGuid():N}.daxfs");
        try
        {
            Ok(Daxfs("remote", "add", "origin", target.Url.ToString(), "--endpoint", s3.Endpoint, "-r", a.Path), "remote add");
            var push = Daxfs("push", "-r", a.Path, "--json");
            Ok(push, "push");
            using (var doc = JsonDocument.Parse(push.Out))
            {
                Assert.Equal("main", doc.RootElement.GetProperty("ref").GetString());
                Assert.True(doc.RootElement.GetProperty("objectsUploaded").GetInt64() > 5);
            }
            var again = Daxfs("push", "-r", a.Path);
            Ok(again, "push again");
            Assert.Contains("up to date", again.Out);

            var clone = Daxfs("clone", target.Url.ToString(), "-r", b, "--endpoint", s3.Endpoint);
            Ok(clone, "clone");
            Assert.Contains("each checked against its SHA-256", clone.Out);
            Ok(Daxfs("branch", "create", "agent", "-r", b), "branch create");
            var put = new ProcessStartInfo("bash", ["-c", $"echo agent-work | dotnet '{Path.Combine(AppContext.BaseDirectory, "daxfs.dll")}' put /agent.txt -b agent -r '{b}'"]);
            using (var p = Process.Start(put)!) { p.WaitForExit(); Assert.Equal(0, p.ExitCode); }
            Ok(Daxfs("push", "agent", "-r", b), "push a branch");

            var fork = Daxfs("branch", "create", "here", "--from", "origin/agent", "-r", a.Path);
            Ok(fork, "branch create --from origin/agent");
            Assert.Equal("agent-work\n", Daxfs("cat", "/agent.txt", "-b", "here", "-r", a.Path).Out);
            Ok(Daxfs("branch", "commit", "here", "-m", "agent's work", "-r", a.Path), "commit");
            Ok(Daxfs("push", "-r", a.Path), "push the commit");
            var pull = Daxfs("pull", "-r", b, "--json");
            Ok(pull, "pull");
            using (var doc = JsonDocument.Parse(pull.Out))
                Assert.Equal(1, doc.RootElement.GetProperty("versions").GetInt64());
            Assert.Equal("agent-work\n", Daxfs("cat", "/agent.txt", "-r", b).Out);
            Assert.Contains("local version", Daxfs("remote", "list", "-r", b).Out);
        }
        finally
        {
            File.Delete(b);
        }
    }

    [Fact]
    public void Bad_urls_missing_buckets_wrong_credentials_and_an_existing_clone_target_are_clear_errors()
    {
        using var a = new Region();
        var bad = Daxfs("remote", "add", "origin", "s3://Bad_Bucket/x", "-r", a.Path);
        Assert.Equal(2, bad.Code);
        Assert.Contains("bucket name", bad.Err);
        Assert.Equal(2, Daxfs("remote", "add", "origin", "https://bucket/x", "-r", a.Path).Code);
        Assert.Equal(2, Daxfs("push", "-r", a.Path).Code); // no remote yet: says how to add one
        Ok(Daxfs("remote", "add", "origin", "s3://no-such-bucket-daxfs-cli/x", "--endpoint", s3.Endpoint, "-r", a.Path), "remote add");
        var nobucket = Daxfs("push", "-r", a.Path);
        Assert.Equal(1, nobucket.Code);
        Assert.Contains("bucket 'no-such-bucket-daxfs-cli' does not exist", nobucket.Err);
        Ok(Daxfs("remote", "remove", "origin", "-r", a.Path), "remote remove");
        Ok(Daxfs("remote", "add", "origin", s3.Fresh().Url.ToString(), "--endpoint", s3.Endpoint, "-r", a.Path), "remote add");
        var denied = Daxfs(new Dictionary<string, string?> { ["AWS_SECRET_ACCESS_KEY"] = "not-the-secret" }, "push", "-r", a.Path, "--json");
        Assert.Equal(1, denied.Code);
        using (var doc = JsonDocument.Parse(denied.Err))
            Assert.Contains("refused the credentials", doc.RootElement.GetProperty("error").GetString());
        var exists = Daxfs("clone", "s3://whatever/x", "-r", a.Path, "--endpoint", s3.Endpoint);
        Assert.Equal(1, exists.Code);
        Assert.Contains("already there", exists.Err);
        var none = Daxfs("clone", s3.Fresh().Url.ToString(), "-r", a.Path + ".new", "--endpoint", s3.Endpoint);
        Assert.Equal(1, none.Code);
        Assert.Contains("has no main", none.Err);
        Assert.False(File.Exists(a.Path + ".new"));
    }
}
