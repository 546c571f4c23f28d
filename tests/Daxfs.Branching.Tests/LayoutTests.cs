using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
using Daxfs.Branching.Format;

namespace Daxfs.Branching.Tests;

/// <summary>The on-media structs must not drift from docs/format.md.</summary>
public class LayoutTests
{
    private static int Off<T>(string field) => (int)Marshal.OffsetOf<T>(field);

    [Fact]
    public void Superblock_layout()
    {
        Assert.Equal(Superblock.Size, Unsafe.SizeOf<Superblock>());
        Assert.Equal(256, Superblock.Size);
        Assert.Equal(0, Off<Superblock>(nameof(Superblock.Magic)));
        Assert.Equal(8, Off<Superblock>(nameof(Superblock.FormatVersion)));
        Assert.Equal(12, Off<Superblock>(nameof(Superblock.PageSize)));
        Assert.Equal(16, Off<Superblock>(nameof(Superblock.Capacity)));
        Assert.Equal(24, Off<Superblock>(nameof(Superblock.ControlOffset)));
        Assert.Equal(32, Off<Superblock>(nameof(Superblock.SlotTableOffset)));
        Assert.Equal(40, Off<Superblock>(nameof(Superblock.SlotCount)));
        Assert.Equal(44, Off<Superblock>(nameof(Superblock.SlotSize)));
        Assert.Equal(48, Off<Superblock>(nameof(Superblock.BitmapOffset)));
        Assert.Equal(56, Off<Superblock>(nameof(Superblock.BitmapLength)));
        Assert.Equal(64, Off<Superblock>(nameof(Superblock.BaseOffset)));
        Assert.Equal(72, Off<Superblock>(nameof(Superblock.BaseLength)));
        Assert.Equal(80, Off<Superblock>(nameof(Superblock.ArenaOffset)));
        Assert.Equal(88, Off<Superblock>(nameof(Superblock.ArenaLength)));
        Assert.Equal(96, Off<Superblock>(nameof(Superblock.CreatedNs)));
        Assert.Equal(104, Off<Superblock>(nameof(Superblock.ProcessTableOffset)));
        Assert.Equal(112, Off<Superblock>(nameof(Superblock.ProcessSlots)));
        Assert.Equal(116, Off<Superblock>(nameof(Superblock.ProcessEntrySize)));
        Assert.Equal(120, Off<Superblock>(nameof(Superblock.Flags)));
        Assert.Equal(252, Off<Superblock>(nameof(Superblock.Crc)));
    }

    [Fact]
    public void ControlBlock_layout()
    {
        Assert.Equal(ControlBlock.Size, Unsafe.SizeOf<ControlBlock>());
        Assert.Equal(0, Off<ControlBlock>(nameof(ControlBlock.Magic)));
        Assert.Equal(8, Off<ControlBlock>(nameof(ControlBlock.LockOwner)));
        Assert.Equal(16, Off<ControlBlock>(nameof(ControlBlock.BootTag)));
        Assert.Equal(24, Off<ControlBlock>(nameof(ControlBlock.NextLogId)));
        Assert.Equal(32, Off<ControlBlock>(nameof(ControlBlock.Reserved32)));
        Assert.Equal(48, Off<ControlBlock>(nameof(ControlBlock.ChangeCounter)));
        Assert.Equal(56, Off<ControlBlock>(nameof(ControlBlock.ReclaimEpoch)));
        Assert.Equal(40, Off<ControlBlock>(nameof(ControlBlock.LockCount)));
        // Shared words are 8-byte aligned.
        Assert.All(new[] { 8, 16, 24, 32, 40 }, o => Assert.Equal(0, o % 8));
    }

