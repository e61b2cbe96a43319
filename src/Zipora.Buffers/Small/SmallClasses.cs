using System;
using System.Runtime.CompilerServices;

namespace Zipora.Buffers;

/// <summary>
/// The small tier's classes: 16-byte steps up to 128 (so every block is 16-byte aligned), then a quarter of the
/// doubling up to 1 KB; 20 classes, all carved from 64 KB slabs.
/// </summary>
internal struct SmallClasses : ISlabClasses
{
    /// <summary>How many classes there are: 8 fine ones and 4 per doubling from 128 to 1024.</summary>
    public const int Count = FineClassCount + 12;

    private const int FineStep = 16;
    private const int FineLimit = 128;
    private const int FineLimitLog2 = 7;
    private const int FineClassCount = FineLimit / FineStep;
    private const int SlabSize = 64 * 1024;

#pragma warning disable IDE1006 // The runtime's t_ prefix for thread-statics, which the s_ rule cannot tell apart.
    // The small cache this thread used last (see MediumClasses): its own slot, so a thread renting small and medium
    // blocks in turn finds both tiers' caches at once.
    [ThreadStatic]
    private static ThreadCache? t_lastCache;
#pragma warning restore IDE1006

    public static string Name => "small";

    public static ref ThreadCache? LastCache
    {
        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        get => ref t_lastCache;
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static int ClassIndexOfRequest(int size) => size <= FineLimit
        ? (size - 1) >> 4
        : FineClassCount + SizeClasses.QuarterStepIndex(size, FineLimitLog2);

    /// <summary>A block's length is its class's size, which its request would have asked for.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static int ClassIndexOfBlock(int length) => ClassIndexOfRequest(length);

    public static int ClassSize(int classIndex) => classIndex < FineClassCount
        ? (classIndex + 1) * FineStep
        : (int)SizeClasses.QuarterStepSize(classIndex - FineClassCount, FineLimitLog2);

    public static int SlabBytes(int classIndex) => SlabSize;
}
