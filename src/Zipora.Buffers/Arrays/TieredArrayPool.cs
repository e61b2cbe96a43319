using System;
using System.Buffers;
using System.Collections.Generic;
using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
using System.Threading;

namespace Zipora.Buffers;

/// <summary>
/// An <see cref="ArrayPool{T}"/> of managed byte arrays, a drop-in for <see cref="ArrayPool{T}.Shared"/> that keeps
/// deep stacks per thread (bursts of 100 rents stay on the fast path), moves arrays returned on another thread back
/// to the renting threads, rounds lengths to finer classes above 4 KB, and drops arrays that sit idle.
/// </summary>
/// <remarks>
/// <para>
/// Each thread keeps a stack of free arrays per size class. The common rent and return touch only that stack: no
/// lock, no interlocked instruction. A full stack moves its colder half to a shared depot for the class, and an
/// empty one refills half its capacity from there, so a thread that only returns (a Pipe's reader) feeds the threads
/// that rent instead of hoarding their arrays.
/// </para>
/// <para>
/// Arrays are handed out uninitialized (their old contents, or garbage); at or above
/// <see cref="TieredArrayPoolOptions.PinnedThreshold"/> they live on the pinned object heap. As with the runtime's
/// pool, returning an array twice, or using it after returning it, corrupts whoever rents it next.
/// </para>
/// </remarks>
public sealed class TieredArrayPool : ArrayPool<byte>, IReclaimablePool
{
    private static readonly TieredArrayPool s_shared = new();

#pragma warning disable IDE1006 // The runtime's t_ prefix for thread-statics, which the s_ rule cannot tell apart.
    // The cache this thread used last: nearly every process rents from one pool, so the fast path is one
    // thread-static read and one compare.
    [ThreadStatic]
    private static ArrayThreadCache? t_lastCache;
#pragma warning restore IDE1006

    private readonly int _maxPooledLength;
    private readonly int[] _classLengths;

    // How many arrays a thread's stack of each class holds.
    private readonly int[] _capacities;
    private readonly SizeClassDepot<byte[]>[] _depots;
    private readonly long _sharedCacheMaxBytes;
    private readonly int _pinnedThreshold;

    private readonly ThreadCacheRegistry<ArrayThreadCache> _registry;

    // The registry's id, which this pool's thread caches carry (see ArrayThreadCache).
    private readonly long _cacheId;
    private readonly long[] _retiredHits;
    private readonly long[] _retiredMisses;
    private readonly long[] _retiredReturns;
    private readonly ClassIdleness _idleness;

    private readonly Lock _trimLock = new();
    private long _depotBytes;
    private long _evictedBytes;
    private long _unpooledRents;
    private long _unpooledReturns;
    private long _unpooledBytesRented;
    private long _unpooledBytesReturned;

    /// <summary>Creates a pool with the default <see cref="TieredArrayPoolOptions"/>.</summary>
    public TieredArrayPool()
        : this(new TieredArrayPoolOptions())
    {
    }

