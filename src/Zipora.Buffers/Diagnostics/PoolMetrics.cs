using System;
using System.Collections.Generic;
using System.Diagnostics.Metrics;
using System.Globalization;
using System.Runtime.CompilerServices;

namespace Zipora.Buffers;

/// <summary>
/// The <c>Zipora.Buffers</c> meter, shaped like Kestrel's <c>Microsoft.AspNetCore.MemoryPool</c> meter so its
/// dashboards carry over. Every instrument is observable: nothing is recorded, and the rent path does no extra work,
/// until a listener collects; then each live pool reports its counters, tagged with the tier and the owner: the pool's
/// name, numbered (<c>name#2</c>, …) when another live pool of its kind already reports under that name, so that every
/// series is one pool's and no two pools' points of one series meet in one observation (an exporter keeps one of them,
/// and a series summed over pools would fall when one of them went, which an exporter reads as a reset).
/// </summary>
internal static class PoolMetrics
{
    public const string MeterName = "Zipora.Buffers";
    public const string TierTag = "zipora.buffers.tier";
    public const string OwnerTag = "zipora.buffers.owner";
    public const string ClassSizeTag = "zipora.buffers.class_size";

    // The pool's owner tag on the factory owners' rents, whose owner tag is the factory owner (such as kestrel).
    public const string PoolTag = "zipora.buffers.pool";

    // The tier tag of the segmented writers' and streams' instruments: they span the tiers their segments come from.
    public const string SegmentedTier = "segmented";

    // A monitor, not a System.Threading.Lock: a contended Lock allocates its wait event on the managed heap, and a pool's
    // dispose takes it, where running out of managed memory must not stop it (a monitor's contention allocates nothing).
    private static readonly object s_lock = new();
    private static readonly List<(WeakReference<TieredMemoryPool> Pool, string Owner)> s_pools = [];
    private static readonly List<(WeakReference<TieredArrayPool> Pool, string Owner)> s_arrayPools = [];
    private static readonly Meter s_meter = CreateMeter();

    // Each pool's counter floors, made at its first collection and gone with the pool (see CounterFloors).
    private static readonly ConditionalWeakTable<object, CounterFloors> s_floors = [];

    // The lists are pruned of collected and disposed pools when they reach these lengths, which then double, so a
    // process that creates and drops pools without ever collecting metrics keeps them as short as its live pools.
    private static int s_poolsPruneAt = MinimumPruneLength;
    private static int s_arrayPoolsPruneAt = MinimumPruneLength;
    private const int MinimumPruneLength = 64;

    /// <summary>The meter, created with the first pool.</summary>
    public static Meter Meter => s_meter;

    /// <summary>
    /// Disposes the meter for the unload of the library's context: the runtime keeps every meter in a list of its own
    /// until it is disposed, and the instruments' callbacks hold the context (see <see cref="ContextUnload"/>).
    /// </summary>
    public static void DisposeMeter() => s_meter.Dispose();

    /// <summary>
    /// Makes the pool visible to the meter for as long as it lives and is not disposed; returns its owner tag, which
    /// becomes its <see cref="TieredMemoryPool.Name"/> (documented as that tag, numbered or not).
    /// </summary>
    public static string Register(TieredMemoryPool pool)
    {
        lock (s_lock)
        {
            PruneWhenLongUnsynchronized(s_pools, ref s_poolsPruneAt, static pool => !pool.IsDisposed);
            string owner = UnusedOwnerUnsynchronized(s_pools, pool.Name);
            s_pools.Add((new WeakReference<TieredMemoryPool>(pool), owner));
            return owner;
        }
    }

    /// <summary>Forgets a disposed pool, or one whose constructor failed, at once.</summary>
    public static void Forget(TieredMemoryPool pool) => Forget(s_pools, pool);

    /// <summary>Forgets an array pool whose constructor failed, at once.</summary>
    public static void Forget(TieredArrayPool pool) => Forget(s_arrayPools, pool);

