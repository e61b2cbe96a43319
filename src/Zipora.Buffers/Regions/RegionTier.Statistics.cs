using System;
using System.Collections.Generic;
using System.Threading;

namespace Zipora.Buffers;

/// <summary>The region tier's counts: the shared ones, kept exactly under the gate, and the slots', folded in when read.</summary>
internal abstract partial class RegionTier
{
    // Shared counts, under the gate. A region parked in a slot counts as in use here; the statistics subtract it.
    private long _hits;
    private long _misses;
    private long _returns;
    private long _bytesInUse;
    private long _bytesRented;
    private long _bytesRequested;
    private long _bytesAllocated;
    private long _bytesEvicted;

    // Regions taken out of the cache or out of use to be unmapped, their unmap or page drop not yet done (under the
    // gate): still mapped and committed, so retained until the unmap counts them evicted under the gate in the same
    // step. A statistics read between the two showed them as neither (TrimStatisticsRaceTests).
    private long _bytesLeaving;

    // Counts memory gone from the process, called by the deferred unmaps (made once: a release allocates nothing).
    private readonly Action<long> _countEvicted;

    // Demand, under the gate: buffers in use now and the most in use at once in this window and the last (a window
    // is one idle delay), per class. They feed the size histogram and, when adaptive, the cache's count limit, which
    // follows the sum of the classes' recent high-water marks instead of a fixed number: regions of one class cannot
    // serve another, so a limit at the tier's own high-water mark (below that sum when the classes peak at different
    // moments) would evict regions one class is about to need again, and map them again, all through steady traffic.
    private readonly bool _adaptive;
    private readonly int _configuredMaxCount;
    private readonly long[] _rentsByClass;
    private readonly int[] _inUseByClass;
    private readonly int[] _peakByClass;
    private readonly int[] _lastPeakByClass;
    private int _classPeakSum;
    private long _windowStart;

    // The counts of the slots of exited threads, under the registry's lock.
    private readonly long[] _retiredHitsByClass;
    private long _retiredParks;
    private long _retiredRequestedBytes;

    // The slots' sums for RetainedAndActivity, made with the tier and filled under the registry's lock: the caps' checks
    // run at the GC heap limit too, where GetStatistics' own table could not be made.
    private readonly SlotCounts _slotsForCaps;

    public override TierStatistics GetStatistics()
    {
        // The shared counts are read under the gate inside the registry's lock, where the slots are summed: a trim empties
        // a slot and takes its region out of use under that lock, so the region is never seen parked and cached at once,
        // nor out of its slot and still in use. Nothing allocates while the gate is held (see MakeRoomForTheCache).
        var slots = new SlotCounts(_rentsByClass.Length);
        long hits, misses, returns, bytesInUse, cachedBytes, bytesRented, bytesRequested, bytesAllocated, bytesEvicted;
        lock (_registry.Lock)
        {
            SumSlotsUnsynchronized(slots);
            _gate.Enter();
            hits = _hits;
            misses = _misses;
            returns = _returns;
            bytesInUse = _bytesInUse;
            cachedBytes = _cache.Bytes + _bytesLeaving;
            bytesRented = _bytesRented;
            bytesRequested = _bytesRequested;
            bytesAllocated = _bytesAllocated;
            bytesEvicted = Volatile.Read(ref _bytesEvicted);
            _gate.Exit();
        }

        long slotHits = 0;
        long slotBytesRented = 0;
        for (int classIndex = 0; classIndex < slots.HitsByClass.Length; classIndex++)
        {
            slotHits += slots.HitsByClass[classIndex];
            slotBytesRented += slots.HitsByClass[classIndex] * BufferLength(classIndex);
        }

        // A slot's owner parks and takes its region without either lock: a rent a slot served after its read, whose
        // buffer came back to the shared cache before the gate, shows as a return without its rent. Every return had its
        // rent, so the hits are raised to the rents the returns imply (as the slab tiers do); when the pool is quiet this
        // changes nothing.
        long allReturns = returns + slots.Parks;
        long allHits = ClassCounts.HitsCoveringEveryReturn(hits + slotHits, misses, allReturns);
        var statistics = new TierStatistics
        {
            Name = _name,
            Rents = allHits + misses,
            Returns = allReturns,
            CacheHits = allHits,
            CacheMisses = misses,
            // A slot's owner may have parked its region after the slots were read and returned it meanwhile: the
            // difference would go below zero for a moment.
            BytesInUse = Math.Max(0, bytesInUse - slots.ParkedBufferBytes),
            BytesRetained = cachedBytes + slots.ParkedMappedBytes,
            BytesRented = bytesRented + slotBytesRented,
            BytesRequested = bytesRequested + slots.RequestedBytes,
            BytesAllocated = bytesAllocated,
            BytesEvicted = bytesEvicted,
        };
        return statistics;
    }