    /// <summary>Creates a pool with the given options (copied: later changes to <paramref name="options"/> do not affect it).</summary>
    /// <remarks>
    /// A pool nobody references is collected, whichever threads used it, and the arrays their caches held for it go
    /// with it; all its pools share one timer per <see cref="TimeProvider"/>.
    /// </remarks>
    /// <exception cref="ArgumentNullException"><paramref name="options"/> is <see langword="null"/>.</exception>
    /// <exception cref="ArgumentException">An option is out of range; the exception names it.</exception>
    public TieredArrayPool(TieredArrayPoolOptions options)
    {
        // Finalized only once built: a constructor that throws leaves nothing for the finalizer to empty.
        GC.SuppressFinalize(this);
        ArgumentNullException.ThrowIfNull(options);
        options = options.Clone();
        options.Validate();

        int classCount = ArraySizeClasses.IndexOf(options.MaxArrayLength) + 1;
        _maxPooledLength = ArraySizeClasses.LengthOf(classCount - 1);
        _classLengths = new int[classCount];
        _capacities = new int[classCount];
        _depots = new SizeClassDepot<byte[]>[classCount];
        for (int i = 0; i < classCount; i++)
        {
            _classLengths[i] = ArraySizeClasses.LengthOf(i);
            _capacities[i] = Math.Min(options.ThreadCacheMaxArrays, options.ThreadCacheMaxBytesPerClass / _classLengths[i]);
            _depots[i] = new SizeClassDepot<byte[]>();
        }

        _retiredHits = new long[classCount];
        _retiredMisses = new long[classCount];
        _retiredReturns = new long[classCount];
        _idleness = new ClassIdleness(classCount);
        _sharedCacheMaxBytes = options.SharedCacheMaxBytes;
        _pinnedThreshold = options.PinnedThreshold;
        _registry = new ThreadCacheRegistry<ArrayThreadCache>(RetireUnsynchronized);
        _cacheId = _registry.Id;
        Name = options.Name;
        if (options.IdleReleaseDelay != Timeout.InfiniteTimeSpan)
        {
            // Kept by the clock's shared ticker, and holding this pool weakly: an array pool is never disposed.
            _ = new IdleReleaser(this, new IdleClock(options.IdleReleaseDelay, options.TimeProvider), options.TimeProvider);
        }

        PoolMetrics.Register(this);
        MemoryPressureWatcher.Start();
        GC.ReRegisterForFinalize(this);
    }

    /// <summary>
    /// Lets go of the arrays of a pool nobody references: a thread's last-used cache would otherwise hold them until
    /// the thread used another pool. Then gives the thread-cache slot back for later pools.
    /// </summary>
    /// <remarks>
    /// On the finalizer thread, which is fine here: dropping arrays makes no system call, and the only locks are this
    /// pool's, which nobody can wait on for long once the pool is unreachable. Owners racing it are safe as they are
    /// with any trim (see <see cref="ArrayThreadCache"/>).
    /// </remarks>
    ~TieredArrayPool()
    {
        Trim();
        _registry.ReleaseSlot();
    }

    /// <summary>The process-wide pool, with default options.</summary>
    public static new TieredArrayPool Shared => s_shared;

    /// <summary>The pool's name: the owner tag of its metrics (<see cref="TieredArrayPoolOptions.Name"/>).</summary>
    public string Name { get; }

    /// <summary>The longest pooled array: <see cref="TieredArrayPoolOptions.MaxArrayLength"/> rounded up to its size class.</summary>
    public int MaxPooledLength => _maxPooledLength;

    bool IReclaimablePool.IsDisposed => false;

    /// <summary>Memory runs short: every cached array is dropped for the GC, as <see cref="Trim"/> does.</summary>
    void IReclaimablePool.TrimUnderPressure() => Trim();

    /// <summary>Rents an array of at least <paramref name="minimumLength"/> bytes, uninitialized.</summary>
    /// <param name="minimumLength">Bytes needed; 0 gives the same empty array every time.</param>
    /// <returns>
    /// An array of the size class of <paramref name="minimumLength"/>, or, above <see cref="MaxPooledLength"/>, of exactly
    /// <paramref name="minimumLength"/> bytes.
    /// </returns>
    /// <exception cref="ArgumentOutOfRangeException"><paramref name="minimumLength"/> is negative.</exception>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public override byte[] Rent(int minimumLength)
    {
        if ((uint)(minimumLength - 1) < (uint)_maxPooledLength)
        {
            int classIndex = ArraySizeClasses.IndexOf(minimumLength);
            ArrayThreadCache? cache = t_lastCache;
            if (cache is not null && cache.RegistryId == _cacheId)
            {
                ref ArrayClassStack stack = ref cache.StackOf(classIndex);
                byte[][] items = stack.Items;
                int top = stack.Count - 1;
                if ((uint)top < (uint)items.Length)
                {
                    // No hit counter here: the statistics derive the hits from the returns (see NetTransfers).
                    byte[] array = items[top];
                    items[top] = null!;
                    stack.Count = top;
                    return array;
                }
            }

            return RentSlow(classIndex);
        }

        return RentOutsideClasses(minimumLength);
    }

