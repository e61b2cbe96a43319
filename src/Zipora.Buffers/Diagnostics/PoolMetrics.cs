using System;
using System.Collections.Generic;
using System.Diagnostics.Metrics;

namespace Zipora.Buffers;

/// <summary>
/// The <c>Zipora.Buffers</c> meter, shaped like Kestrel's <c>Microsoft.AspNetCore.MemoryPool</c> meter so its
/// dashboards carry over. Every instrument is observable: nothing is recorded, and the rent path does no extra work,
/// until a listener collects; then each live pool reports its counters, tagged with the tier and the owner.
/// </summary>
internal static class PoolMetrics
{
    public const string MeterName = "Zipora.Buffers";
    public const string TierTag = "zipora.buffers.tier";
    public const string OwnerTag = "zipora.buffers.owner";
    public const string ClassSizeTag = "zipora.buffers.class_size";

    // The pool's name on the factory owners' rents, whose owner tag is the factory owner (such as kestrel).
    public const string PoolTag = "zipora.buffers.pool";

    // The tier tag of the segmented writers' and streams' instruments: they span the tiers their segments come from.
    public const string SegmentedTier = "segmented";

    // A monitor, not a System.Threading.Lock: a contended Lock allocates its wait event on the managed heap, and a pool's
    // dispose takes it, where running out of managed memory must not stop it (a monitor's contention allocates nothing).
    private static readonly object s_lock = new();
    private static readonly List<WeakReference<TieredMemoryPool>> s_pools = [];
    private static readonly List<WeakReference<TieredArrayPool>> s_arrayPools = [];
    private static readonly Meter s_meter = CreateMeter();

    // The lists are pruned of collected and disposed pools when they reach these lengths, which then double, so a
    // process that creates and drops pools without ever collecting metrics keeps them as short as its live pools.
    private static int s_poolsPruneAt = MinimumPruneLength;
    private static int s_arrayPoolsPruneAt = MinimumPruneLength;
    private const int MinimumPruneLength = 64;

    /// <summary>The meter, created with the first pool.</summary>
    public static Meter Meter => s_meter;

    /// <summary>Makes the pool visible to the meter for as long as it lives and is not disposed.</summary>
    public static void Register(TieredMemoryPool pool)
    {
        lock (s_lock)
        {
            s_pools.Add(new WeakReference<TieredMemoryPool>(pool));
            PruneWhenLongUnsynchronized(s_pools, ref s_poolsPruneAt, static pool => !pool.IsDisposed);
        }
    }

    /// <summary>Forgets a disposed pool, or one whose constructor failed, at once.</summary>
    public static void Forget(TieredMemoryPool pool) => Forget(s_pools, pool);

    /// <summary>Forgets an array pool whose constructor failed, at once.</summary>
    public static void Forget(TieredArrayPool pool) => Forget(s_arrayPools, pool);

    private static void Forget<TPool>(List<WeakReference<TPool>> pools, TPool pool)
        where TPool : class
    {
        lock (s_lock)
        {
            // No predicate: a lambda that captures the pool is allocated, and a pool's dispose may run at the GC heap limit.
            for (int i = pools.Count - 1; i >= 0; i--)
            {
                if (!pools[i].TryGetTarget(out TPool? target) || ReferenceEquals(target, pool))
                {
                    pools.RemoveAt(i);
                }
            }
        }
    }

    /// <summary>Pools the meter still tracks (tests check that dropped and disposed pools are forgotten).</summary>
    internal static int TrackedPools
    {
        get
        {
            lock (s_lock)
            {
                return s_pools.Count + s_arrayPools.Count;
            }
        }
    }

    /// <summary>Makes the array pool visible to the meter, as tier <c>array</c>, for as long as it lives.</summary>
    public static void Register(TieredArrayPool pool)
    {
        lock (s_lock)
        {
            s_arrayPools.Add(new WeakReference<TieredArrayPool>(pool));
            PruneWhenLongUnsynchronized(s_arrayPools, ref s_arrayPoolsPruneAt, static _ => true);
        }
    }

    private static void PruneWhenLongUnsynchronized<TPool>(List<WeakReference<TPool>> pools, ref int pruneAt, Func<TPool, bool> inUse)
        where TPool : class
    {
        if (pools.Count < pruneAt)
        {
            return;
        }

        pools.RemoveAll(entry => !entry.TryGetTarget(out TPool? pool) || !inUse(pool));
        pruneAt = Math.Max(MinimumPruneLength, pools.Count * 2);
    }

