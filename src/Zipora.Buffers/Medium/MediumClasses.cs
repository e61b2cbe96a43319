using System;
using System.Numerics;
using System.Runtime.CompilerServices;

namespace Zipora.Buffers;

/// <summary>The medium tier's classes: powers of two from 1 KB to the mmap threshold, carved from slabs of at least 64 KB.</summary>
internal struct MediumClasses : ISlabClasses
{
    private const int MinSizeLog2 = 10;
    private const int MinSlabBytes = 64 * 1024;
    private const int BlocksPerSlab = 16;

#pragma warning disable IDE1006 // The runtime's t_ prefix for thread-statics, which the s_ rule cannot tell apart.
    // The medium cache this thread used last: nearly every process rents from one pool, so the fast path is one
    // thread-static read and one compare. In a non-generic type, so the JIT inlines the thread-static access.
    [ThreadStatic]
    private static ThreadCache? t_lastCache;
#pragma warning restore IDE1006

    public static string Name => "medium";

    public static ref ThreadCache? LastCache
    {
        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        get => ref t_lastCache;
    }

    /// <summary>How many classes serve requests up to <paramref name="maxSize"/> (a power of two, 1 KB or more).</summary>
    public static int CountUpTo(int maxSize) => BitOperations.Log2((uint)maxSize) - MinSizeLog2 + 1;

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static int ClassIndexOfRequest(int size) => BitOperations.Log2((uint)size - 1) - (MinSizeLog2 - 1);

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static int ClassIndexOfBlock(int length) => BitOperations.Log2((uint)length) - MinSizeLog2;

    public static int ClassSize(int classIndex) => 1 << (MinSizeLog2 + classIndex);

    public static int SlabBytes(int classIndex) => Math.Max(MinSlabBytes, BlocksPerSlab * ClassSize(classIndex));
}