    [Fact]
    public void ProcessEntry_layout()
    {
        Assert.Equal(ProcessEntry.Size, Unsafe.SizeOf<ProcessEntry>());
        Assert.Equal(64, ProcessEntry.Size);
        Assert.Equal(ProcessEntry.PidOffset, Off<ProcessEntry>(nameof(ProcessEntry.Pid)));
        Assert.Equal(32, ProcessEntry.PidOffset);
        Assert.Equal(ProcessEntry.OwnerOffset, Off<ProcessEntry>(nameof(ProcessEntry.Owner)));
        Assert.Equal(ProcessEntry.LeaseEpochOffset, Off<ProcessEntry>(nameof(ProcessEntry.LeaseEpoch)));
        Assert.Equal(16, ProcessEntry.BootIdOffset);
        Assert.Equal(0, ProcessEntry.LeaseEpochOffset % 8); // shared words are 8-byte aligned
        // A store word keeps the boot tag and the store's number apart.
        long w = ProcessWord.Make(0xDEADBEEF, 0x12345678);
        Assert.Equal((0xDEADBEEFu, 0x12345678u), (ProcessWord.BootTag(w), ProcessWord.Nonce(w)));
    }

    /// <summary>The flock struct handed to fcntl matches the C library's, as a C compiler lays it out here.</summary>
    [Fact]
    public void Flock_matches_the_C_header()
    {
        string dir = Directory.CreateTempSubdirectory("daxfs-flock-").FullName;
        try
        {
            File.WriteAllText(Path.Combine(dir, "f.c"), """
                #define _GNU_SOURCE
                #include <fcntl.h>
                #include <stddef.h>
                #include <stdio.h>
                #include <errno.h>
                #include <sys/mman.h>
                int main(void) {
                    printf("%d %d %d %d %d %d %d %d %d\n", O_RDWR, O_CREAT, O_EXCL, O_NOFOLLOW, O_CLOEXEC, ELOOP, EEXIST, ENOENT, MAP_PRIVATE);
                    printf("%zu %zu %zu %zu %zu %zu %d %d %d %d %d\n", sizeof(struct flock), offsetof(struct flock, l_type),
                        offsetof(struct flock, l_whence), offsetof(struct flock, l_start), offsetof(struct flock, l_len),
                        offsetof(struct flock, l_pid), F_OFD_SETLK, F_RDLCK, F_WRLCK, F_UNLCK, SEEK_SET);
                    return 0;
                }
                """);
            var psi = new System.Diagnostics.ProcessStartInfo("bash", ["-c", "cc -o f f.c && ./f"]) { WorkingDirectory = dir, RedirectStandardOutput = true, RedirectStandardError = true };
            using var p = System.Diagnostics.Process.Start(psi)!;
            string output = p.StandardOutput.ReadToEnd() + p.StandardError.ReadToEnd();
            p.WaitForExit();
            Assert.True(p.ExitCode == 0, "the C compiler (cc) is needed for this check: " + output);
            string opens = string.Join(' ', Media.Libc.ORdWr, Media.Libc.OCreat, Media.Libc.OExcl, Media.Libc.ONoFollow, Media.Libc.OCloExec,
                Media.Libc.ELoop, Media.Libc.EExist, Media.Libc.ENoEnt, Media.Libc.MapPrivate);
            string expected = opens + "\n" + string.Join(' ', Unsafe.SizeOf<Media.Libc.Flock>(), Off<Media.Libc.Flock>("Type"), Off<Media.Libc.Flock>("Whence"),
                Off<Media.Libc.Flock>("Start"), Off<Media.Libc.Flock>("Length"), Off<Media.Libc.Flock>("Pid"),
                Media.Libc.FOfdSetLk, Media.Libc.FRdLck, Media.Libc.FWrLck, Media.Libc.FUnLck, Media.Libc.SeekSet);
            Assert.Equal(expected, output.Trim());
        }
        finally
        {
            Directory.Delete(dir, recursive: true);
        }
    }

