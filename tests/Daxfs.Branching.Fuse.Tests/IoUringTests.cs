using System.Runtime.InteropServices;
using Daxfs.Branching.Fuse;
using Xunit;

namespace Daxfs.Branching.Fuse.Tests;

/// <summary>The io_uring binding on its own: rings set up, submissions completed, errors carried back, a full ring said so.</summary>
public unsafe class IoUringTests
{
    [Fact]
    public void Nops_come_back_with_their_user_data_in_order()
    {
        using var ring = new IoUring(8, wide: false);
        Assert.Equal(8u, ring.Entries);
        for (ulong round = 0; round < 50; round++)
        {
            for (ulong i = 0; i < 4; i++)
            {
                var sqe = ring.Next();
                Assert.True(sqe != null);
                sqe->Opcode = IoUring.OpNop;
                sqe->UserData = round * 10 + i;
            }
            Assert.Equal(4, ring.Submit(waitFor: 4));
            var seen = new List<ulong>();
            while (ring.TryTake(out var cqe))
            {
                Assert.Equal(0, cqe.Result);
                seen.Add(cqe.UserData);
            }
            Assert.Equal(Enumerable.Range(0, 4).Select(i => round * 10 + (ulong)i), seen.Order());
        }
    }

    [Fact]
    public void A_read_lands_in_the_buffer_and_an_error_comes_back_as_a_negative_result()
    {
        string path = Path.Combine(Path.GetTempPath(), $"daxfs-uring-{Guid.NewGuid():N}");
        var bytes = Enumerable.Range(0, 10_000).Select(i => (byte)(i * 7)).ToArray();
        File.WriteAllBytes(path, bytes);
        int fd = FuseNative.Open(path, 0);
        Assert.True(fd >= 0);
        var buffer = (byte*)NativeMemory.Alloc(10_000);
        try
        {
            using var ring = new IoUring(4, wide: true); // 128-byte entries, as the FUSE ring commands need
            var sqe = ring.Next();
            sqe->Opcode = IoUring.OpRead;
            sqe->Fd = fd;
            sqe->Address = (ulong)buffer;
            sqe->Length = 10_000;
            sqe->Offset = 0;
            sqe->UserData = 7;
            var bad = ring.Next();
            bad->Opcode = IoUring.OpRead;
            bad->Fd = 1_000_000; // no such descriptor
            bad->Address = (ulong)buffer;
            bad->Length = 1;
            bad->UserData = 8;
            ring.Submit(waitFor: 2);
            var results = new Dictionary<ulong, int>();
            while (ring.TryTake(out var cqe)) results[cqe.UserData] = cqe.Result;
            Assert.Equal(10_000, results[7]);
            Assert.Equal(bytes, new ReadOnlySpan<byte>(buffer, 10_000).ToArray());
            Assert.Equal(-9, results[8]); // EBADF
        }
        finally
        {
            NativeMemory.Free(buffer);
            FuseNative.Close(fd);
            File.Delete(path);
        }
    }

    [Fact]
    public void A_full_submission_ring_hands_out_no_entry_until_it_is_submitted()
    {
        using var ring = new IoUring(2, wide: false);
        Assert.True(ring.Next() != null);
        Assert.True(ring.Next() != null);
        Assert.True(ring.Next() == null);
        ring.Submit(waitFor: 2);
        Assert.True(ring.TryTake(out _) && ring.TryTake(out _));
        Assert.True(ring.Next() != null);
    }

    [Fact]
    public void A_ring_the_kernel_refuses_is_an_error_naming_the_step()
    {
        var e = Assert.Throws<IoUringException>(() => new IoUring(0, wide: false)); // zero entries: EINVAL
        Assert.Contains("io_uring_setup failed", e.Message);
        Assert.Equal(22, e.Errno);
    }
}
