using System;
using System.Collections.Generic;
using System.Numerics;
using System.Runtime.CompilerServices;
using System.Threading;
using Zipora.Buffers.Native;

namespace Zipora.Buffers;

/// <summary>
/// Requests from 1 KB to the mmap threshold: power-of-two size classes (1, 2, 4, 8, 16 KB by default), each with a
/// per-thread cache in front of a shared depot, carved from slabs of at least 64 KB.
/// </summary>
/// <remarks>
/// The common rent and return touch only the calling thread's cache: no lock, no interlocked instruction. A block
/// returned on another thread (a Pipe's reader) lands in that thread's cache; a full cache moves its colder half
/// to the depot, and an empty one refills half from the depot, so blocks flow from returning threads to renting
/// threads and no cache grows past its capacity.
/// </remarks>
internal sealed class MediumTier : SlabTier, INativeMemoryReleaser
{
    /// <summary>The smallest request this tier serves.</summary>
    public const int MinSize = SmallTier.MaxSize + 1;

    private const int MinSizeLog2 = 10;
    private const int MinSlabBytes = 64 * 1024;
    private const int BlocksPerSlab = 16;

#pragma warning disable IDE1006 // The runtime's t_ prefix for thread-statics, which the s_ rule cannot tell apart.
    // The cache this thread used last: nearly every process rents from one pool, so the fast path is one
    // thread-static read and one compare.
    [ThreadStatic]
    private static ThreadCache? t_lastCache;
#pragma warning restore IDE1006

    // Adaptive thread caches start a class at a quarter of its capacity, grow it by half each time it runs empty,
    // and shrink it by a quarter after this many overflows without running empty, down to an eighth.
    private const int OverflowsBeforeShrink = 4;

    private readonly int[] _capacities;
    private readonly int[] _initialCapacities;
    private readonly SizeClassDepot<NativeMemoryManager>[] _depots;
    private readonly SlabHeap _heap;
    private readonly ThreadCacheRegistry<ThreadCache> _registry;

    // Counters of threads that have exited, folded in when their caches are reclaimed; and of returns after disposal.
    private readonly long[] _retiredHits;
    private readonly long[] _retiredMisses;
    private readonly long[] _retiredReturns;
    private long _retiredRequestedBytes;

    private readonly Lock _trimLock = new();
    private volatile bool _disposed;

    // Closed while the caches are being emptied (by Trim or Dispose): threads then bypass their caches and use the
    // depots, so the emptying thread can take the caches' blocks without racing their owners.
    private volatile bool _cachesClosed;

    private readonly LeakQuarantine _quarantine;

    private readonly HighWaterSampler _highWater;