    /// <summary>Returns an array to the pool, on whatever thread.</summary>
    /// <param name="array">An array from <see cref="Rent"/> (any array of a class length is accepted).</param>
    /// <param name="clearArray">Whether to zero the array first, so the next renter cannot read its contents.</param>
    /// <exception cref="ArgumentNullException"><paramref name="array"/> is <see langword="null"/>.</exception>
    /// <exception cref="ArgumentException">
    /// The length of <paramref name="array"/> is not a class length and not above <see cref="MaxPooledLength"/>, so the
    /// pool did not hand it out. It is cleared first when <paramref name="clearArray"/> is set, and not kept.
    /// </exception>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public override void Return(byte[] array, bool clearArray = false)
    {
        if (array is null)
        {
            ThrowHelper.ThrowReturnedArrayNull(array);
        }

        int length = array.Length;
        if ((uint)(length - 1) < (uint)_maxPooledLength)
        {
            int classIndex = ArraySizeClasses.ExactIndexOf(length);
            if (clearArray)
            {
                Array.Clear(array);
            }

            if (classIndex < 0)
            {
                ThrowHelper.ThrowArrayNotFromPool(array);
            }

            ArrayThreadCache? cache = t_lastCache;
            if (cache is not null && cache.RegistryId == _cacheId)
            {
                ref ArrayClassStack stack = ref cache.StackOf(classIndex);
                byte[][] items = stack.Items;
                int count = stack.Count;
                if ((uint)count < (uint)items.Length)
                {
                    // Through a reference: the store skips the covariance check of a byte[][] element store.
                    Unsafe.Add(ref MemoryMarshal.GetArrayDataReference(items), count) = array;
                    stack.Count = count + 1;
                    stack.Returns++;
                    return;
                }
            }

            ReturnSlow(array, classIndex);
        }
        else if (length != 0)
        {
            ReturnUnpooled(array, clearArray);
        }
    }

    /// <summary>A snapshot of what the pool has done and holds.</summary>
    public TieredArrayPoolStatistics GetStatistics()
    {
        ClassTotals totals = ClassTotals.Of(CountByClass(out int threads));

        long unpooledRents = Volatile.Read(ref _unpooledRents);
        long unpooledBytes = Volatile.Read(ref _unpooledBytesRented);
        return new TieredArrayPoolStatistics
        {
            Arrays = new TierStatistics
            {
                Name = "array",
                Rents = totals.Hits + totals.Misses + unpooledRents,
                Returns = totals.Returns + Volatile.Read(ref _unpooledReturns),
                CacheHits = totals.Hits,
                CacheMisses = totals.Misses + unpooledRents,
                BytesInUse = totals.BytesInUse + unpooledBytes - Volatile.Read(ref _unpooledBytesReturned),
                BytesRetained = totals.BytesCached,
                BytesRented = totals.BytesRented + unpooledBytes,
                BytesAllocated = totals.BytesAllocated + unpooledBytes,
                BytesEvicted = Volatile.Read(ref _evictedBytes),
            },
            UnpooledRents = unpooledRents,
            ThreadCaches = threads,
        };
    }

    /// <summary>
    /// Drops every cached array, from every thread's cache and the depots, so the GC can collect them. Arrays rented
    /// out are not touched. The pool also does this on its own for size classes idle longer than
    /// <see cref="TieredArrayPoolOptions.IdleReleaseDelay"/>, and when the GC reports high memory load.
    /// </summary>
    public void Trim()
    {
        var everyClass = new bool[_classLengths.Length];
        Array.Fill(everyClass, true);
        DropCached(everyClass);
    }

