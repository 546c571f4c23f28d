using Daxfs.Branching;

namespace TestRollback;

/// <summary>
/// Built once for the whole test class: a region holding the prepared state every test starts from.
/// </summary>
public sealed class PreparedImage : IDisposable
{
    public PreparedImage()
    {
        Path = Store.DefaultPath($"testrollback-{Environment.ProcessId}-{Guid.NewGuid():N}");
        var image = new BaseImageBuilder()
            .AddFile("db/users.csv", "id,name\n1,ada\n2,linus\n"u8)
            .AddFile("config/app.json", "{ \"retries\": 3 }\n"u8)
            .AddDirectory("tmp");
        Store = Store.Create(Path, image, new StoreOptions { Capacity = 32L << 20 });
    }

    public string Path { get; }

    public Store Store { get; }

    public void Dispose()
    {
        Store.Dispose();
        File.Delete(Path);
    }
}

/// <summary>
/// Gives each test its own branch of the prepared image, and discards it afterwards: xunit creates one
/// instance of the test class per test, so the constructor forks and Dispose rolls back.
/// </summary>
public abstract class RollbackTest : IClassFixture<PreparedImage>, IDisposable
{
    private static int s_counter;

    protected RollbackTest(PreparedImage image)
    {
        Image = image;
        Workspace = image.Store.Main.Fork($"test-{Interlocked.Increment(ref s_counter)}");
    }

    protected PreparedImage Image { get; }

    /// <summary>This test's private, writable copy of the prepared state.</summary>
    protected Branch Workspace { get; }

    public void Dispose()
    {
        Workspace.Discard();
        GC.SuppressFinalize(this);
    }
}
