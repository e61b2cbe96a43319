using System;
using System.Collections.Generic;
using System.Threading;

namespace Zipora.Buffers;

/// <summary>A cached slab tier's counts: every thread's stacks summed per class, with those of exited threads.</summary>
internal abstract partial class CachedSlabTier<TClasses>
{
    // Counters of threads that have exited, folded in when their caches are retired; and returns after disposal.
    private readonly long[] _retiredHits;
    private readonly long[] _retiredMisses;
    private readonly long[] _retiredReturns;
    private long _retiredRequestedBytes;

    private readonly HighWaterSampler _highWater;

    public override TierStatistics GetStatistics()
    {
        ClassCounts[] byClass = CountByClass();
        ClassTotals totals = ClassTotals.Of(byClass);

        long requested = Volatile.Read(ref _retiredRequestedBytes);
        lock (_registry.Lock)
        {
            foreach (ThreadCache cache in _registry.Caches)
            {
                for (int classIndex = 0; classIndex < _capacities.Length; classIndex++)
                {
                    requested += Volatile.Read(ref cache.StackOf(classIndex).RequestedBytes);
                }
            }
        }

        var rented = new long[byClass.Length];
        RentedBytesByClass(byClass, rented);
        return Snapshot(TClasses.Name, totals.Hits, totals.Misses, totals.Returns, totals.BytesInUse, totals.BytesRented, requested, _heap, rented);
    }

    public override (long Retained, long Activity) RetainedAndActivity()
    {
        // The trim tables, under the trim lock: a trim under memory pressure reads this first, at the GC heap limit too.
        lock (_trimLock)
        {
            ClassCounts[] byClass = CountIntoTrimTablesUnderTrimLock();
            long[] heldElsewhere = _trimTables.HeldElsewhere;
            long[] rented = _trimTables.RentedBytes;
            ClassTotals totals = ClassTotals.Of(byClass);

            // The caps rest while this figure stands still, so it must only grow: the blocks held elsewhere now (a
            // thread's parked block, counted as returned) fall by one when their thread takes one back, and a return
            // behind a trim then brought the figure back to what the cap's trim had read, which then rested with the
            // returned block cached (ActivityTheCapsRestOnTests). The parks so far, which only grow, count instead.
            long[] parks = _trimTables.ActivityElsewhere;
            Array.Clear(parks);
            CountActivityElsewhere(parks);
            long activity = totals.Hits + totals.Misses + totals.Returns;
            for (int classIndex = 0; classIndex < parks.Length; classIndex++)
            {
                activity += parks[classIndex] - heldElsewhere[classIndex];
            }

            return (RetainedBytes(totals.BytesInUse, _heap, rented), activity);
        }
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
                    Tier = TClasses.Name,
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
    /// Every thread's counters per class, the free blocks held elsewhere and the bytes rented from each class, into the
    /// trim tables (the caller holds the trim lock): allocates nothing.
    /// </summary>
    private ClassCounts[] CountIntoTrimTablesUnderTrimLock()
    {
        ClassCounts[] byClass = _trimTables.Counts;
        CountByClass(byClass, _trimTables.HeldElsewhere);
        RentedBytesByClass(byClass, _trimTables.RentedBytes);
        return byClass;
    }

    /// <summary>The bytes rented so far from each class, into <paramref name="rented"/>.</summary>
    private static void RentedBytesByClass(ClassCounts[] byClass, long[] rented)
    {
        for (int classIndex = 0; classIndex < byClass.Length; classIndex++)
        {
            rented[classIndex] = (byClass[classIndex].Hits + byClass[classIndex].Misses) * byClass[classIndex].Size;
        }
    }

    /// <summary>
    /// Counts into <paramref name="heldElsewhere"/> the free blocks of each class kept for the tier's users outside its
    /// caches (see <see cref="ReleaseHeldElsewhere"/>), and then, under the lock those blocks are given back to the tier
    /// under, everything else with <see cref="CountCaches"/>; the tier keeps none there unless it says otherwise.
    /// </summary>
    protected virtual void CountWithHeldElsewhere(ClassCounts[] byClass, long[] heldElsewhere) => CountCaches(byClass, heldElsewhere);

    /// <summary>
    /// Adds into <paramref name="byClass"/> the uses of the tier's blocks per class made outside its rents and returns (a
    /// block parked for its thread), for the idle release's judgement only. A count that only grows (an exited thread's
    /// count is kept): the judgement takes an equal figure for no activity.
    /// </summary>
    protected virtual void CountActivityElsewhere(long[] byClass)
    {
    }

    /// <summary>Every thread's counters and cached blocks, summed per class, in tables made for the caller.</summary>
    private ClassCounts[] CountByClass()
    {
        var byClass = new ClassCounts[_capacities.Length];
        CountByClass(byClass, new long[byClass.Length]);
        return byClass;
    }

    /// <summary>
    /// Every thread's counters and cached blocks, summed per class into <paramref name="byClass"/> (every field written);
    /// <paramref name="heldElsewhere"/> is the caller's room for the blocks kept outside the caches.
    /// </summary>
    private void CountByClass(ClassCounts[] byClass, long[] heldElsewhere)
    {
        Array.Clear(heldElsewhere);
        CountWithHeldElsewhere(byClass, heldElsewhere);
    }

    /// <summary>
    /// Every thread's counters and cached blocks, summed per class into <paramref name="byClass"/> (every field written),
    /// with the free blocks <paramref name="heldElsewhere"/> counted as returned and cached.
    /// </summary>
    protected void CountCaches(ClassCounts[] byClass, long[] heldElsewhere)
    {
        // No other lock is taken under the registry's (see ReleaseHeldElsewhere): the blocks held elsewhere are counted
        // before it, under their own lock, which is held until this ends.
        lock (_registry.Lock)
        {
            _registry.RetireExitedUnsynchronized();
            for (int classIndex = 0; classIndex < byClass.Length; classIndex++)
            {
                ref ClassCounts counts = ref byClass[classIndex];
                counts.Size = TClasses.ClassSize(classIndex);
                counts.Hits = Volatile.Read(ref _retiredHits[classIndex]);
                counts.Misses = Volatile.Read(ref _retiredMisses[classIndex]);
                counts.Returns = Volatile.Read(ref _retiredReturns[classIndex]);
                counts.Cached = _depots[classIndex].Count;
                foreach (ThreadCache cache in _registry.Caches)
                {
                    // Each field read once: the hits are derived from the same count the cached figure uses.
                    ref ClassStack stack = ref cache.StackOf(classIndex);
                    long count = Volatile.Read(ref stack.Count);
                    long returns = Volatile.Read(ref stack.Returns);
                    counts.Hits += returns + Volatile.Read(ref stack.NetTransfers) - Volatile.Read(ref stack.Drained) - count;
                    counts.Misses += Volatile.Read(ref stack.Misses);
                    counts.Returns += returns;
                    counts.Cached += count;
                }

                // A free block kept outside the caches is the tier's as much as a cached one: returned, and cached.
                long kept = heldElsewhere[classIndex];
                counts.Returns += kept;
                counts.Cached += kept;
                counts.CountTheRentsOfEveryReturn();
            }
        }
    }
}