    /// <summary>Drops the arrays of the classes that saw no rent or return for the whole delay.</summary>
    void IReclaimablePool.ReleaseIdle(long now, long delayInTicks)
    {
        if (!_registry.MayHaveCaches && Volatile.Read(ref _depotBytes) == 0)
        {
            // Nothing cached anywhere, so nothing to drop: an idle pool's tick costs two reads. The activity it skips
            // dating is dated at the first tick that looks again, which only makes the class seem used later.
            return;
        }

        bool[]? idle = _idleness.IdleClasses(CountByClass(out _), now, delayInTicks);
        if (idle is not null)
        {
            DropCached(idle);
        }
    }

    /// <summary>Every thread's counters and cached arrays, summed per class; <paramref name="threads"/> is the number of caches.</summary>
    private ClassCounts[] CountByClass(out int threads)
    {
        var byClass = new ClassCounts[_classLengths.Length];
        lock (_registry.Lock)
        {
            _registry.RetireExitedUnsynchronized();
            for (int classIndex = 0; classIndex < byClass.Length; classIndex++)
            {
                ref ClassCounts counts = ref byClass[classIndex];
                counts.Size = _classLengths[classIndex];
                counts.Hits = _retiredHits[classIndex];
                counts.Misses = _retiredMisses[classIndex];
                counts.Returns = _retiredReturns[classIndex];
                counts.Cached = _depots[classIndex].Count;
                foreach (ArrayThreadCache cache in _registry.Caches)
                {
                    counts.Hits += cache.HitsOf(classIndex);
                    counts.Misses += Volatile.Read(ref cache.Misses[classIndex]);
                    counts.Returns += Volatile.Read(ref cache.StackOf(classIndex).Returns);
                    counts.Cached += cache.HeldOf(classIndex);
                }
            }

            threads = _registry.Caches.Length;
        }

        return byClass;
    }

    [MethodImpl(MethodImplOptions.NoInlining)]
    private byte[] RentOutsideClasses(int minimumLength)
    {
        if (minimumLength == 0)
        {
            return [];
        }

        if (minimumLength < 0)
        {
            ThrowHelper.ThrowRentLengthNegative(minimumLength);
        }

        byte[] array = Allocate(minimumLength);
        Interlocked.Increment(ref _unpooledRents);
        Interlocked.Add(ref _unpooledBytesRented, minimumLength);
        return array;
    }

    [MethodImpl(MethodImplOptions.NoInlining)]
    private void ReturnUnpooled(byte[] array, bool clearArray)
    {
        if (clearArray)
        {
            Array.Clear(array);
        }

        Interlocked.Increment(ref _unpooledReturns);
        Interlocked.Add(ref _unpooledBytesReturned, array.Length);
    }

    [MethodImpl(MethodImplOptions.NoInlining)]
    private byte[] RentSlow(int classIndex)
    {
        ArrayThreadCache cache = FindThreadCache() ?? CreateThreadCache();
        ref ArrayClassStack stack = ref cache.StackOf(classIndex);
        byte[]? array = null;
        byte[][] slots = SlotsOf(cache, classIndex);
        if (slots.Length > 0)
        {
            if (stack.Count == 0)
            {
                // Refill half the stack at once, so the depot's lock is paid once per batch.
                int moved = _depots[classIndex].TakeInto(slots, ref stack.Count, Math.Max(1, slots.Length / 2));
                Interlocked.Add(ref _depotBytes, -(long)moved * _classLengths[classIndex]);
                cache.NetTransfers[classIndex] += moved;
            }

            // The stack may hold arrays already: the fast path misses whenever another pool was used last on this thread.
            if (stack.Count > 0)
            {
                array = slots[--stack.Count];
                slots[stack.Count] = null!;
            }
        }
        else
        {
            // A class the thread does not cache: the depot serves the thread directly.
            array = TakeOneFromDepot(classIndex);
            if (array is not null)
            {
                cache.NetTransfers[classIndex]++;
            }
        }

        if (array is null)
        {
            cache.Misses[classIndex]++;
            array = Allocate(_classLengths[classIndex]);
        }

        return array;
    }

