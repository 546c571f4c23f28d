using System.Diagnostics;
using System.Text;

namespace Daxfs.Branching.Tests;

/// <summary>Export as root into a directory another user controls: links planted while it runs are never followed.</summary>
public class ExportSafetyTests
{
    private static void Run(string file, params string[] args) => Sandbox.Run(file, args);

    [SandboxFact]
    public void Links_another_user_plants_in_the_destination_while_an_export_runs_are_never_followed()
    {
        var image = new BaseImageBuilder();
        for (int d = 0; d < 40; d++)
        {
            image.AddDirectory($"d{d}", mode: 0x1FF); // 0777: once finished, anyone may write in it
            for (int f = 0; f < 25; f++)
                image.AddFile($"d{d}/f{f}.txt", Encoding.UTF8.GetBytes(new string('x', 2000 + f)), mode: 0x1B6);
        }
        using var r = new TempRegion(image, capacity: 64L << 20);
        string work = Directory.CreateTempSubdirectory("daxfs-export-race-").FullName;
        try
        {
            File.SetUnixFileMode(work, (UnixFileMode)0x1ED); // 0755: the attacker enters, but only the destination is theirs
            string victim = Path.Combine(work, "victim");
            Directory.CreateDirectory(victim);
            File.SetUnixFileMode(victim, (UnixFileMode)0x1ED);
            File.WriteAllText(Path.Combine(victim, "keep.txt"), "root's\n");
            string dest = Path.Combine(work, "dest");
            Directory.CreateDirectory(dest);
            Run("chown", "nobody:nogroup", dest); // an empty directory the attacker owns: export accepts it
            string stop = Path.Combine(work, "stop");
            // The attacker: over and over, move each new entry aside and put a link to the victim in its place,
            // also inside finished (0777) directories.
            string script = $$"""
                while [ ! -e '{{stop}}' ]; do
                  for d in $(seq 0 39); do
                    mv '{{dest}}'/d$d '{{dest}}'/.moved$d 2>/dev/null && ln -s '{{victim}}' '{{dest}}'/d$d 2>/dev/null
                    ln -s '{{victim}}/planted' '{{dest}}'/.moved$d/f3.txt 2>/dev/null
                    ln -s '{{victim}}' '{{dest}}'/d$d/sub 2>/dev/null
                  done
                done
                """;
            using var attacker = Process.Start(new ProcessStartInfo("setpriv", ["--reuid=nobody", "--regid=nogroup", "--clear-groups", "bash", "-c", script]))!;
            try
            {
                try
                {
                    r.Store.Main.Export(dest);
                }
                catch (IOException)
                {
                    // Meeting a planted link ends the export with an error: that is a correct outcome too.
                }
            }
            finally
            {
                File.WriteAllText(stop, "");
                attacker.WaitForExit(30_000);
            }
            // Nothing outside the destination was written or changed.
            Assert.Equal(["keep.txt"], Directory.GetFileSystemEntries(victim).Select(Path.GetFileName));
            Assert.Equal("root's\n", File.ReadAllText(Path.Combine(victim, "keep.txt")));
            Assert.Equal((UnixFileMode)0x1ED, File.GetUnixFileMode(victim));
            Assert.Equal((UnixFileMode)0x1ED, File.GetUnixFileMode(work));
        }
        finally
        {
            Directory.Delete(work, recursive: true);
        }
    }

    [SandboxFact]
    public void Export_keeps_setuid_bits_owners_and_holes()
    {
        var image = new BaseImageBuilder().AddFile("tool", "#!/bin/sh\n"u8, mode: 0x9ED, uid: 1234, gid: 5678); // 04755
        using var r = new TempRegion(image);
        var b = r.Store.Main.Fork("b");
        b.Write("sparse.bin", 1L << 30, "end"u8); // a 1 GiB hole, then 3 bytes
        string dest = Path.Combine(Directory.CreateTempSubdirectory("daxfs-export-").FullName, "out");
        try
        {
            b.Export(dest);
            string tool = Path.Combine(dest, "tool");
            Assert.True(File.GetUnixFileMode(tool).HasFlag(UnixFileMode.SetUser), "chown after chmod dropped the setuid bit");
            var st = Media.UnixStatReader.Read(tool);
            Assert.Equal((1234u, 5678u), (st.Uid, st.Gid));
            var sparse = new FileInfo(Path.Combine(dest, "sparse.bin"));
            Assert.Equal((1L << 30) + 3, sparse.Length);
            long allocated = Sandbox.AllocatedBytes(sparse.FullName);
            Assert.True(allocated < 1L << 20, $"the hole was written out: {allocated} bytes allocated");
            using var f = File.OpenRead(sparse.FullName);
            f.Position = 1L << 30;
            var tail = new byte[3];
            f.ReadExactly(tail);
            Assert.Equal("end", Encoding.UTF8.GetString(tail));
        }
        finally
        {
            Directory.Delete(Path.GetDirectoryName(dest)!, recursive: true);
        }
    }

    /// <summary>A 10 GiB sparse file with 68 KiB of data goes through mkfs and export as holes: both stay under 100 MiB.</summary>
    [Fact]
    public void A_sparse_file_keeps_its_holes_through_mkfs_and_export()
    {
        string work = Directory.CreateTempSubdirectory("daxfs-sparse-").FullName;
        try
        {
            string src = Path.Combine(work, "src");
            Directory.CreateDirectory(src);
            string big = Path.Combine(src, "big.img");
            var head = TempRegion.Pattern(4096, 1);
            var middle = TempRegion.Pattern(64 * 1024, 2);
            using (var f = new FileStream(big, FileMode.CreateNew, FileAccess.Write))
            {
                f.Write(head);
                f.Position = 5L << 30;
                f.Write(middle);
                f.SetLength(10L << 30);
            }
            string regionPath = Path.Combine("/dev/shm", $"daxfs-sparse-{Environment.ProcessId}-{Guid.NewGuid():N}.daxfs");
            try
            {
                using var s = Store.Create(regionPath, BaseImageBuilder.FromDirectory(src), new StoreOptions { Capacity = 64L << 20 });
                Assert.True(s.Usage.BaseImageBytes < 1 << 20, $"the base image holds {s.Usage.BaseImageBytes} bytes for 68 KiB of data");
                Assert.Equal(10L << 30, s.Main.Stat("big.img").Size);
                Assert.Equal(middle, s.Main.Read("big.img", 5L << 30, middle.Length).ToArray());
                Assert.Equal(new byte[4096], s.Main.Read("big.img", 1L << 30, 4096).ToArray()); // a hole reads as zeros
                string dest = Path.Combine(work, "out");
                s.Main.Export(dest);
                string copy = Path.Combine(dest, "big.img");
                Assert.Equal(10L << 30, new FileInfo(copy).Length);
                long allocated = Sandbox.AllocatedBytes(copy);
                Assert.True(allocated < 100L << 20, $"the exported copy takes {allocated} bytes of disk");
                using var back = File.OpenRead(copy);
                var got = new byte[middle.Length];
                back.Position = 5L << 30;
                back.ReadExactly(got);
                Assert.Equal(middle, got);
                back.Position = 0;
                got = new byte[head.Length];
                back.ReadExactly(got);
                Assert.Equal(head, got);
            }
            finally
            {
                File.Delete(regionPath);
            }
        }
        finally
        {
            Directory.Delete(work, recursive: true);
        }
    }
}