    [Fact]
    public void BranchSlot_layout()
    {
        Assert.Equal(BranchSlot.Size, Unsafe.SizeOf<BranchSlot>());
        Assert.Equal(0, Off<BranchSlot>(nameof(BranchSlot.State)));
        Assert.Equal(4, Off<BranchSlot>(nameof(BranchSlot.Depth)));
        Assert.Equal(8, Off<BranchSlot>(nameof(BranchSlot.Generation)));
        Assert.Equal(16, Off<BranchSlot>(nameof(BranchSlot.ParentSlot)));
        Assert.Equal(20, Off<BranchSlot>(nameof(BranchSlot.NameLength)));
        Assert.Equal(24, Off<BranchSlot>(nameof(BranchSlot.ParentGeneration)));
        Assert.Equal(32, Off<BranchSlot>(nameof(BranchSlot.ForkEpoch)));
        Assert.Equal(40, Off<BranchSlot>(nameof(BranchSlot.Epoch)));
        Assert.Equal(48, Off<BranchSlot>(nameof(BranchSlot.LogId)));
        Assert.Equal(56, Off<BranchSlot>(nameof(BranchSlot.Head)));
        Assert.Equal(64, Off<BranchSlot>(nameof(BranchSlot.Tail)));
        Assert.Equal(72, Off<BranchSlot>(nameof(BranchSlot.CreatedNs)));
        Assert.Equal(80, Off<BranchSlot>(nameof(BranchSlot.LiveChildren)));
        Assert.Equal(84, Off<BranchSlot>(nameof(BranchSlot.IdentityCrc)));
        Assert.Equal(96, Off<BranchSlot>(nameof(BranchSlot.Name)));
        Assert.Equal(BranchSlot.TailOffset, Off<BranchSlot>(nameof(BranchSlot.Tail)));
        Assert.Equal(BranchSlot.HeadOffset, Off<BranchSlot>(nameof(BranchSlot.Head)));
        Assert.Equal(BranchSlot.EpochOffset, Off<BranchSlot>(nameof(BranchSlot.Epoch)));
    }

    [Fact]
    public void BlockHeader_layout()
    {
        Assert.Equal(BlockHeader.Size, Unsafe.SizeOf<BlockHeader>());
        Assert.Equal(32, BlockHeader.Size);
        Assert.Equal(0, Off<BlockHeader>(nameof(BlockHeader.Magic)));
        Assert.Equal(4, Off<BlockHeader>(nameof(BlockHeader.Pages)));
        Assert.Equal(8, Off<BlockHeader>(nameof(BlockHeader.LogId)));
        Assert.Equal(BlockHeader.NextOffset, Off<BlockHeader>(nameof(BlockHeader.Next)));
        Assert.Equal(24, Off<BlockHeader>(nameof(BlockHeader.Crc)));
        Assert.Equal(BlockHeader.UsedOffset, Off<BlockHeader>(nameof(BlockHeader.Used)));
    }

    [Fact]
    public void RecordHeader_layout()
    {
        Assert.Equal(RecordHeader.Size, Unsafe.SizeOf<RecordHeader>());
        Assert.Equal(0, Off<RecordHeader>(nameof(RecordHeader.Length)));
        Assert.Equal(4, Off<RecordHeader>(nameof(RecordHeader.Kind)));
        Assert.Equal(6, Off<RecordHeader>(nameof(RecordHeader.Flags)));
        Assert.Equal(8, Off<RecordHeader>(nameof(RecordHeader.LogId)));
        Assert.Equal(16, Off<RecordHeader>(nameof(RecordHeader.TimeNs)));
        Assert.Equal(RecordHeader.CrcOffset, Off<RecordHeader>(nameof(RecordHeader.Crc)));
        Assert.Equal(28, Off<RecordHeader>(nameof(RecordHeader.BodyLength)));
    }

