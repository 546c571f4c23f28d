using System.Numerics;
using System.Runtime.InteropServices;

namespace Daxfs.Branching.Format;

/// <summary>CRC-32C (Castagnoli), using the processor's CRC instruction where it has one.</summary>
internal static class Crc32C
{
    public static uint Compute(ReadOnlySpan<byte> data) => Finish(Append(Seed, data));

    public const uint Seed = 0xFFFFFFFFu;

    public static uint Finish(uint state) => ~state;

    public static uint Append(uint crc, ReadOnlySpan<byte> data)
    {
        var words = MemoryMarshal.Cast<byte, ulong>(data);
        foreach (ulong w in words)
            crc = BitOperations.Crc32C(crc, w);
        for (int i = words.Length * 8; i < data.Length; i++)
            crc = BitOperations.Crc32C(crc, data[i]);
        return crc;
    }
}