    // Adaptive: each class is judged idle on its own, so a class that went cold is given back while the others stay
    // busy (the tier-wide judgement of SlabTier waits for the whole tier to go quiet).
    private readonly bool _adaptive;
    private readonly ClassIdleness _idleness;

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
    }

    /// <summary>Rents a block for <paramref name="size"/> bytes (1 KB to the mmap threshold).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public NativeMemoryManager Rent(int size)
    {
        int classIndex = BitOperations.Log2((uint)size - 1) - (MinSizeLog2 - 1);
        ThreadCache? cache = t_lastCache;
        if (cache is not null && cache.Tier == this)
        {
            Volatile.Write(ref cache.InUse, 1);
            int top = cache.Counts[classIndex] - 1;
            if (top >= 0 && !_cachesClosed)
            {
                ref NativeMemoryManager slot = ref cache.Items[(classIndex * cache.Stride) + top];
                NativeMemoryManager buffer = slot;

                // Nothing in the pool may keep a rented block reachable, or a leaked one would never be finalized.
                slot = null!;
                cache.Counts[classIndex] = top;
                cache.Hits[classIndex]++;
                cache.RequestedBytes += size;
                buffer.Reactivate();
                Volatile.Write(ref cache.InUse, 0);
                return buffer;
            }

            Volatile.Write(ref cache.InUse, 0);
        }

        return RentSlow(classIndex, size);
    }

    /// <summary>Takes a block back from its owner, on whatever thread disposed it.</summary>
    public void Release(NativeMemoryManager buffer)
    {
        int classIndex = BitOperations.Log2((uint)buffer.Length) - MinSizeLog2;
        ThreadCache? cache = t_lastCache;
        if (cache is not null && cache.Tier == this)
        {
            Volatile.Write(ref cache.InUse, 1);
            int count = cache.Counts[classIndex];
            if (count < cache.Capacities[classIndex] && !_cachesClosed)
            {
                cache.Items[(classIndex * cache.Stride) + count] = buffer;
                cache.Counts[classIndex] = count + 1;
                cache.Returns[classIndex]++;
                Volatile.Write(ref cache.InUse, 0);
                return;
            }

            Volatile.Write(ref cache.InUse, 0);
        }

        ReleaseSlow(buffer, classIndex);
    }

    /// <summary>Takes a leaked block back after its quarantine.</summary>
    public void Reclaim(NativeMemoryManager buffer) => _quarantine.Add(buffer, this, "medium");

    public override TierStatistics GetStatistics()
    {
        long hits = 0, misses = 0, returns = 0, inUse = 0, rented = 0;
        foreach (ClassCounts counts in CountByClass())
        {
            hits += counts.Hits;
            misses += counts.Misses;
            returns += counts.Returns;
            inUse += (counts.Hits + counts.Misses - counts.Returns) * counts.Size;
            rented += (counts.Hits + counts.Misses) * counts.Size;
        }

        long requested = Volatile.Read(ref _retiredRequestedBytes);
        lock (_registry.Lock)
        {
            foreach (ThreadCache cache in _registry.Caches)
            {
                requested += Volatile.Read(ref cache.RequestedBytes);
            }
        }

        return Snapshot("medium", hits, misses, returns, inUse, rented, requested, _heap);
    }

    /// <summary>Adds a histogram row for every class rented so far.</summary>
    public void AddClassStatistics(List<SizeClassStatistics> into)
    {
        ClassCounts[] byClass = CountByClass();
        for (int classIndex = 0; classIndex < byClass.Length; classIndex++)
        {
            ClassCounts counts = byClass[classIndex];
            if (counts.Hits + counts.Misses > 0)
            {
                into.Add(new SizeClassStatistics
                {
                    Tier = "medium",
                    ClassSize = counts.Size,
                    Rents = counts.Hits + counts.Misses,
                    BuffersInUse = counts.Hits + counts.Misses - counts.Returns,
                    HighWaterMark = _highWater.HighWaterMark(classIndex),
                    Cached = counts.Cached,
                });
            }
        }
    }

    /// <summary>
    /// Samples each class's buffers in use for the high-water marks and dates each class's activity; when adaptive,
    /// trims each class that saw no rent or return for the whole delay; then lets the slab tier judge the whole
    /// tier's idleness.
    /// </summary>
    public override void ReleaseIdle(long now, long delayInTicks)
    {
        // Only the idle releaser's timer calls this, one tick at a time.
        ClassCounts[] byClass = CountByClass();
        var inUse = new long[byClass.Length];
        long activity = 0;
        for (int classIndex = 0; classIndex < byClass.Length; classIndex++)
        {
            ClassCounts counts = byClass[classIndex];
            inUse[classIndex] = counts.Hits + counts.Misses - counts.Returns;
            activity += counts.Hits + counts.Misses + counts.Returns;
        }

        _highWater.Sample(now, delayInTicks, inUse);
        bool[]? idle = _idleness.IdleClasses(byClass, now, delayInTicks);
        if (_adaptive && idle is not null)
        {
            TrimClasses(idle);
        }

        TrimIfIdle(now, delayInTicks, activity);
    }

    public override void Dispose()
    {
        lock (_trimLock)
        {
            _disposed = true;
            var cached = new List<NativeMemoryManager>();
            CloseAndEmptyCaches(cached);
            foreach (SizeClassDepot<NativeMemoryManager> depot in _depots)
            {
                depot.DrainInto(cached, close: true);
            }

            _heap.ReleaseCached(cached);
            _registry.ReleaseSlot();
        }
    }

    public override void Trim() => TrimClasses(null);

    /// <summary>Gives back the free blocks of the chosen classes (all when <paramref name="classes"/> is null).</summary>
    private void TrimClasses(bool[]? classes)
    {
        lock (_trimLock)
        {
            if (_disposed)
            {
                return;
            }

            var free = new List<NativeMemoryManager>();
            CloseAndEmptyCaches(free, classes);
            for (int classIndex = 0; classIndex < _depots.Length; classIndex++)
            {
                if (classes?[classIndex] ?? true)
                {
                    _depots[classIndex].DrainInto(free, close: false);
                }
            }

            foreach (NativeMemoryManager buffer in _heap.TrimFree(free, ReturnedByClass()))
            {
                _ = _depots[BitOperations.Log2((uint)buffer.Length) - MinSizeLog2].TryPut(buffer);
            }

            _cachesClosed = false;
        }
    }

    /// <summary>
    /// Closes the caches and moves the blocks they hold of the chosen classes (all when <paramref name="classes"/> is
    /// null) into <paramref name="into"/>. Caller holds the trim lock.
    /// </summary>
    private void CloseAndEmptyCaches(List<NativeMemoryManager> into, bool[]? classes = null)
    {
        _cachesClosed = true;

        // Pairs with the Volatile.Write(InUse, 1) / read of _cachesClosed on the owner threads: after this barrier
        // every thread either sees the caches closed or has its InUse store visible here, so once InUse is 0 below
        // no thread touches its cache until they open again.
        Interlocked.MemoryBarrierProcessWide();

        lock (_registry.Lock)
        {
            foreach (ThreadCache cache in _registry.Caches)
            {
                ThreadCacheSlots.WaitUntilLeft(ref cache.InUse);

                DrainUnsynchronized(cache, into, classes);
            }
        }
    }

    /// <summary>
    /// Per class, the tick by which its free blocks had all been returned; called by a trim after it collected them,
    /// when every return that put one of them back has also been counted (see <see cref="ReleaseSlow"/>).
    /// </summary>
    private long[] ReturnedByClass()
    {
        ClassCounts[] byClass = CountByClass();
        long now = Clock.Epoch;
        var returnedBy = new long[byClass.Length];
        for (int classIndex = 0; classIndex < byClass.Length; classIndex++)
        {
            ClassCounts counts = byClass[classIndex];
            returnedBy[classIndex] = _idleness.ReturnedBy(classIndex, counts.Hits + counts.Misses + counts.Returns, now);
        }

        return returnedBy;
    }

    /// <summary>Every thread's counters and cached blocks, summed per class.</summary>
    private ClassCounts[] CountByClass()
    {
        var byClass = new ClassCounts[_capacities.Length];
        lock (_registry.Lock)
        {
            _registry.RetireExitedUnsynchronized();
            for (int classIndex = 0; classIndex < byClass.Length; classIndex++)
            {
                ref ClassCounts counts = ref byClass[classIndex];
                counts.Size = ClassSize(classIndex);
                counts.Hits = Volatile.Read(ref _retiredHits[classIndex]);
                counts.Misses = Volatile.Read(ref _retiredMisses[classIndex]);
                counts.Returns = Volatile.Read(ref _retiredReturns[classIndex]);
                counts.Cached = _depots[classIndex].Count;
                foreach (ThreadCache cache in _registry.Caches)
                {
                    counts.Hits += Volatile.Read(ref cache.Hits[classIndex]);
                    counts.Misses += Volatile.Read(ref cache.Misses[classIndex]);
                    counts.Returns += Volatile.Read(ref cache.Returns[classIndex]);
                    counts.Cached += Volatile.Read(ref cache.Counts[classIndex]);
                }
            }
        }

        return byClass;
    }

    /// <summary>The block size of class <paramref name="classIndex"/>.</summary>
    private static int ClassSize(int classIndex) => MinSize << classIndex;

    /// <summary>This thread's cache of this tier, found through the per-thread array and made the last used.</summary>
    private ThreadCache? FindThreadCache()
    {
        ThreadCache? cache = _registry.FindForThisThread();
        if (cache is not null)
        {
            t_lastCache = cache;
        }

        return cache;
    }

    [MethodImpl(MethodImplOptions.NoInlining)]
    private NativeMemoryManager RentSlow(int classIndex, int size)
    {
        ThreadCache? cache = FindThreadCache() ?? CreateThreadCache();
        if (cache is null)
        {
            ThrowHelper.ThrowPoolDisposed();
        }

        Volatile.Write(ref cache.InUse, 1);
        if (_cachesClosed)
        {
            Volatile.Write(ref cache.InUse, 0);
            return RentBypassingCache(cache, classIndex, size);
        }

        Span<NativeMemoryManager> stack = cache.Stack(classIndex);
        ref int count = ref cache.Counts[classIndex];
        NativeMemoryManager? buffer = null;
        if (count == 0 && !stack.IsEmpty)
        {
            if (_adaptive)
            {
                stack = GrowAfterRunningEmpty(cache, classIndex);
            }

            // Refill half the stack at once, so the depot's lock is paid once per batch.
            _ = _depots[classIndex].TakeInto(stack, ref count, Math.Max(1, stack.Length / 2));
        }

        if (count > 0)
        {
            buffer = stack[--count];
            stack[count] = null!;
        }
        else if (stack.IsEmpty)
        {
            // Per-thread caching is off for this class: go to the depot for every buffer.
            buffer = _depots[classIndex].TakeOne();
        }

        Volatile.Write(ref cache.InUse, 0);
        return HandOut(cache, classIndex, size, buffer);
    }

    /// <summary>Rents while the caches are closed: from the depot or a fresh block, touching only this thread's counters.</summary>
    private NativeMemoryManager RentBypassingCache(ThreadCache cache, int classIndex, int size)
    {
        if (_disposed)
        {
            ThrowHelper.ThrowPoolDisposed();
        }

        return HandOut(cache, classIndex, size, _depots[classIndex].TakeOne());
    }

    /// <summary>Hands out a cached block (a hit) or, when there is none, a freshly carved one (a miss).</summary>
    private NativeMemoryManager HandOut(ThreadCache cache, int classIndex, int size, NativeMemoryManager? cached)
    {
        cache.RequestedBytes += size;
        if (cached is not null)
        {
            cache.Hits[classIndex]++;
            cached.Reactivate();
            return cached;
        }

        // Called with the thread's cache released: mapping a slab may trim the pool, and a trim waits for every cache.
        NativeMemoryManager carved = Carve(classIndex);
        cache.Misses[classIndex]++;
        return carved;
    }

    private NativeMemoryManager Carve(int classIndex) =>
        _heap.Carve(classIndex, ClassSize(classIndex), Math.Max(MinSlabBytes, BlocksPerSlab * ClassSize(classIndex)), "medium");

    [MethodImpl(MethodImplOptions.NoInlining)]
    private void ReleaseSlow(NativeMemoryManager buffer, int classIndex)
    {
        ThreadCache? cache = FindThreadCache() ?? CreateThreadCache();
        if (cache is not null)
        {
            Volatile.Write(ref cache.InUse, 1);
            if (!_cachesClosed)
            {
                cache.Returns[classIndex]++;
                Span<NativeMemoryManager> stack = cache.Stack(classIndex);
                ref int count = ref cache.Counts[classIndex];
                if (stack.IsEmpty)
                {
                    _ = _depots[classIndex].TryPut(buffer);
                }
                else
                {
                    if (count == stack.Length)
                    {
                        // Full: keep the warmest half of the capacity here and move the rest to the depot for other
                        // threads. The capacity may shrink first; the stack is cut to it after the move.
                        int capacity = _adaptive ? ShrinkAfterOverflow(cache, classIndex) : count;
                        _depots[classIndex].PutFrom(stack, ref count, count - (capacity / 2));
                        stack = cache.Stack(classIndex);
                    }

                    stack[count++] = buffer;
                }

                Volatile.Write(ref cache.InUse, 0);
                return;
            }

            Volatile.Write(ref cache.InUse, 0);

            // The caches are closed for a trim: hand the block straight to the depot. The return is counted first, so
            // a trim that drains the depot sees it counted and dates the block as just returned. A disposed tier's
            // depots are closed too, and the block is then freed below.
            cache.Returns[classIndex]++;
            if (_depots[classIndex].TryPut(buffer))
            {
                return;
            }

            cache.Returns[classIndex]--;
        }

        // Disposed: the block is counted as returned and its memory freed with its slab.
        Interlocked.Increment(ref _retiredReturns[classIndex]);
        _heap.ReleaseAfterDispose(buffer);
    }

    /// <summary>Creates and registers this thread's cache, or returns <see langword="null"/> when the tier is disposed.</summary>
    private ThreadCache? CreateThreadCache()
    {
        lock (_registry.Lock)
        {
            if (_disposed)
            {
                return null;
            }

            var cache = new ThreadCache(this, _capacities, _initialCapacities);
            _registry.AddForThisThreadUnsynchronized(cache);
            t_lastCache = cache;
            return cache;
        }
    }

    /// <summary>
    /// Moves the blocks of a thread that has exited to the depots and folds its counters into the retired totals.
    /// The registry calls it with its lock held.
    /// </summary>
    private void RetireUnsynchronized(ThreadCache cache)
    {
        _retiredRequestedBytes += cache.RequestedBytes;
        for (int classIndex = 0; classIndex < _capacities.Length; classIndex++)
        {
            _retiredHits[classIndex] += cache.Hits[classIndex];
            _retiredMisses[classIndex] += cache.Misses[classIndex];
            Interlocked.Add(ref _retiredReturns[classIndex], cache.Returns[classIndex]);
            ref int count = ref cache.Counts[classIndex];
            if (count > 0)
            {
                _depots[classIndex].PutFrom(cache.Stack(classIndex), ref count, count);
            }
        }
    }

    private void DrainUnsynchronized(ThreadCache cache, List<NativeMemoryManager> into, bool[]? classes)
    {
        for (int classIndex = 0; classIndex < _capacities.Length; classIndex++)
        {
            if (!(classes?[classIndex] ?? true))
            {
                continue;
            }

            Span<NativeMemoryManager> stack = cache.Stack(classIndex);
            ref int count = ref cache.Counts[classIndex];
            foreach (NativeMemoryManager buffer in stack[..count])
            {
                into.Add(buffer);
            }

            stack.Clear();
            count = 0;

            // A class given back starts over small, as it would on a new thread.
            cache.Capacities[classIndex] = _initialCapacities[classIndex];
            cache.Overflows[classIndex] = 0;
        }
    }

    /// <summary>Where an adaptive class's capacity starts: a quarter of its limit.</summary>
    private static int InitialCapacity(int max) => max == 0 ? 0 : Math.Max(1, max / 4);

    /// <summary>The least an adaptive class's capacity shrinks to: an eighth of its limit.</summary>
    private static int MinimumCapacity(int max) => max == 0 ? 0 : Math.Max(1, max / 8);

    /// <summary>A class that ran empty needed more: grow its capacity by half, within its limit. Owner thread, inside its handshake.</summary>
    private Span<NativeMemoryManager> GrowAfterRunningEmpty(ThreadCache cache, int classIndex)
    {
        cache.Overflows[classIndex] = 0;
        int capacity = cache.Capacities[classIndex];
        cache.Capacities[classIndex] = Math.Min(_capacities[classIndex], capacity + Math.Max(1, capacity / 2));
        return cache.Stack(classIndex);
    }

    /// <summary>A class that keeps overflowing holds more than its thread uses: shrink its capacity by a quarter. Returns the capacity.</summary>
    private int ShrinkAfterOverflow(ThreadCache cache, int classIndex)
    {
        int capacity = cache.Capacities[classIndex];
        int minimum = MinimumCapacity(_capacities[classIndex]);
        if (++cache.Overflows[classIndex] >= OverflowsBeforeShrink && capacity > minimum)
        {
            capacity = Math.Max(minimum, capacity - Math.Max(1, capacity / 4));
            cache.Overflows[classIndex] = 0;
            cache.Capacities[classIndex] = capacity;
        }

        return capacity;
    }

    /// <summary>This thread's current cache capacity for blocks of <paramref name="size"/> bytes; -1 before the thread used the tier.</summary>
    internal int CapacityOnThisThread(int size)
    {
        int classIndex = BitOperations.Log2((uint)size - 1) - (MinSizeLog2 - 1);
        return FindThreadCache()?.Capacities[classIndex] ?? -1;
    }
}