    [Fact]
    public void Base_structs_layout()
    {
        Assert.Equal(BaseHeader.Size, Unsafe.SizeOf<BaseHeader>());
        Assert.Equal(8, Off<BaseHeader>(nameof(BaseHeader.InodeCount)));
        Assert.Equal(16, Off<BaseHeader>(nameof(BaseHeader.InodeTableOffset)));
        Assert.Equal(24, Off<BaseHeader>(nameof(BaseHeader.DirentOffset)));
        Assert.Equal(32, Off<BaseHeader>(nameof(BaseHeader.DirentCount)));
        Assert.Equal(40, Off<BaseHeader>(nameof(BaseHeader.NamePoolOffset)));
        Assert.Equal(48, Off<BaseHeader>(nameof(BaseHeader.NamePoolLength)));
        Assert.Equal(56, Off<BaseHeader>(nameof(BaseHeader.DataOffset)));
        Assert.Equal(64, Off<BaseHeader>(nameof(BaseHeader.DataLength)));
        Assert.Equal(72, Off<BaseHeader>(nameof(BaseHeader.ChunkCrcOffset)));
        Assert.Equal(80, Off<BaseHeader>(nameof(BaseHeader.ChunkCount)));
        Assert.Equal(88, Off<BaseHeader>(nameof(BaseHeader.MetaCrc)));
        Assert.Equal(124, Off<BaseHeader>(nameof(BaseHeader.Crc)));

        Assert.Equal(BaseInode.Size, Unsafe.SizeOf<BaseInode>());
        Assert.Equal(0, Off<BaseInode>(nameof(BaseInode.Mode)));
        Assert.Equal(4, Off<BaseInode>(nameof(BaseInode.Uid)));
        Assert.Equal(8, Off<BaseInode>(nameof(BaseInode.Gid)));
        Assert.Equal(12, Off<BaseInode>(nameof(BaseInode.ParentIno)));
        Assert.Equal(16, Off<BaseInode>(nameof(BaseInode.MtimeNs)));
        Assert.Equal(24, Off<BaseInode>(nameof(BaseInode.ByteSize)));
        Assert.Equal(32, Off<BaseInode>(nameof(BaseInode.DataOffset)));
        Assert.Equal(40, Off<BaseInode>(nameof(BaseInode.Subdirs)));
        Assert.Equal(44, Off<BaseInode>(nameof(BaseInode.Flags)));
        Assert.Equal(48, Off<BaseInode>(nameof(BaseInode.CtimeNs)));

        Assert.Equal(BaseDirent.Size, Unsafe.SizeOf<BaseDirent>());
        Assert.Equal(0, Off<BaseDirent>(nameof(BaseDirent.NameOffset)));
        Assert.Equal(4, Off<BaseDirent>(nameof(BaseDirent.NameLength)));
        Assert.Equal(8, Off<BaseDirent>(nameof(BaseDirent.ChildIno)));
    }

    [Fact]
    public void Magic_values_spell_their_names()
    {
        Assert.Equal("DAXFSRG1", System.Text.Encoding.ASCII.GetString(BitConverter.GetBytes(Superblock.MagicValue)));
        Assert.Equal("DAXCTRL1", System.Text.Encoding.ASCII.GetString(BitConverter.GetBytes(ControlBlock.MagicValue)));
        Assert.Equal("DAXBASE1", System.Text.Encoding.ASCII.GetString(BitConverter.GetBytes(BaseHeader.MagicValue)));
        Assert.Equal("BLK1", System.Text.Encoding.ASCII.GetString(BitConverter.GetBytes(BlockHeader.MagicValue)));
    }

    [Fact]
    public void Crc32C_matches_the_standard_check_value()
    {
        // The CRC-32C check value of "123456789" (RFC 3720, appendix B.4).
        Assert.Equal(0xE3069283u, Crc32C.Compute("123456789"u8));
        Assert.Equal(0u, Crc32C.Compute([]));
        // RFC 3720, appendix B.4: 32 bytes of zeros and 32 bytes of 0xFF.
        Assert.Equal(0x8A9136AAu, Crc32C.Compute(new byte[32]));
        Assert.Equal(0x62A8AB43u, Crc32C.Compute(Enumerable.Repeat((byte)0xFF, 32).ToArray()));
    }

    [Fact]
    public void Crc32C_of_long_inputs_equals_the_byte_by_byte_loop()
    {
        // The three-stream path (inputs of 3 blocks or more) must give the plain loop's value for every length
        // around its step boundaries, any start state and any alignment of the input.
        var rng = new Random(11);
        var data = new byte[10 * Crc32C.Block + 64];
        rng.NextBytes(data);
        int b = Crc32C.Block;
        foreach (int len in new[] { 0, 7, 8, 3 * b - 1, 3 * b, 3 * b + 1, 3 * b + 9, 6 * b, 6 * b + 4095, 9 * b + 17, 10 * b + 3 })
            foreach (int offset in new[] { 0, 1, 5, 8 })
            {
                uint seed = (uint)rng.Next();
                var span = data.AsSpan(offset, len);
                Assert.Equal(Crc32C.AppendSerial(seed, span), Crc32C.Append(seed, span));
            }
        // One call over everything, and two calls split at an odd place, agree.
        var chunk = data.AsSpan(3);
        uint whole = Crc32C.Append(Crc32C.Seed, chunk);
        uint split = Crc32C.Append(Crc32C.Append(Crc32C.Seed, chunk[..12345]), chunk[12345..]);
        Assert.Equal(whole, split);
    }
}
