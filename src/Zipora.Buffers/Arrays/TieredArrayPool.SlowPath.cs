using System;
using System.Runtime.CompilerServices;
using System.Threading;

namespace Zipora.Buffers;

/// <summary>The array pool's misses: lengths outside the classes, the depots, finding or creating the thread's cache.</summary>
public sealed partial class TieredArrayPool
{
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
        byte[][] slots = SlotsOf(cache, classIndex);

        // The slots may hold arrays already: the fast path misses whenever another pool was used last on this thread.
        if (!stack.TryPop(slots, out byte[]? array))
        {
            if (slots.Length > 1)
            {
                // Empty (slot 0 too): refill half the stack at once, so the depot's lock is paid once per batch.
                int moved = _depots[classIndex].TakeInto(slots.AsSpan(1), ref stack.Count, Math.Max(1, (slots.Length - 1) / 2));
                Interlocked.Add(ref _depotBytes, -(long)moved * _classLengths[classIndex]);
                cache.NetTransfers[classIndex] += moved;
                _ = stack.TryPop(slots, out array);
            }
            else
            {
                // No stack behind slot 0, or no slots (a class the thread does not cache): the depot serves directly.
                array = TakeOneFromDepot(classIndex);
                if (array is not null)
                {
                    cache.NetTransfers[classIndex]++;
                }
            }
        }

        if (array is null)
        {
            // Counted once made: a rent that throws for want of memory hands out nothing and counts nothing.
            array = Allocate(_classLengths[classIndex]);
            cache.Misses[classIndex]++;
        }

