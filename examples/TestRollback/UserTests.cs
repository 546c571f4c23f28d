using System.Text;
using Daxfs.Branching;

namespace TestRollback;

/// <summary>Tests that mutate the workspace freely; each starts from the identical prepared state.</summary>
public class UserTests(PreparedImage image) : RollbackTest(image)
{
    private const string Prepared = "id,name\n1,ada\n2,linus\n";

    private string Users => Encoding.UTF8.GetString(Workspace.ReadAllBytes("db/users.csv"));

    [Fact]
    public void Adding_a_user_appends_a_row()
    {
        Assert.Equal(Prepared, Users);
        Workspace.Append("db/users.csv", "3,grace\n"u8);
        Assert.EndsWith("3,grace\n", Users, StringComparison.Ordinal);
    }

    [Fact]
    public void Deleting_the_database_does_not_leak_into_other_tests()
    {
        Assert.Equal(Prepared, Users);
        Workspace.Delete("db", recursive: true);
        Assert.False(Workspace.Exists("db/users.csv"));
    }

    [Fact]
    public void Rewriting_the_config_is_private_to_this_test()
    {
        Assert.Equal(Prepared, Users);
        Workspace.WriteAllBytes("config/app.json", "{ \"retries\": 0 }\n"u8);
        Workspace.WriteAllBytes("tmp/scratch.bin", new byte[100_000]);
        Assert.Equal("{ \"retries\": 3 }\n", Encoding.UTF8.GetString(Image.Store.Main.ReadAllBytes("config/app.json")));
    }

    [Theory]
    [InlineData(1)]
    [InlineData(2)]
    [InlineData(3)]
    public void Every_test_starts_from_identical_state(int round)
    {
        Assert.Equal(Prepared, Users);
        Assert.Empty(Workspace.List("tmp"));
        Assert.Empty(Workspace.Diff());
        Workspace.WriteAllBytes($"tmp/round-{round}", "x"u8);
        Assert.Single(Workspace.List("tmp"));
    }
}
