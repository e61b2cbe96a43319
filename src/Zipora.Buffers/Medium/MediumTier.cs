using System;
using System.Numerics;
using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
using System.Threading;
using Zipora.Buffers.Native;

namespace Zipora.Buffers;

/// <summary>
/// Requests from 1 KB to the mmap threshold: power-of-two size classes (1, 2, 4, 8, 16 KB by default), each with a
/// per-thread cache in front of a shared depot, carved from slabs of at least 64 KB.
/// </summary>
/// <remarks>
/// <para>
/// The common rent and return touch only the calling thread's stack for the class: no lock, no interlocked
/// instruction, no counter on the rent. A block returned on another thread (a Pipe's reader) lands in that thread's
/// cache; a full stack moves its colder half to the depot, and an empty one refills half from the depot, so blocks
/// flow from returning threads to renting threads and no cache grows past its capacity.
/// </para>
/// <para>
/// The tier is split by role: this file holds the state and the fast paths, <c>MediumTier.SlowPath.cs</c> the misses
/// and the adaptation, <c>MediumTier.Trimming.cs</c> trims and disposal, <c>MediumTier.Statistics.cs</c> the counts.
/// </para>
/// </remarks>
internal sealed partial class MediumTier : SlabTier, INativeMemoryReleaser
{
    /// <summary>The smallest request this tier serves.</summary>
    public const int MinSize = SmallTier.MaxSize + 1;

    private const int MinSizeLog2 = 10;

#pragma warning disable IDE1006 // The runtime's t_ prefix for thread-statics, which the s_ rule cannot tell apart.
    // The cache this thread used last: nearly every process rents from one pool, so the fast path is one
    // thread-static read and one compare.
    [ThreadStatic]
    private static ThreadCache? t_lastCache;
#pragma warning restore IDE1006

    private readonly int[] _capacities;
    private readonly int[] _initialCapacities;
    private readonly SizeClassDepot<NativeMemoryManager>[] _depots;
    private readonly SlabHeap _heap;
    private readonly ThreadCacheRegistry<ThreadCache> _registry;

    // The registry's id, which this tier's thread caches carry: read from the tier, the fast path's compare costs
    // one load from an object it already touches.
    private readonly long _cacheId;
    private readonly LeakQuarantine _quarantine;

    // Closed while the caches are being emptied (by Trim or Dispose): threads then bypass their caches and use the
    // depots, so the emptying thread can take the caches' blocks without racing their owners.
    private volatile bool _cachesClosed;

    public MediumTier(PageSource pages, IdleClock clock, DeferredUnmaps unmaps, LeakQuarantine quarantine, int maxSize, int threadCacheMaxBuffers, int threadCacheMaxBytes, bool adaptive)
        : base(clock)
    {
        _adaptive = adaptive;
        _quarantine = quarantine;
        int classCount = BitOperations.Log2((uint)maxSize) - MinSizeLog2 + 1;
        _capacities = new int[classCount];
        _initialCapacities = new int[classCount];
        _depots = new SizeClassDepot<NativeMemoryManager>[classCount];
        for (int i = 0; i < classCount; i++)
        {
            // Split the per-thread byte budget evenly over the classes, so the sum over classes stays within it.
            long byBytes = threadCacheMaxBytes / classCount / ClassSize(i);
            _capacities[i] = (int)Math.Min(threadCacheMaxBuffers, byBytes);
            _initialCapacities[i] = adaptive ? InitialCapacity(_capacities[i]) : _capacities[i];
            _depots[i] = new SizeClassDepot<NativeMemoryManager>();
        }

        _retiredHits = new long[classCount];
        _retiredMisses = new long[classCount];
        _retiredReturns = new long[classCount];
        _highWater = new HighWaterSampler(classCount);
        _idleness = new ClassIdleness(classCount);
        _heap = new SlabHeap(pages, unmaps, clock, this, classCount);
        _registry = new ThreadCacheRegistry<ThreadCache>(RetireUnsynchronized);
        _cacheId = _registry.Id;
    }

    /// <summary>Rents a block for <paramref name="size"/> bytes (1 KB to the largest class; the pool checks the range).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public NativeMemoryManager Rent(int size)
    {
        int classIndex = ClassIndexOfRequest(size);
        ThreadCache? cache = t_lastCache;
        if (cache is not null && cache.RegistryId == _cacheId)
        {
            Volatile.Write(ref cache.InUse, 1);
            ref MediumClassStack stack = ref cache.StackOf(classIndex);
            NativeMemoryManager[] items = stack.Items;
            int top = stack.Count - 1;
            if ((uint)top < (uint)items.Length && !_cachesClosed)
            {
                // No hit counter: the statistics derive the hits (see MediumClassStack). The slot is cleared because
                // nothing in the pool may keep a rented block reachable, or a leaked one would never be finalized.
                NativeMemoryManager block = items[top];
                items[top] = null!;
                stack.Count = top;
                stack.RequestedBytes += size;
                Volatile.Write(ref cache.InUse, 0);
                block.Reactivate();
                return block;
            }

            Volatile.Write(ref cache.InUse, 0);
        }

        return RentSlow(classIndex, size);
    }

    /// <summary>Takes a block back from its owner, on whatever thread disposed it.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public void Release(NativeMemoryManager buffer)
    {
        int classIndex = ClassIndexOfBlock(buffer.Length);
        ThreadCache? cache = t_lastCache;
        if (cache is not null && cache.RegistryId == _cacheId)
        {
            Volatile.Write(ref cache.InUse, 1);
            ref MediumClassStack stack = ref cache.StackOf(classIndex);
            int count = stack.Count;
            if (count < stack.Capacity && !_cachesClosed)
            {
                // In bounds: the capacity never exceeds the slots. Through a reference, the store skips the bounds check.
                Unsafe.Add(ref MemoryMarshal.GetArrayDataReference(stack.Items), count) = buffer;
                stack.Count = count + 1;
                stack.Returns++;
                Volatile.Write(ref cache.InUse, 0);
                return;
            }

            Volatile.Write(ref cache.InUse, 0);
        }

        ReleaseSlow(buffer, classIndex);
    }

    /// <summary>Takes a leaked block back after its quarantine.</summary>
    public void Reclaim(NativeMemoryManager buffer) => _quarantine.Add(buffer, this, "medium");

    /// <summary>This thread's current cache capacity for blocks of <paramref name="size"/> bytes; -1 before the thread used the tier.</summary>
    internal int CapacityOnThisThread(int size)
    {
        ThreadCache? cache = FindThreadCache();
        return cache is null ? -1 : cache.StackOf(ClassIndexOfRequest(size)).Capacity;
    }

    /// <summary>The block size of class <paramref name="classIndex"/>.</summary>
    private static int ClassSize(int classIndex) => MinSize << classIndex;

    /// <summary>The class that serves a request of <paramref name="size"/> bytes (1025 up).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static int ClassIndexOfRequest(int size) => BitOperations.Log2((uint)size - 1) - (MinSizeLog2 - 1);

    /// <summary>The class of a block of <paramref name="length"/> bytes (a class size).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static int ClassIndexOfBlock(int length) => BitOperations.Log2((uint)length) - MinSizeLog2;
}
