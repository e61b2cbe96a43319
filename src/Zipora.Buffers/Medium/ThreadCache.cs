using System;
using Zipora.Buffers.Native;

namespace Zipora.Buffers;

/// <summary>
/// The medium tier's cache for one thread: a stack of free blocks per size class and the thread's counters.
/// </summary>
/// <remarks>
/// Only the owning thread writes it (the disposing thread drains it after the handshake on <see cref="InUse"/>), so
/// the fields are plain; the statistics read the counters racily, which is fine for 64-bit values. The stacks share
/// one array, class <c>c</c> owning the slots from <c>c * Stride</c>, so the fast path follows one reference from the
/// cache to its block.
/// </remarks>
internal sealed class ThreadCache : ThreadOwnedCache
{
    /// <param name="tier">The tier the cache belongs to.</param>
    /// <param name="maxCapacities">The most blocks each class may ever hold: they size the stacks.</param>
    /// <param name="capacities">Where each class's capacity starts.</param>
    public ThreadCache(MediumTier tier, ReadOnlySpan<int> maxCapacities, ReadOnlySpan<int> capacities)
    {
        Tier = tier;
        int stride = 0;
        for (int i = 0; i < maxCapacities.Length; i++)
        {
            Capacities[i] = capacities[i];
            stride = Math.Max(stride, maxCapacities[i]);
        }

        Stride = stride;
        Items = new NativeMemoryManager[maxCapacities.Length * stride];
    }

    /// <summary>The tier this cache belongs to: a thread-static reference can outlive a disposed pool.</summary>
    public readonly MediumTier Tier;

    public readonly NativeMemoryManager[] Items;

    public readonly int Stride;

    /// <summary>How many blocks each class may hold now: fixed, or moved by the tier's adaptation within the stride.</summary>
    public PerClass<int> Capacities;

    /// <summary>Overflows of each class since it last ran empty: the adaptation shrinks a class that keeps overflowing.</summary>
    public PerClass<int> Overflows;

    public PerClass<int> Counts;

    public PerClass<long> Hits;

    public PerClass<long> Misses;

    public PerClass<long> Returns;

    /// <summary>Bytes asked for by this thread's rents (the sizes, not the classes).</summary>
    public long RequestedBytes;

    /// <summary>
    /// 1 while the owner thread is inside a rent or return. With the disposing thread's process-wide barrier this
    /// forms an asymmetric Dekker handshake: the owner pays two plain stores, the rare disposal pays the barrier.
    /// </summary>
    public int InUse;

    /// <summary>The whole stack of class <paramref name="classIndex"/>, free slots included.</summary>
    public Span<NativeMemoryManager> Stack(int classIndex) => Items.AsSpan(classIndex * Stride, Capacities[classIndex]);
}