    public override (long Retained, long Activity) RetainedAndActivity()
    {
        // GetStatistics' figures, from the slots summed into the tier's own table (under the registry's lock, so one
        // reader at a time): nothing is allocated.
        long slotHits = 0;
        long parks;
        long parkedMappedBytes;
        lock (_registry.Lock)
        {
            SumSlotsUnsynchronized(_slotsForCaps);
            foreach (long hits in _slotsForCaps.HitsByClass)
            {
                slotHits += hits;
            }

            parks = _slotsForCaps.Parks;
            parkedMappedBytes = _slotsForCaps.ParkedMappedBytes;
        }

        _gate.Enter();
        long sharedHits = _hits;
        long misses = _misses;
        long returns = _returns;
        long cachedBytes = _cache.Bytes;
        _gate.Exit();

        long allReturns = returns + parks;
        long allHits = ClassCounts.HitsCoveringEveryReturn(sharedHits + slotHits, misses, allReturns);
        return (cachedBytes + parkedMappedBytes, allHits + misses + allReturns);
    }

    /// <summary>Adds a histogram row for every class rented so far.</summary>
    public void AddClassStatistics(List<SizeClassStatistics> into)
    {
        const int Columns = 4;
        var slots = new SlotCounts(_rentsByClass.Length);
        long[] snapshot = new long[_rentsByClass.Length * Columns];

        // Under the registry's lock, as GetStatistics reads: a region a trim takes out of its slot is never counted twice or not at all.
        lock (_registry.Lock)
        {
            SumSlotsUnsynchronized(slots);
            _gate.Enter();
            for (int classIndex = 0; classIndex < _rentsByClass.Length; classIndex++)
            {
                int at = classIndex * Columns;
                snapshot[at] = _rentsByClass[classIndex] + slots.HitsByClass[classIndex];
                snapshot[at + 1] = Math.Max(0, _inUseByClass[classIndex] - slots.ParkedByClass[classIndex]);
                snapshot[at + 2] = Math.Max(_peakByClass[classIndex], _lastPeakByClass[classIndex]);
                snapshot[at + 3] = _cache.CountOf(classIndex) + slots.ParkedByClass[classIndex];
            }

            _gate.Exit();
        }
        for (int classIndex = 0; classIndex < _rentsByClass.Length; classIndex++)
        {
            int at = classIndex * Columns;
            if (snapshot[at] > 0)
            {
                into.Add(new SizeClassStatistics
                {
                    Tier = _name,
                    ClassSize = BufferLength(classIndex),
                    Rents = snapshot[at],
                    BuffersInUse = snapshot[at + 1],
                    HighWaterMark = snapshot[at + 2],
                    Cached = snapshot[at + 3],
                });
            }
        }
    }

    /// <summary>Sums the slots' counts, the exited threads' with them, into <paramref name="slots"/> (every figure written); the caller holds the registry's lock.</summary>
    private void SumSlotsUnsynchronized(SlotCounts slots)
    {
        _retiredHitsByClass.AsSpan().CopyTo(slots.HitsByClass);
        Array.Clear(slots.ParkedByClass);
        slots.Parks = _retiredParks;
        slots.RequestedBytes = _retiredRequestedBytes;
        slots.ParkedBufferBytes = 0;
        slots.ParkedMappedBytes = 0;
        foreach (RegionThreadCache cache in _registry.Caches)
        {
            slots.RequestedBytes += cache.RequestedBytes;
            for (int classIndex = 0; classIndex < slots.HitsByClass.Length; classIndex++)
            {
                slots.HitsByClass[classIndex] += cache.HitsOf(classIndex);
                slots.Parks += cache.ParksByClass[classIndex];
            }

            if (cache.ParkedRegion is { } parked)
            {
                slots.ParkedByClass[parked.ClassIndex]++;
                slots.ParkedBufferBytes += parked.Buffer.Length;
                slots.ParkedMappedBytes += (long)parked.MappedLength;
            }
        }
    }
}
