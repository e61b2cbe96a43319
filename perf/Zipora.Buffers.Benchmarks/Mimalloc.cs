using System;
using System.Runtime.InteropServices;

namespace Zipora.Buffers.Benchmarks;

/// <summary>mimalloc through P/Invoke (Debian's libmimalloc2.0). Missing library: <see cref="IsAvailable"/> is false and the benchmarks say so.</summary>
public static unsafe partial class Mimalloc
{
    private const string Library = "libmimalloc.so.2";

    public static bool IsAvailable { get; } = NativeLibrary.TryLoad(Library, out _);

    public static void* Malloc(nuint size) => MiMalloc(size);

    public static void Free(void* block) => MiFree(block);

    public static nuint UsableSize(void* block) => MiUsableSize(block);

    /// <summary>Throws with the reason, so BenchmarkDotNet reports the peer as not available rather than a wrong number.</summary>
    public static void Require()
    {
        if (!IsAvailable)
        {
            throw new DllNotFoundException($"{Library} is not installed (apt-get install libmimalloc2.0): mimalloc benchmarks are skipped.");
        }
    }

    [LibraryImport(Library, EntryPoint = "mi_malloc")]
    private static partial void* MiMalloc(nuint size);

    [LibraryImport(Library, EntryPoint = "mi_free")]
    private static partial void MiFree(void* block);

    [LibraryImport(Library, EntryPoint = "mi_usable_size")]
    private static partial nuint MiUsableSize(void* block);
}
