using Daxfs.Branching.Fuse;
using Xunit;

namespace Daxfs.Branching.Fuse.Tests;

/// <summary>Tests that switch the kernel's FUSE io_uring parameter: run alone, so no other mount sees it move.</summary>
[CollectionDefinition("kernel uring switch", DisableParallelization = true)]
public sealed class KernelUringSwitch;

/// <summary>--uring on, auto and --enable-kernel-uring against the kernel's switch (restored after each test).</summary>
[Collection("kernel uring switch")]
public class UringMountTests
{
    private static bool Available => File.Exists(BranchMount.UringParameter) && File.ReadAllText("/proc/sys/kernel/io_uring_disabled").Trim() == "0";

    [Fact]
    public void On_is_refused_while_the_kernel_has_it_off_auto_falls_back_and_enable_switches_it_on()
    {
        using var m = new Mounted();
        if (!Available)
        {
            // Nothing to switch on this kernel: --uring on is refused, saying why.
            string why = Assert.IsType<string>(BranchMount.UringProblem());
            string mp0 = Path.Combine(m.Root, "mnt-none");
            Directory.CreateDirectory(mp0);
            var r = Sh.Daxfs("mount", mp0, "-r", m.Region, "--background", "--uring", "on");
            Assert.Equal(1, r.Code);
            Assert.Contains(why, r.Err);
            return;
        }
        string before = File.ReadAllText(BranchMount.UringParameter).Trim();
        try
        {
            File.WriteAllText(BranchMount.UringParameter, "N");
            Sh.Ok(m.Cli("branch", "create", "u"), "branch create");
            string mp = Path.Combine(m.Root, "mnt-u");
            Directory.CreateDirectory(mp);
            var refused = Sh.Daxfs("mount", mp, "-r", m.Region, "-b", "u", "--background", "--uring", "on");
            Assert.Equal(1, refused.Code);
            Assert.Contains($"--uring on: the fuse module's io_uring is off (as root: echo Y > {BranchMount.UringParameter}, or mount with --enable-kernel-uring)", refused.Err);
            Assert.False(BranchMount.IsMounted(mp));

            Sh.Ok(Sh.Daxfs("mount", mp, "-r", m.Region, "-b", "u", "--background", "--uring", "auto"), "auto with the kernel's switch off");
            Assert.True(File.Exists(Path.Combine(mp, "README.md")));
            Sh.Ok(Sh.Daxfs("unmount", mp), "unmount");

            Sh.Ok(Sh.Daxfs("mount", mp, "-r", m.Region, "-b", "u", "--background", "--uring", "on", "--enable-kernel-uring"), "on, switching it on");
            Assert.Equal("Y", File.ReadAllText(BranchMount.UringParameter).Trim());
            File.WriteAllText(Path.Combine(mp, "over-uring.txt"), "ring");
            Assert.Equal("ring", File.ReadAllText(Path.Combine(mp, "over-uring.txt")));
            Sh.Ok(Sh.Daxfs("unmount", mp), "unmount");
            Assert.Equal("ring", m.Cli("cat", "/over-uring.txt", "-b", "u").Out);
        }
        finally
        {
            File.WriteAllText(BranchMount.UringParameter, before);
        }
    }
}