    [MethodImpl(MethodImplOptions.NoInlining)]
    private void ReturnSlow(byte[] array, int classIndex)
    {
        ArrayThreadCache cache = FindThreadCache() ?? CreateThreadCache();
        ref ArrayClassStack stack = ref cache.StackOf(classIndex);
        stack.Returns++;
        byte[][] slots = SlotsOf(cache, classIndex);
        if (slots.Length == 0)
        {
            cache.NetTransfers[classIndex]--;
            PutInDepot(array, classIndex);
            return;
        }

        if (stack.Count == slots.Length)
        {
            // Full: keep the warm half here and move the cold half to the depot for other threads.
            int moved = Math.Max(1, stack.Count / 2);
            MoveToDepot(slots, ref stack.Count, classIndex, moved);
            cache.NetTransfers[classIndex] -= moved;
        }

        slots[stack.Count++] = array;
    }

    /// <summary>
    /// The slots of a class in this thread's cache, installed on first use and after a trim abandoned them; empty
    /// when the thread does not cache the class.
    /// </summary>
    private byte[][] SlotsOf(ArrayThreadCache cache, int classIndex)
    {
        ref ArrayClassStack stack = ref cache.StackOf(classIndex);
        byte[][] slots = Volatile.Read(ref stack.Items);
        if (slots.Length > 0 || _capacities[classIndex] == 0)
        {
            return slots;
        }

        // The count a trim saw went to the evicted bytes; whatever rents and returns racing it did to the abandoned
        // slots since is settled here. Both counts are cleared before the new slots are published, which the trim
        // reads first.
        ref int trimmedCount = ref cache.TrimmedCount[classIndex];
        long racing = stack.Count - trimmedCount;
        cache.TrimCorrection[classIndex] += racing;
        Interlocked.Add(ref _evictedBytes, racing * _classLengths[classIndex]);
        stack.Count = 0;
        Volatile.Write(ref trimmedCount, 0);
        slots = new byte[_capacities[classIndex]][];
        Volatile.Write(ref stack.Items, slots);
        return slots;
    }

    private byte[] Allocate(int length) => GC.AllocateUninitializedArray<byte>(length, pinned: length >= _pinnedThreshold);

    private byte[]? TakeOneFromDepot(int classIndex)
    {
        byte[]? array = _depots[classIndex].TakeOne();
        if (array is not null)
        {
            Interlocked.Add(ref _depotBytes, -array.Length);
        }

        return array;
    }

    private void PutInDepot(byte[] array, int classIndex)
    {
        if (TryReserveDepotBytes(array.Length))
        {
            _ = _depots[classIndex].TryPut(array);
        }
        else
        {
            Interlocked.Add(ref _evictedBytes, array.Length);
        }
    }

    /// <summary>Moves the <paramref name="moved"/> oldest arrays of a stack to the depot, or drops them when the depots are full.</summary>
    private void MoveToDepot(Span<byte[]> stack, ref int count, int classIndex, int moved)
    {
        long bytes = (long)moved * _classLengths[classIndex];
        if (TryReserveDepotBytes(bytes))
        {
            _depots[classIndex].PutFrom(stack, ref count, moved);
            return;
        }

        int kept = count - moved;
        stack.Slice(moved, kept).CopyTo(stack);
        stack.Slice(kept, moved).Clear();
        count = kept;
        Interlocked.Add(ref _evictedBytes, bytes);
    }

    private bool TryReserveDepotBytes(long bytes)
    {
        if (Interlocked.Add(ref _depotBytes, bytes) <= _sharedCacheMaxBytes)
        {
            return true;
        }

        Interlocked.Add(ref _depotBytes, -bytes);
        return false;
    }

