using Daxfs.Branching.Format;

namespace Daxfs.Branching.Coordination;

/// <summary>
/// Who this process is to the other processes sharing a region: its kernel's boot id (and the 32-bit tag of
/// it carried in every process word) and its pid as its own PID namespace numbers it.
/// </summary>
/// <remarks>
/// The boot id (<c>/proc/sys/kernel/random/boot_id</c>) is the same in every namespace and container of one
/// kernel, and differs between kernels and between boots. A process whose word carries another kernel's tag
/// cannot be checked from here: its locks live in that kernel. Tests fake a foreign kernel with the
/// environment variable <c>DAXFS_BOOT_ID</c> (a UUID).
/// </remarks>
internal static class ProcessIdentity
{
    /// <summary>The 16 bytes of this kernel's boot id.</summary>
    public static readonly byte[] BootId = ReadBootId();

    /// <summary>The tag of <see cref="BootId"/> (never 0, so a process word is never 0).</summary>
    public static readonly uint BootTag = TagOf(BootId);

    /// <summary>This process's pid in its own PID namespace (for messages).</summary>
    public static readonly int Pid = Environment.ProcessId;

    /// <summary>True when <paramref name="word"/> names a store of this kernel.</summary>
    public static bool SameKernel(long word) => ProcessWord.BootTag(word) == BootTag;

    /// <summary>A fresh word for a store of this process: this kernel's tag and a random number (never 0).</summary>
    public static long NewWord()
    {
        uint nonce;
        do nonce = (uint)Random.Shared.Next(int.MinValue, int.MaxValue);
        while (nonce == 0);
        return ProcessWord.Make(BootTag, nonce);
    }

    public static uint TagOf(ReadOnlySpan<byte> bootId)
    {
        uint tag = Crc32C.Compute(bootId);
        return tag == 0 ? 1 : tag;
    }

    /// <summary>A store for messages: "process 1234" or "process 1234 of another kernel (boot id …)".</summary>
    /// <param name="word">The store's word.</param>
    /// <param name="pid">Its pid as its own namespace numbers it, or 0 when unknown.</param>
    /// <param name="bootId">Its kernel's boot id, when known.</param>
    public static string Describe(long word, int pid, ReadOnlySpan<byte> bootId)
    {
        string who = pid > 0 ? $"process {pid} (as its own PID namespace numbers it)" : $"the store {ProcessWord.Nonce(word):x8}";
        if (SameKernel(word))
            return who;
        string kernel = bootId.Length == 16 && TagOf(bootId) == ProcessWord.BootTag(word)
            ? $"boot id {new Guid(bootId, bigEndian: true)}"
            : $"boot id tag {ProcessWord.BootTag(word):x8}";
        return $"{who} of another kernel ({kernel}), whose liveness cannot be checked from here";
    }

    private static byte[] ReadBootId()
    {
        string? text = Environment.GetEnvironmentVariable("DAXFS_BOOT_ID");
        if (string.IsNullOrWhiteSpace(text))
        {
            try
            {
                text = File.ReadAllText("/proc/sys/kernel/random/boot_id").Trim();
            }
            catch (IOException)
            {
                text = null;
            }
            catch (UnauthorizedAccessException)
            {
                text = null;
            }
        }
        // Without a readable boot id every process of this kernel falls back to the same all-zero id, so they
        // still recognise each other; only another kernel in the same state would be mistaken for this one.
        return text is not null && Guid.TryParse(text, out var g) ? g.ToByteArray(bigEndian: true) : new byte[16];
    }
}
