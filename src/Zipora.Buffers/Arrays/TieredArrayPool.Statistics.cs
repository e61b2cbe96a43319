using System;
using System.Threading;

namespace Zipora.Buffers;

/// <summary>The array pool's counts: every thread's stacks summed per class, with those of exited threads.</summary>
public sealed partial class TieredArrayPool
{
    /// <summary>A snapshot of what the pool has done and holds.</summary>
    public TieredArrayPoolStatistics GetStatistics()
    {
        ClassTotals totals = ClassTotals.Of(CountByClass(out int threads));

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
                BytesEvicted = Volatile.Read(ref _evictedBytes),
            },
            UnpooledRents = unpooledRents,
            ThreadCaches = threads,
        };
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

                counts.CountTheRentsOfEveryReturn();
            }

            threads = _registry.Caches.Length;
        }

        return byClass;
    }
}