    private static Meter CreateMeter()
    {
        var meter = new Meter(MeterName);
        meter.CreateObservableCounter("zipora.buffers.rented", () => Summed(PerTier(static tier => tier.BytesRented)), "By", "Bytes handed out, summed over every rent.");
        meter.CreateObservableCounter("zipora.buffers.allocated", () => Summed(PerTier(static tier => tier.BytesAllocated)), "By", "Bytes mapped from the operating system.");
        meter.CreateObservableUpDownCounter("zipora.buffers.pooled", () => Summed(PerTier(static tier => tier.BytesRetained)), "By", "Bytes held for reuse and not handed out.");
        meter.CreateObservableUpDownCounter("zipora.buffers.fragmented", () => Summed(PerTier(static tier => tier.BytesFragmented)), "By", "Free bytes on pages beside buffers still handed out: committed, and beyond a trim's reach.");
        meter.CreateObservableUpDownCounter("zipora.buffers.uncarved", () => Summed(PerTier(static tier => tier.BytesUncarved)), "By", "Slab space mapped but not yet cut into buffers: address space, not resident.");
        meter.CreateObservableCounter("zipora.buffers.evicted", () => Summed(PerTier(static tier => tier.BytesEvicted)), "By", "Bytes given back to the operating system.");
        meter.CreateObservableUpDownCounter("zipora.buffers.in_use", () => Summed(PerTier(static tier => tier.BytesInUse)), "By", "Bytes of buffers currently handed out.");
        meter.CreateObservableCounter("zipora.buffers.cache.hits", () => Summed(PerTier(static tier => tier.CacheHits)), "{rent}", "Rents served from memory the pool already held.");
        meter.CreateObservableCounter("zipora.buffers.cache.misses", () => Summed(PerTier(static tier => tier.CacheMisses)), "{rent}", "Rents that needed fresh memory.");
        meter.CreateObservableUpDownCounter("zipora.buffers.hugepage.bytes", () => Summed(PerPool(static statistics => statistics.HugepageBytes, "huge")), "By", "Bytes mapped with hugepages.");
        meter.CreateObservableCounter("zipora.buffers.leaks", () => Summed(PerPool(static statistics => statistics.LeaksReclaimed, "all")), "{buffer}", "Buffers garbage collected without being disposed, and reclaimed.");
        meter.CreateObservableCounter("zipora.buffers.owner.rents", () => Summed(ByOwner()), "{rent}", "Rents made through pools created for an owner by the memory pool factory.");
        meter.CreateObservableGauge("zipora.buffers.class.high_water_mark", () => Largest(ByClass(static row => row.HighWaterMark)), "{buffer}", "Most buffers of a size class in use at once over the recent window.");
        meter.CreateObservableCounter("zipora.buffers.class.rents", () => Summed(ByClass(static row => row.Rents)), "{rent}", "Rents of a size class: its rate is the class's rent rate.");
        meter.CreateObservableUpDownCounter("zipora.buffers.segmented.live", () => Summed(PerPool(static statistics => statistics.Segmented.LiveBuffers, SegmentedTier)), "{buffer}", "Segmented writers and streams created and not yet disposed.");
        meter.CreateObservableUpDownCounter("zipora.buffers.segmented.held", () => Summed(PerPool(static statistics => statistics.Segmented.BytesHeld, SegmentedTier)), "By", "Bytes of the segments live segmented writers and streams hold.");
        meter.CreateObservableCounter("zipora.buffers.segmented.messages", () => Summed(PerPool(static statistics => statistics.Segmented.Messages, SegmentedTier)), "{message}", "Messages ended by a reset or a dispose of a segmented writer or stream.");
        meter.CreateObservableCounter("zipora.buffers.segmented.segments", () => Summed(PerPool(static statistics => statistics.Segmented.MessageSegments, SegmentedTier)), "{segment}", "Segments over all ended messages: its rate over the messages' rate is the segments per message.");
        meter.CreateObservableGauge("zipora.buffers.segmented.largest", () => Largest(PerPool(static statistics => statistics.Segmented.LargestMessage, SegmentedTier)), "By", "The most bytes one segmented message held.");
        meter.CreateObservableCounter("zipora.buffers.segmented.leaks", () => Summed(PerPool(static statistics => statistics.Segmented.Leaked, SegmentedTier)), "{buffer}", "Segmented writers and streams garbage collected without dispose.");
        return meter;
    }