    /// <summary>
    /// Drops the arrays of the chosen classes from every thread's cache and from the depots. A thread's stack is
    /// abandoned whole, so its owner never waits for a trim nor a trim for it (see <see cref="ArrayThreadCache"/>).
    /// </summary>
    private void DropCached(bool[] classes)
    {
        lock (_trimLock)
        {
            long dropped = 0;
            lock (_registry.Lock)
            {
                _registry.RetireExitedUnsynchronized();
                foreach (ArrayThreadCache cache in _registry.Caches)
                {
                    for (int classIndex = 0; classIndex < classes.Length; classIndex++)
                    {
                        if (classes[classIndex])
                        {
                            dropped += (long)AbandonSlots(cache, classIndex) * _classLengths[classIndex];
                        }
                    }
                }
            }

            var drained = new List<byte[]>();
            for (int classIndex = 0; classIndex < classes.Length; classIndex++)
            {
                if (classes[classIndex])
                {
                    _depots[classIndex].DrainInto(drained, close: false);
                }
            }

            long depotBytes = 0;
            foreach (byte[] array in drained)
            {
                depotBytes += array.Length;
            }

            Interlocked.Add(ref _depotBytes, -depotBytes);
            Interlocked.Add(ref _evictedBytes, dropped + depotBytes);
        }
    }

    /// <summary>
    /// Swaps the slots of a class in a cache for <see cref="ArrayThreadCache.NoStack"/>, leaving them to the GC;
    /// returns how many arrays the stack held. Stacks without slots are skipped: nothing to drop, or a count not yet
    /// settled by their owner. Caller holds the trim lock.
    /// </summary>
    private static int AbandonSlots(ArrayThreadCache cache, int classIndex)
    {
        ref ArrayClassStack stack = ref cache.StackOf(classIndex);
        if (Volatile.Read(ref stack.Items).Length == 0)
        {
            return 0;
        }

        // Counted before the swap: the owner sees the count recorded as soon as it sees the slots gone.
        int count = Volatile.Read(ref stack.Count);
        Volatile.Write(ref cache.TrimmedCount[classIndex], count);
        Volatile.Write(ref cache.Trimmed[classIndex], cache.Trimmed[classIndex] + count);
        Volatile.Write(ref stack.Items, ArrayThreadCache.NoStack);
        return count;
    }

    /// <summary>This thread's cache of this pool, found through the per-thread array and made the last used.</summary>
    private ArrayThreadCache? FindThreadCache()
    {
        ArrayThreadCache? cache = _registry.FindForThisThread();
        if (cache is not null)
        {
            t_lastCache = cache;
        }

        return cache;
    }

    private ArrayThreadCache CreateThreadCache()
    {
        lock (_registry.Lock)
        {
            var cache = new ArrayThreadCache(_classLengths.Length);
            _registry.AddForThisThreadUnsynchronized(cache);
            t_lastCache = cache;
            return cache;
        }
    }

    /// <summary>
    /// Moves the arrays of a thread that has exited to the depots and folds its counters into the retired totals.
    /// The registry calls it with its lock held.
    /// </summary>
    private void RetireUnsynchronized(ArrayThreadCache cache)
    {
        for (int classIndex = 0; classIndex < _classLengths.Length; classIndex++)
        {
            ref ArrayClassStack stack = ref cache.StackOf(classIndex);
            _retiredHits[classIndex] += cache.HitsOf(classIndex);
            _retiredMisses[classIndex] += cache.Misses[classIndex];
            _retiredReturns[classIndex] += stack.Returns;
            int held = cache.HeldOf(classIndex);
            if (stack.Items.Length > 0 && held > 0)
            {
                MoveToDepot(stack.Items, ref stack.Count, classIndex, held);
            }
            else if (held != 0)
            {
                // Slots a trim abandoned while the thread raced it: settle what the racing operation did to them.
                Interlocked.Add(ref _evictedBytes, (long)held * _classLengths[classIndex]);
            }
        }
    }
}