        return array;
    }

    /// <summary>
    /// The cache this thread used last, for a return; <see langword="null"/> when the process is out of managed memory
    /// for it. A thread's first touch of the pool's thread-statics is the runtime's allocation of them, which throws
    /// then, and a return of a valid array must not (the runtime pool's never does): the slow path it leads to makes
    /// the cache or goes past it, without throwing.
    /// </summary>
    /// <remarks>
    /// A call of its own, not inlined: the same handler inside <see cref="Return"/> made each rent+write+return 12.4-12.9
    /// ns where one without any guard took 10.5-10.8; in a call it costs 0.3-1 ns of those 2 (section 36 of
    /// perf/RESULTS.md).
    /// </remarks>
    [MethodImpl(MethodImplOptions.NoInlining)]
    private static ArrayThreadCache? LastCacheOrNullOutOfMemory()
    {
        try
        {
            return t_lastCache;
        }
        catch (OutOfMemoryException)
        {
            return null;
        }
    }

    [MethodImpl(MethodImplOptions.NoInlining)]
    private void ReturnSlow(byte[] array, int classIndex)
    {
        ArrayThreadCache cache;
        byte[][] slots;
        try
        {
            // The thread's cache and the class's slots, made at the thread's first return of the class: out of managed
            // memory for them (or for the registry's thread-statics) the return goes past the cache, and throws nothing.
            cache = FindThreadCache() ?? CreateThreadCache();
            slots = SlotsOf(cache, classIndex);
        }
        catch (OutOfMemoryException)
        {
            ReturnPastTheCache(array, classIndex);
            return;
        }

        ref ArrayClassStack stack = ref cache.StackOf(classIndex);
        stack.Returns++;
        if (stack.TryPush(slots, array))
        {
            return;
        }

        if (slots.Length <= 1)
        {
            // No stack behind slot 0, or no slots at all: the array goes to the depot, or, where slot 0 is taken, the
            // older array there does, so the thread keeps its newest one as the runtime pool does.
            cache.NetTransfers[classIndex]--;
            if (slots != ArrayThreadCache.NoStack)
            {
                (slots[0], array) = (array, slots[0]);
            }

            PutInDepot(array, classIndex);
            return;
        }

        // Full: keep the warm half of the stack here and move the cold half to the depot for other threads. Slot 0 is
        // taken (a push would have filled it), so the stack holds one array less than the count.
        int stackCount = stack.Count - 1;
        int moved = Math.Max(1, stackCount / 2);
        MoveToDepot(slots.AsSpan(1), ref stackCount, classIndex, moved);
        stack.Count = stackCount + 1;
        cache.NetTransfers[classIndex] -= moved;
        _ = stack.TryPush(slots, array);
    }

    /// <summary>
    /// The slots of a class in this thread's cache, installed on first use and after a trim abandoned them;
    /// <see cref="ArrayThreadCache.NoStack"/> when the thread does not cache the class.
    /// </summary>
    private byte[][] SlotsOf(ArrayThreadCache cache, int classIndex)
    {
        ref ArrayClassStack stack = ref cache.StackOf(classIndex);
        byte[][] slots = Volatile.Read(ref stack.Items);
        if (slots != ArrayThreadCache.NoStack || _capacities[classIndex] == 0)
        {
            return slots;
        }

        // Made before anything is settled: out of managed memory this throws with the counts as they were.
        byte[][] fresh = new byte[_capacities[classIndex]][];

        // The count a trim saw went to the evicted bytes; whatever rents and returns racing it did to the abandoned
        // slots since is settled here. Both counts are cleared before the new slots are published, which the trim
        // reads first. The evicted bytes take the difference only once the new slots are published: until then the
        // statistics count it from the abandoned stack (see CountByClass), and never both. The slots read
        // ArrayThreadCache.Settling while the counts change, each write ordered after that mark: statistics read
        // meanwhile would otherwise pair the old count with the cleared trimmed count, and count every array the trim
        // evicted twice (see ArrayThreadCache.CountsOf).
        ref int trimmedCount = ref cache.TrimmedCount[classIndex];
        long racing = stack.Count - trimmedCount;
        Volatile.Write(ref stack.Items, ArrayThreadCache.Settling);
        Volatile.Write(ref cache.TrimCorrection[classIndex], cache.TrimCorrection[classIndex] + racing);
        Volatile.Write(ref stack.Count, 0);
        Volatile.Write(ref trimmedCount, 0);
        Volatile.Write(ref stack.Items, fresh);
        Interlocked.Add(ref _evictedBytes, racing * _classLengths[classIndex]);
        return fresh;
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

    /// <summary>
    /// A return that could not reach its thread's cache for want of managed memory (the thread's first touch of the
    /// pool's thread-statics, its cache, the class's slots): the array goes to the depot, or is dropped for the GC,
    /// counted as a return of a thread that left. Throws nothing.
    /// </summary>
    [MethodImpl(MethodImplOptions.NoInlining)]
    private void ReturnPastTheCache(byte[] array, int classIndex)
    {
        // Interlocked: the retire of an exited thread's cache adds to the same figure, under the registry's lock.
        Interlocked.Increment(ref _retiredReturns[classIndex]);
        PutInDepot(array, classIndex);
    }

    /// <summary>Puts an array in the depot, or drops it (counted evicted) when the depots are full or out of managed memory to grow. Throws nothing.</summary>
    private void PutInDepot(byte[] array, int classIndex)
    {
        if (TryReserveDepotBytes(array.Length))
        {
            try
            {
                _depots[classIndex].Put(array);
                return;
            }
            catch (OutOfMemoryException)
            {
                // The depot's array could not grow (it grows as the pool makes arrays): the array is dropped instead.
                Interlocked.Add(ref _depotBytes, -array.Length);
            }
        }

        Interlocked.Add(ref _evictedBytes, array.Length);
    }

    /// <summary>
    /// Moves the <paramref name="moved"/> oldest arrays of a stack to the depot, or drops them (counted evicted) when
    /// the depots are full or out of managed memory to grow. Throws nothing.
    /// </summary>
    private void MoveToDepot(Span<byte[]> stack, ref int count, int classIndex, int moved)
    {
        long bytes = (long)moved * _classLengths[classIndex];
        if (TryReserveDepotBytes(bytes))
        {
            try
            {
                _depots[classIndex].PutFrom(stack, ref count, moved);
                return;
            }
            catch (OutOfMemoryException)
            {
                // The depot's array could not grow, before anything moved: the arrays are dropped instead.
                Interlocked.Add(ref _depotBytes, -bytes);
            }
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
}