    private static IEnumerable<Measurement<long>> PerTier(Func<TierStatistics, long> value)
    {
        foreach ((TieredMemoryPool pool, TieredMemoryPoolStatistics statistics) in Snapshots())
        {
            foreach (TierStatistics tier in (TierStatistics[])[statistics.Small, statistics.Medium, statistics.Large, statistics.Huge])
            {
                yield return new Measurement<long>(value(tier), new(TierTag, tier.Name), new(OwnerTag, pool.Name));
            }
        }

        foreach (TieredArrayPool pool in Live(s_arrayPools, static _ => true))
        {
            yield return new Measurement<long>(value(pool.GetStatistics().Arrays), new(TierTag, "array"), new(OwnerTag, pool.Name));
        }
    }

    private static IEnumerable<Measurement<long>> PerPool(Func<TieredMemoryPoolStatistics, long> value, string tier)
    {
        foreach ((TieredMemoryPool pool, TieredMemoryPoolStatistics statistics) in Snapshots())
        {
            yield return new Measurement<long>(value(statistics), new(TierTag, tier), new(OwnerTag, pool.Name));
        }
    }

    private static IEnumerable<Measurement<long>> ByOwner()
    {
        foreach ((TieredMemoryPool pool, TieredMemoryPoolStatistics statistics) in Snapshots())
        {
            foreach (KeyValuePair<string, long> owner in statistics.RentsByOwner)
            {
                yield return new Measurement<long>(owner.Value, new(TierTag, "all"), new(OwnerTag, owner.Key), new(PoolTag, pool.Name));
            }
        }
    }

    /// <summary>The measurements of pools of one name summed into one per set of tags (see <see cref="Merged"/>).</summary>
    private static List<Measurement<long>> Summed(IEnumerable<Measurement<long>> measurements) => Merged(measurements, largest: false);

    /// <summary>The largest of the measurements of pools of one name, per set of tags: for gauges of a peak (see <see cref="Merged"/>).</summary>
    private static List<Measurement<long>> Largest(IEnumerable<Measurement<long>> measurements) => Merged(measurements, largest: true);

    /// <summary>
    /// One measurement per set of tags: pools of one name would otherwise report two points of one series in one
    /// observation, of which an exporter keeps one. Their figures are summed, or for a gauge of a peak
    /// (<paramref name="largest"/>) the largest is kept.
    /// </summary>
    private static List<Measurement<long>> Merged(IEnumerable<Measurement<long>> measurements, bool largest)
    {
        var merged = new List<Measurement<long>>();
        var indexByTags = new Dictionary<string, int>(StringComparer.Ordinal);
        foreach (Measurement<long> measurement in measurements)
        {
            string tags = string.Join('\n', measurement.Tags.ToArray());
            if (indexByTags.TryGetValue(tags, out int index))
            {
                long value = largest ? Math.Max(merged[index].Value, measurement.Value) : merged[index].Value + measurement.Value;
                merged[index] = new Measurement<long>(value, merged[index].Tags);
            }
            else
            {
                indexByTags.Add(tags, merged.Count);
                merged.Add(measurement);
            }
        }

        return merged;
    }

    private static IEnumerable<Measurement<long>> ByClass(Func<SizeClassStatistics, long> value)
    {
        foreach ((TieredMemoryPool pool, TieredMemoryPoolStatistics statistics) in Snapshots())
        {
            foreach (SizeClassStatistics row in statistics.SizeHistogram)
            {
                yield return new Measurement<long>(value(row), new(TierTag, row.Tier), new(OwnerTag, pool.Name), new(ClassSizeTag, row.ClassSize));
            }
        }
    }

    /// <summary>Every live pool not disposed, of both kinds (the memory-pressure watcher trims them all).</summary>
    internal static List<IReclaimablePool> LivePools()
    {
        List<IReclaimablePool> live = [.. Live(s_pools, static pool => !pool.IsDisposed)];
        live.AddRange(Live(s_arrayPools, static _ => true));
        return live;
    }

    /// <summary>Statistics of every live memory pool; forgets pools that were collected or disposed.</summary>
    private static List<(TieredMemoryPool Pool, TieredMemoryPoolStatistics Statistics)> Snapshots() =>
        Live(s_pools, static pool => !pool.IsDisposed).ConvertAll(static pool => (pool, pool.GetStatistics()));

    /// <summary>The pools of <paramref name="pools"/> still alive and in use; forgets the others.</summary>
    private static List<TPool> Live<TPool>(List<WeakReference<TPool>> pools, Func<TPool, bool> inUse)
        where TPool : class
    {
        var live = new List<TPool>();
        lock (s_lock)
        {
            for (int i = pools.Count - 1; i >= 0; i--)
            {
                if (pools[i].TryGetTarget(out TPool? pool) && inUse(pool))
                {
                    live.Add(pool);
                }
                else
                {
                    pools.RemoveAt(i);
                }
            }
        }

        return live;
    }
}
