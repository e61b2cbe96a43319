using System;
using System.Threading;

namespace Zipora.Buffers;

/// <summary>The array pool's counts: every thread's stacks summed per class, with those of exited threads.</summary>
public sealed partial class TieredArrayPool
{
    /// <summary>A snapshot of what the pool has done and holds.</summary>
    public TieredArrayPoolStatistics GetStatistics()
    {
        var byClass = new ClassCounts[_classLengths.Length];
        CountByClass(byClass, out int threads, out long evictedBytes);
        ClassTotals totals = ClassTotals.Of(byClass);

        // Any array longer than the maximum is accepted back, rented here or not, and a return read here may be one
        // whose rent was read before it happened: as for the classes (ClassCounts.CountTheRentsOfEveryReturn), every
        // return had its rent, so the rents are raised to the returns and no figure falls below zero. The returns are
        // read first, so a rent and return racing this read only make the rents larger. Exact when callers return only
        // what they rented and the pool is quiet.
        long unpooledReturns = Volatile.Read(ref _unpooledReturns);
        long unpooledBytesReturned = Volatile.Read(ref _unpooledBytesReturned);
        long unpooledRents = Math.Max(Volatile.Read(ref _unpooledRents), unpooledReturns);
        long unpooledBytes = Math.Max(Volatile.Read(ref _unpooledBytesRented), unpooledBytesReturned);
        return new TieredArrayPoolStatistics
        {
            Arrays = new TierStatistics
            {
                Name = "array",
                Rents = totals.Hits + totals.Misses + unpooledRents,
                Returns = totals.Returns + unpooledReturns,
                CacheHits = totals.Hits,
                CacheMisses = totals.Misses + unpooledRents,
                BytesInUse = totals.BytesInUse + unpooledBytes - unpooledBytesReturned,
                BytesRetained = totals.BytesCached,
                BytesRented = totals.BytesRented + unpooledBytes,
                BytesAllocated = totals.BytesAllocated + unpooledBytes,
                // A long array is dropped on return, as a class array past the depot's cap is: evicted.
                BytesEvicted = evictedBytes + unpooledBytesReturned,
            },
            UnpooledRents = unpooledRents,
            ThreadCaches = threads,
        };
    }

    /// <summary>
    /// Every thread's counters and cached arrays, summed per class into <paramref name="byClass"/> (every field
    /// written); <paramref name="threads"/> is the number of caches,
    /// <paramref name="evictedBytes"/> the bytes dropped, with those that operations racing a trim put into the slots it
    /// abandoned (or took out of them) and that their threads have not settled yet.
    /// </summary>
    private void CountByClass(ClassCounts[] byClass, out int threads, out long evictedBytes)
    {
        lock (_registry.Lock)
        {
            _registry.RetireExitedUnsynchronized();

            // Read before the stacks, under the lock: a trim adds what it abandons under this lock, and an owner adds
            // what it settles only after it installed fresh slots (see SlotsOf), so an abandoned stack read below has
            // not been settled into this figure, and the sum never counts its difference twice nor goes below zero.
            evictedBytes = Volatile.Read(ref _evictedBytes);
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
                    counts.Hits += cache.CountsOf(classIndex, out int cached, out int unsettled);
                    counts.Misses += Volatile.Read(ref cache.Misses[classIndex]);
                    counts.Returns += Volatile.Read(ref cache.StackOf(classIndex).Returns);
                    counts.Cached += cached;
                    evictedBytes += (long)unsettled * counts.Size;
                }

                counts.CountTheRentsOfEveryReturn();
            }

            threads = _registry.Caches.Length;
        }
    }
}
