using System;
using System.Diagnostics;
using System.Runtime.CompilerServices;
using System.Threading;
using Zipora.Buffers.Native;

namespace Zipora.Buffers;

/// <summary>
/// A slab tier with a per-thread cache in front of a shared depot per size class, carved from slabs: the small tier
/// (1 to 1023 bytes) and the medium tier (1 KB to the mmap threshold). <typeparamref name="TClasses"/> says what the
/// classes are.
/// </summary>
/// <remarks>
/// <para>
/// The common rent and return touch only the calling thread's stack for the class: no lock, no interlocked
/// instruction, no counter on the rent. A block returned on another thread (a Pipe's reader) lands in that thread's
/// cache; a full stack moves its colder half to the depot, and an empty one refills half from the depot, so blocks
/// flow from returning threads to renting threads and no cache grows past its capacity.
/// </para>
/// <para>
/// The tier is split by role: this file holds the state and the fast paths, <c>CachedSlabTier.SlowPath.cs</c> the
/// misses and the adaptation, <c>CachedSlabTier.Trimming.cs</c> trims and disposal, <c>CachedSlabTier.Statistics.cs</c>
/// the counts.
/// </para>
/// </remarks>
/// <typeparam name="TClasses">The tier's size classes; a struct, so the JIT compiles the tier for it alone.</typeparam>
internal abstract partial class CachedSlabTier<TClasses> : SlabTier, INativeMemoryReleaser
    where TClasses : struct, ISlabClasses
{
    private readonly int[] _capacities;
    private readonly int[] _initialCapacities;
    private readonly SizeClassDepot<NativeMemoryManager>[] _depots;
    private readonly SlabHeap _heap;

    // Counts the rents this tier refuses (see PageSource.CountRefusedRent).
    private readonly PageSource _pages;
    private readonly ThreadCacheRegistry<ThreadCache> _registry;

    // The registry's id, which this tier's thread caches carry: read from the tier, the fast path's compare costs
    // one load from an object it already touches.
    private readonly long _cacheId;
    private readonly LeakQuarantine _quarantine;

    // Closed while the caches are being emptied (by Trim or Dispose): threads then bypass their caches and use the
    // depots, so the emptying thread can take the caches' blocks without racing their owners.
    private volatile bool _cachesClosed;

    /// <param name="pages">Where slabs come from.</param>
    /// <param name="clock">The idle releaser's clock, which dates returns.</param>
    /// <param name="unmaps">Where slabs let go of wait out the idle delay before they are unmapped.</param>
    /// <param name="quarantine">Where leaked blocks wait before they are reused.</param>
    /// <param name="classCount">How many of <typeparamref name="TClasses"/>'s classes the tier serves, from the smallest.</param>
    /// <param name="threadCacheMaxBuffers">The most blocks of one class a thread keeps; 0 turns per-thread caching off.</param>
    /// <param name="threadCacheMaxBytes">The most bytes a thread keeps of this tier's blocks, split evenly over the classes.</param>
    /// <param name="threadCacheMinBuffers">The fewest blocks of one class a thread may keep whatever the byte budget says (within <paramref name="threadCacheMaxBuffers"/>).</param>
    /// <param name="adaptive">Whether each class's per-thread capacity follows the thread's use, and idle classes are given back one by one.</param>
    protected CachedSlabTier(PageSource pages, IdleClock clock, DeferredUnmaps unmaps, LeakQuarantine quarantine, int classCount, int threadCacheMaxBuffers, int threadCacheMaxBytes, int threadCacheMinBuffers, bool adaptive)
        : base(clock)
    {
        _pages = pages;
        Debug.Assert(classCount <= ClassStacks.MaxClasses, "the thread cache holds the stacks inline");
        _adaptive = adaptive;
        _quarantine = quarantine;
        _capacities = new int[classCount];
        _initialCapacities = new int[classCount];
        _depots = new SizeClassDepot<NativeMemoryManager>[classCount];
        for (int i = 0; i < classCount; i++)
        {
            // Split the per-thread byte budget evenly over the classes, so the sum over classes stays within it.
            long byBytes = Math.Max(threadCacheMinBuffers, threadCacheMaxBytes / classCount / TClasses.ClassSize(i));
            _capacities[i] = (int)Math.Min(threadCacheMaxBuffers, byBytes);
            _initialCapacities[i] = adaptive ? InitialCapacity(_capacities[i]) : _capacities[i];
            _depots[i] = new SizeClassDepot<NativeMemoryManager>();
        }

        _retiredHits = new long[classCount];
        _retiredMisses = new long[classCount];
        _retiredReturns = new long[classCount];
        _highWater = new HighWaterSampler(classCount);
        _idleness = new ClassIdleness(classCount, clock);
        _tick = new SlabTickTables(classCount);
        _trimTables = new SlabTrimTables(classCount);
        SizeClassDepot<NativeMemoryManager>[] depots = _depots;
        _heap = new SlabHeap(pages, unmaps, clock, this, classCount, (classIndex, blocks) => depots[classIndex].Unreserve(blocks));
        _registry = new ThreadCacheRegistry<ThreadCache>(RetireUnsynchronized);
        _cacheId = _registry.Id;
    }

    /// <summary>Rents a block for <paramref name="size"/> bytes (within the tier's classes; the pool checks the range).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public NativeMemoryManager Rent(int size)
    {
        int classIndex = TClasses.ClassIndexOfRequest(size);
        ThreadCache? cache = TClasses.LastCache;
        if (cache is not null && cache.RegistryId == _cacheId)
        {
            Volatile.Write(ref cache.InUse, 1);
            ref ClassStack stack = ref cache.StackOf(classIndex);
            if (!_cachesClosed && stack.TryPop(out NativeMemoryManager block))
            {
                // No hit counter: the statistics derive the hits (see ClassStack).
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
        int classIndex = TClasses.ClassIndexOfBlock(buffer.Length);
        ThreadCache? cache;
        try
        {
            // A thread's first touch of the tier's thread-statics is the runtime's allocation of them (224 bytes
            // measured): out of managed memory it throws, after the owner marked the block returned.
            cache = TClasses.LastCache;
        }
        catch (OutOfMemoryException)
        {
            ReleaseWithoutCache(buffer, classIndex);
            return;
        }

        if (cache is not null && cache.RegistryId == _cacheId)
        {
            Volatile.Write(ref cache.InUse, 1);
            ref ClassStack stack = ref cache.StackOf(classIndex);
            if (!_cachesClosed && stack.TryPush(buffer))
            {
                stack.Returns++;
                Volatile.Write(ref cache.InUse, 0);
                return;
            }

            Volatile.Write(ref cache.InUse, 0);
        }

        ReleaseSlow(buffer, classIndex);
    }

    /// <summary>Takes a leaked block back after its quarantine.</summary>
    public void Reclaim(NativeMemoryManager buffer) => _quarantine.Add(buffer, this, TClasses.Name);

    /// <summary>How many size classes the tier serves.</summary>
    protected int ClassCount => _capacities.Length;

    /// <summary>Whether the tier keeps blocks of <paramref name="length"/> bytes (a block's length) per thread at all: false when the options turn that off.</summary>
    public bool CachesPerThread(int length) => _capacities[TClasses.ClassIndexOfBlock(length)] > 0;

    /// <summary>This thread's current cache capacity for blocks of <paramref name="size"/> bytes; -1 before the thread used the tier.</summary>
    internal int CapacityOnThisThread(int size)
    {
        ThreadCache? cache = FindThreadCache();
        return cache is null ? -1 : cache.StackOf(TClasses.ClassIndexOfRequest(size)).Capacity;
    }
}
