using System;
using System.Reflection;

namespace Zipora.Buffers.Tests;

/// <summary>
/// Fails a slab tier's trim partway, through the heaps' seam (<c>SlabHeap.BeforeEachSlabTrimmed</c>): a trim allocates
/// no table of its free blocks any more, so running out of managed memory no longer stops one wherever a test needs it.
/// </summary>
internal static class SlabTrimFault
{
    private const BindingFlags Private = BindingFlags.NonPublic | BindingFlags.Instance;

    /// <summary>What the failing trim throws.</summary>
    [System.Diagnostics.CodeAnalysis.SuppressMessage("Usage", "CA2201:Do not raise reserved exception types", Justification = "It stands in for the runtime's own, thrown by an allocation of the trim at the heap limit.")]
    public static readonly OutOfMemoryException OutOfMemory = new("SlabTrimFault: the trim ran out of managed memory before a slab");

    /// <summary>
    /// From now on, the trims of both slab tiers throw <see cref="OutOfMemory"/> before the slab they would handle after
    /// <paramref name="slabsFirst"/> others (counted over both tiers, the medium one trimmed first), once.
    /// </summary>
    public static void FailAfter(TieredMemoryPool pool, int slabsFirst)
    {
        int seen = 0;
        OutOfMemoryException failure = Failure();
        Action hook = () =>
        {
            if (seen++ == slabsFirst)
            {
                throw failure;
            }
        };
        SetHook(pool, hook);
    }

    /// <summary>
    /// From now on, the trims of both slab tiers run <paramref name="action"/> before the slab they would handle after
    /// <paramref name="slabsFirst"/> others, once, with the heap's lock held (what other threads do then meets a trim
    /// partway); then, with <paramref name="fail"/>, throw <see cref="OutOfMemory"/> there.
    /// </summary>
    public static void RunBefore(TieredMemoryPool pool, int slabsFirst, Action action, bool fail)
    {
        int seen = 0;
        OutOfMemoryException failure = Failure();
        Action hook = () =>
        {
            if (seen++ == slabsFirst)
            {
                action();
                if (fail)
                {
                    throw failure;
                }
            }
        };
        SetHook(pool, hook);
    }

    /// <summary>
    /// The exception, read where the hook is armed: the field's first read runs this type's initializer, which allocates
    /// it, and a hook that read it first at the heap limit threw <see cref="TypeInitializationException"/> instead (a
    /// heap-limit sweep failed so once, its first round's trim failing before its first slab).
    /// </summary>
    private static OutOfMemoryException Failure() => OutOfMemory;

    /// <summary>Lets the trims run to their end again.</summary>
    public static void Disarm(TieredMemoryPool pool) => SetHook(pool, null);

    private static void SetHook(TieredMemoryPool pool, Action? hook)
    {
        foreach (string tierField in (ReadOnlySpan<string>)["_small", "_medium"])
        {
            object tier = typeof(TieredMemoryPool).GetField(tierField, Private)!.GetValue(pool)!;
            var heap = (SlabHeap)tier.GetType().BaseType!.GetField("_heap", Private)!.GetValue(tier)!;
            heap.BeforeEachSlabTrimmed = hook;
        }
    }
}
