using System;
using System.Collections.Generic;
using System.Runtime.CompilerServices;
using Microsoft.Extensions.Diagnostics.Metrics.Testing;

namespace Zipora.Buffers.Tests;

/// <summary>
/// Pools made, measured by collectors and dropped without dispose, as a test suite's or a restarted host's are: the
/// meter's callbacks, their per-pool counter floors and the collectors' recorded measurements must not keep any of
/// them reachable, and once collected they report no more.
/// </summary>
/// <remarks>Forces full garbage collections, so it runs alone.</remarks>
[Collection(nameof(HugepageTests))]
public sealed class CollectedPoolsAreNotKeptByTheMeterTests
{
    private const int Pools = 16;

    [Fact]
    public void PoolsDroppedWhileCollectorsMeasureThemAreCollectedAndStopReporting()
    {
        string prefix = $"dropped-{Guid.NewGuid():N}-";
        using var rented = new MetricCollector<long>(null, PoolMetrics.MeterName, "zipora.buffers.rented");
        using var classes = new MetricCollector<long>(null, PoolMetrics.MeterName, "zipora.buffers.class.rents");
        using var owners = new MetricCollector<long>(null, PoolMetrics.MeterName, "zipora.buffers.owner.rents");
        List<WeakReference> pools = MakeMeasureAndDrop(prefix, [rented, classes, owners]);

        GC.Collect();
        GC.WaitForPendingFinalizers();
        GC.Collect();

        Assert.All(pools, static pool => Assert.False(pool.IsAlive, "a dropped pool is kept reachable by the meter or a collector"));
        rented.Clear();
        rented.RecordObservableInstruments();
        Assert.DoesNotContain(rented.GetMeasurementSnapshot(), measurement => OwnerOf(measurement.Tags).StartsWith(prefix, StringComparison.Ordinal));
    }

    /// <summary>Makes pools that rent through a factory view, has every collector measure them, and drops them.</summary>
    [MethodImpl(MethodImplOptions.NoInlining)]
    private static List<WeakReference> MakeMeasureAndDrop(string prefix, MetricCollector<long>[] collectors)
    {
        var pools = new List<WeakReference>();
        for (int i = 0; i < Pools; i++)
        {
            var pool = new TieredMemoryPool(new TieredMemoryPoolOptions { Name = $"{prefix}{i}" });
            new TieredMemoryPoolFactory(pool).Create(new Microsoft.AspNetCore.Connections.MemoryPoolOptions { Owner = "kestrel" }).Rent(5_000).Dispose();
            pool.Rent(100_000).Dispose();
            pools.Add(new WeakReference(pool));
        }

        foreach (MetricCollector<long> collector in collectors)
        {
            collector.RecordObservableInstruments();
            Assert.Contains(collector.GetMeasurementSnapshot(), measurement => OwnerOf(measurement.Tags).StartsWith(prefix, StringComparison.Ordinal) || PoolOf(measurement.Tags).StartsWith(prefix, StringComparison.Ordinal));
        }

        return pools;
    }

    private static string OwnerOf(IReadOnlyDictionary<string, object?> tags) => tags.GetValueOrDefault(PoolMetrics.OwnerTag) as string ?? "";

    private static string PoolOf(IReadOnlyDictionary<string, object?> tags) => tags.GetValueOrDefault(PoolMetrics.PoolTag) as string ?? "";
}
