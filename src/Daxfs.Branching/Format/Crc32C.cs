using System.Numerics;
using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;

namespace Daxfs.Branching.Format;

/// <summary>
/// CRC-32C (Castagnoli), using the processor's CRC instruction where it has one. Long inputs are checksummed
/// as three interleaved streams (the instruction's latency is three times its issue interval, so one stream
/// leaves two thirds of it idle) whose results are then joined; the value is the same as the plain loop's.
/// </summary>
internal static class Crc32C
{
    public static uint Compute(ReadOnlySpan<byte> data) => Finish(Append(Seed, data));

    public const uint Seed = 0xFFFFFFFFu;

    public static uint Finish(uint state) => ~state;

    /// <summary>Bytes in each of the three streams of one interleaved step.</summary>
    internal const int Block = 4096;

    // Shifting a CRC state past Block zero bytes is linear over GF(2): one table per state byte.
    private static readonly uint[] s_shift = BuildShiftTable();

    // Optimized from the first call: a short-lived process checksums a whole region on open, before tiered
    // compilation would have replaced slower first-tier code.
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public static uint Append(uint crc, ReadOnlySpan<byte> data)
    {
        ref byte p = ref MemoryMarshal.GetReference(data);
        nint left = data.Length;
        while (left >= 3 * Block)
        {
            uint c0 = crc, c1 = 0, c2 = 0;
            for (nint i = 0; i < Block; i += 8)
            {
                c0 = BitOperations.Crc32C(c0, Unsafe.ReadUnaligned<ulong>(ref Unsafe.Add(ref p, i)));
                c1 = BitOperations.Crc32C(c1, Unsafe.ReadUnaligned<ulong>(ref Unsafe.Add(ref p, i + Block)));
                c2 = BitOperations.Crc32C(c2, Unsafe.ReadUnaligned<ulong>(ref Unsafe.Add(ref p, i + 2 * Block)));
            }
            // The state after block 0 then block 1 is block 0's state moved past Block zero bytes, plus
            // block 1's own state (started from zero); the same again for block 2.
            crc = Shift(Shift(c0) ^ c1) ^ c2;
            p = ref Unsafe.Add(ref p, 3 * Block);
            left -= 3 * Block;
        }
        for (; left >= 8; left -= 8, p = ref Unsafe.Add(ref p, 8))
            crc = BitOperations.Crc32C(crc, Unsafe.ReadUnaligned<ulong>(ref p));
        for (; left > 0; left--, p = ref Unsafe.Add(ref p, 1))
            crc = BitOperations.Crc32C(crc, p);
        return crc;
    }

    /// <summary>The plain one-stream loop, for checking the interleaved one.</summary>
    internal static uint AppendSerial(uint crc, ReadOnlySpan<byte> data)
    {
        foreach (byte b in data)
            crc = BitOperations.Crc32C(crc, b);
        return crc;
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static uint Shift(uint state)
    {
        ref uint t = ref MemoryMarshal.GetArrayDataReference(s_shift);
        return Unsafe.Add(ref t, (int)(state & 0xFF)) ^ Unsafe.Add(ref t, 256 + (int)((state >> 8) & 0xFF))
            ^ Unsafe.Add(ref t, 512 + (int)((state >> 16) & 0xFF)) ^ Unsafe.Add(ref t, 768 + (int)(state >> 24));
    }

    private static uint[] BuildShiftTable()
    {
        // Where each single state bit goes after Block zero bytes; any state is the XOR of its bits' images.
        var bit = new uint[32];
        for (int b = 0; b < 32; b++)
        {
            uint s = 1u << b;
            for (int i = 0; i < Block; i += 8)
                s = BitOperations.Crc32C(s, 0UL);
            bit[b] = s;
        }
        var table = new uint[4 * 256];
        for (int k = 0; k < 4; k++)
            for (int v = 0; v < 256; v++)
            {
                uint s = 0;
                for (int j = 0; j < 8; j++)
                    if ((v & (1 << j)) != 0)
                        s ^= bit[8 * k + j];
                table[256 * k + v] = s;
            }
        return table;
    }
}