    private static void Forget<TPool>(List<(WeakReference<TPool> Pool, string Owner)> pools, TPool pool)
        where TPool : class
    {
        lock (s_lock)
        {
            // No predicate: a lambda that captures the pool is allocated, and a pool's dispose may run at the GC heap limit.
            for (int i = pools.Count - 1; i >= 0; i--)
            {
                if (!pools[i].Pool.TryGetTarget(out TPool? target) || ReferenceEquals(target, pool))
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

    /// <summary>Makes the array pool visible to the meter, as tier <c>array</c>, for as long as it lives; returns its owner tag, which becomes its <see cref="TieredArrayPool.Name"/>.</summary>
    public static string Register(TieredArrayPool pool)
    {
        lock (s_lock)
        {
            PruneWhenLongUnsynchronized(s_arrayPools, ref s_arrayPoolsPruneAt, static _ => true);
            string owner = UnusedOwnerUnsynchronized(s_arrayPools, pool.Name);
            s_arrayPools.Add((new WeakReference<TieredArrayPool>(pool), owner));
            return owner;
        }
    }

    private static void PruneWhenLongUnsynchronized<TPool>(List<(WeakReference<TPool> Pool, string Owner)> pools, ref int pruneAt, Func<TPool, bool> inUse)
        where TPool : class
    {
        if (pools.Count < pruneAt)
        {
            return;
        }

        pools.RemoveAll(entry => !entry.Pool.TryGetTarget(out TPool? pool) || !inUse(pool));
        pruneAt = Math.Max(MinimumPruneLength, pools.Count * 2);
    }

    /// <summary>
    /// <paramref name="name"/>, or the lowest <c>name#n</c> from 2 up that no pool of <paramref name="pools"/> still
    /// alive reports under: a pool made while another of its name lives gets series of its own.
    /// </summary>
    private static string UnusedOwnerUnsynchronized<TPool>(List<(WeakReference<TPool> Pool, string Owner)> pools, string name)
        where TPool : class
    {
        // The numbers taken, 1 standing for the name itself: one pass, and one string made, however many share the name.
        HashSet<int>? taken = null;
        foreach ((WeakReference<TPool> pool, string owner) in pools)
        {
            if (NumberOf(owner, name) is int number && pool.TryGetTarget(out _))
            {
                (taken ??= []).Add(number);
            }
        }

        if (taken is null || !taken.Contains(1))
        {
            return name;
        }

        int free = 2;
        while (taken.Contains(free))
        {
            free++;
        }

        return string.Create(CultureInfo.InvariantCulture, $"{name}#{free}");
    }

    /// <summary>1 for <paramref name="name"/> itself, <c>n</c> for <c>name#n</c>, otherwise none.</summary>
    private static int? NumberOf(string owner, string name)
    {
        if (!owner.StartsWith(name, StringComparison.Ordinal))
        {
            return null;
        }

        if (owner.Length == name.Length)
        {
            return 1;
        }

        ReadOnlySpan<char> suffix = owner.AsSpan(name.Length);
        return suffix.Length > 1 && suffix[0] == '#' && int.TryParse(suffix[1..], NumberStyles.None, CultureInfo.InvariantCulture, out int number) && number >= 2
            ? number
            : null;
    }

    private static Meter CreateMeter()
    {
        var meter = new Meter(MeterName);
        AddCounter(meter, "zipora.buffers.rented", static name => PerTier(name, static tier => tier.BytesRented), "By", "Bytes handed out, summed over every rent.");
        AddCounter(meter, "zipora.buffers.allocated", static name => PerTier(name, static tier => tier.BytesAllocated), "By", "Bytes mapped from the operating system.");
        meter.CreateObservableUpDownCounter("zipora.buffers.pooled", () => PerTier(null, static tier => tier.BytesRetained), "By", "Bytes held for reuse and not handed out.");
        meter.CreateObservableUpDownCounter("zipora.buffers.fragmented", () => PerTier(null, static tier => tier.BytesFragmented), "By", "Free bytes on pages beside buffers still handed out: committed, and beyond a trim's reach.");
        meter.CreateObservableUpDownCounter("zipora.buffers.uncarved", () => PerTier(null, static tier => tier.BytesUncarved), "By", "Slab space mapped but not yet cut into buffers: address space, not resident.");
        AddCounter(meter, "zipora.buffers.evicted", static name => PerTier(name, static tier => tier.BytesEvicted), "By", "Bytes given back to the operating system.");
        meter.CreateObservableUpDownCounter("zipora.buffers.in_use", () => PerTier(null, static tier => tier.BytesInUse), "By", "Bytes of buffers currently handed out.");
        AddCounter(meter, "zipora.buffers.cache.hits", static name => PerTier(name, static tier => tier.CacheHits), "{rent}", "Rents served from memory the pool already held.");
        AddCounter(meter, "zipora.buffers.cache.misses", static name => PerTier(name, static tier => tier.CacheMisses), "{rent}", "Rents that needed fresh memory.");
        meter.CreateObservableUpDownCounter("zipora.buffers.hugepage.bytes", () => PerPool(null, static statistics => statistics.HugepageBytes, "huge"), "By", "Bytes mapped with hugepages.");
        AddCounter(meter, "zipora.buffers.leaks", static name => PerPool(name, static statistics => statistics.LeaksReclaimed, "all"), "{buffer}", "Buffers garbage collected without being disposed, and reclaimed.");
        AddCounter(meter, "zipora.buffers.rents.refused", static name => PerPool(name, static statistics => statistics.RentsRefused, "all"), "{rent}", "Rents refused (InsufficientMemoryException): at MaxBytesInUse, or by the OS after the pool gave back its cached memory.");
        AddCounter(meter, "zipora.buffers.owner.rents", ByOwner, "{rent}", "Rents made through pools created for an owner by the memory pool factory.");
        meter.CreateObservableGauge("zipora.buffers.class.high_water_mark", () => ByClass(null, static row => row.HighWaterMark), "{buffer}", "Most buffers of a size class in use at once over the recent window.");
        AddCounter(meter, "zipora.buffers.class.rents", static name => ByClass(name, static row => row.Rents), "{rent}", "Rents of a size class: its rate is the class's rent rate.");
        meter.CreateObservableUpDownCounter("zipora.buffers.segmented.live", () => PerPool(null, static statistics => statistics.Segmented.LiveBuffers, SegmentedTier), "{buffer}", "Segmented writers and streams created and not yet disposed.");
        meter.CreateObservableUpDownCounter("zipora.buffers.segmented.held", () => PerPool(null, static statistics => statistics.Segmented.BytesHeld, SegmentedTier), "By", "Bytes of the segments live segmented writers and streams hold.");
        AddCounter(meter, "zipora.buffers.segmented.messages", static name => PerPool(name, static statistics => statistics.Segmented.Messages, SegmentedTier), "{message}", "Messages ended by a reset or a dispose of a segmented writer or stream.");
        AddCounter(meter, "zipora.buffers.segmented.segments", static name => PerPool(name, static statistics => statistics.Segmented.MessageSegments, SegmentedTier), "{segment}", "Segments over all ended messages: its rate over the messages' rate is the segments per message.");
        meter.CreateObservableGauge("zipora.buffers.segmented.largest", () => PerPool(null, static statistics => statistics.Segmented.LargestMessage, SegmentedTier), "By", "The most bytes one segmented message held.");
        AddCounter(meter, "zipora.buffers.segmented.leaks", static name => PerPool(name, static statistics => statistics.Segmented.Leaked, SegmentedTier), "{buffer}", "Segmented writers and streams garbage collected without dispose.");
        return meter;
    }

    /// <summary>
    /// An observable counter whose measurements are given its name, the key of its series' floors (see
    /// <see cref="CounterFloors"/>), so the name is written once.
    /// </summary>
    private static void AddCounter(Meter meter, string name, Func<string, IEnumerable<Measurement<long>>> measure, string unit, string description) =>
        meter.CreateObservableCounter(name, () => measure(name), unit, description);

    /// <summary>
    /// Each tier's <paramref name="value"/>; for a <paramref name="counter"/> (its instrument's name), never below what
    /// the series reported before (see <see cref="CounterFloors"/>).
    /// </summary>
    private static IEnumerable<Measurement<long>> PerTier(string? counter, Func<TierStatistics, long> value)
    {
        foreach ((string owner, TieredMemoryPoolStatistics statistics, CounterFloors floors) in Snapshots())
        {
            foreach (TierStatistics tier in (TierStatistics[])[statistics.Small, statistics.Medium, statistics.Large, statistics.Huge])
            {
                yield return new Measurement<long>(Floored(floors, counter, tier.Name, value(tier)), new(TierTag, tier.Name), new(OwnerTag, owner));
            }
        }

        foreach ((TieredArrayPool pool, string owner) in Live(s_arrayPools, static _ => true))
        {
            long measured = Floored(FloorsOf(pool), counter, "array", value(pool.GetStatistics().Arrays));
            yield return new Measurement<long>(measured, new(TierTag, "array"), new(OwnerTag, owner));
        }
    }

    private static IEnumerable<Measurement<long>> PerPool(string? counter, Func<TieredMemoryPoolStatistics, long> value, string tier)
    {
        foreach ((string owner, TieredMemoryPoolStatistics statistics, CounterFloors floors) in Snapshots())
        {
            yield return new Measurement<long>(Floored(floors, counter, tier, value(statistics)), new(TierTag, tier), new(OwnerTag, owner));
        }
    }

    private static IEnumerable<Measurement<long>> ByOwner(string counter)
    {
        foreach ((string pool, TieredMemoryPoolStatistics statistics, CounterFloors floors) in Snapshots())
        {
            foreach (KeyValuePair<string, long> owner in statistics.RentsByOwner)
            {
                long rents = floors.NeverBelowTheLast(counter, owner.Key, owner.Value);
                yield return new Measurement<long>(rents, new(TierTag, "all"), new(OwnerTag, owner.Key), new(PoolTag, pool));
            }
        }
    }

    private static IEnumerable<Measurement<long>> ByClass(string? counter, Func<SizeClassStatistics, long> value)
    {
        foreach ((string owner, TieredMemoryPoolStatistics statistics, CounterFloors floors) in Snapshots())
        {
            foreach (SizeClassStatistics row in statistics.SizeHistogram)
            {
                long measured = Floored(floors, counter, string.Create(CultureInfo.InvariantCulture, $"{row.Tier} {row.ClassSize}"), value(row));
                yield return new Measurement<long>(measured, new(TierTag, row.Tier), new(OwnerTag, owner), new(ClassSizeTag, row.ClassSize));
            }
        }
    }

    /// <summary><paramref name="value"/>, raised to the series' last report when <paramref name="counter"/> names a counter.</summary>
    private static long Floored(CounterFloors floors, string? counter, string series, long value) =>
        counter is null ? value : floors.NeverBelowTheLast(counter, series, value);

    private static CounterFloors FloorsOf(object pool) => s_floors.GetValue(pool, static _ => new CounterFloors());

    /// <summary>Every live pool not disposed, of both kinds (the memory-pressure watcher trims them all).</summary>
    internal static List<IReclaimablePool> LivePools()
    {
        var live = new List<IReclaimablePool>();
        Live(s_pools, static pool => !pool.IsDisposed).ForEach(entry => live.Add(entry.Pool));
        Live(s_arrayPools, static _ => true).ForEach(entry => live.Add(entry.Pool));
        return live;
    }

    /// <summary>Statistics of every live memory pool, with its owner tag; forgets pools that were collected or disposed.</summary>
    private static List<(string Owner, TieredMemoryPoolStatistics Statistics, CounterFloors Floors)> Snapshots() =>
        Live(s_pools, static pool => !pool.IsDisposed).ConvertAll(static entry => (entry.Owner, entry.Pool.GetStatistics(), FloorsOf(entry.Pool)));

    /// <summary>The pools of <paramref name="pools"/> still alive and in use; forgets the others.</summary>
    private static List<(TPool Pool, string Owner)> Live<TPool>(List<(WeakReference<TPool> Pool, string Owner)> pools, Func<TPool, bool> inUse)
        where TPool : class
    {
        var live = new List<(TPool Pool, string Owner)>();
        lock (s_lock)
        {
            for (int i = pools.Count - 1; i >= 0; i--)
            {
                if (pools[i].Pool.TryGetTarget(out TPool? pool) && inUse(pool))
                {
                    live.Add((pool, pools[i].Owner));
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
