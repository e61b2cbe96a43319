using System;
using System.Buffers;
using System.Collections.Generic;
using System.Linq;
using Microsoft.AspNetCore.Connections;
using Microsoft.Extensions.Diagnostics.Metrics.Testing;

namespace Zipora.Buffers.Tests;

public sealed class MetricsTests
{
    [Theory]
    [InlineData("zipora.buffers.rented")]
    [InlineData("zipora.buffers.allocated")]
    [InlineData("zipora.buffers.pooled")]
    [InlineData("zipora.buffers.fragmented")]
    [InlineData("zipora.buffers.uncarved")]
    [InlineData("zipora.buffers.in_use")]
    [InlineData("zipora.buffers.cache.hits")]
    [InlineData("zipora.buffers.cache.misses")]
    public void EveryTierReportsTaggedWithTheTierAndThePoolsOwner(string instrument)
    {
        string owner = $"metrics-{Guid.NewGuid():N}";
        using var pool = new TieredMemoryPool(new TieredMemoryPoolOptions { Name = owner });
        using var collector = new MetricCollector<long>(null, PoolMetrics.MeterName, instrument);
        foreach (int size in new[] { 100, 4096, 100_000, 3_000_000 })
        {
            pool.Rent(size).Dispose();
        }

        collector.RecordObservableInstruments();
        Dictionary<string, long> byTier = LatestByTier(collector, owner);
        Assert.Equal(["huge", "large", "medium", "small"], byTier.Keys.Order());
        Assert.All(byTier.Values, value => Assert.True(value >= 0));
    }

    [Fact]
    public void TheValuesAreThePoolsStatistics()
    {
        string owner = $"metrics-{Guid.NewGuid():N}";
        using var pool = new TieredMemoryPool(new TieredMemoryPoolOptions { Name = owner });
        using var rented = new MetricCollector<long>(null, PoolMetrics.MeterName, "zipora.buffers.rented");
        using var pooled = new MetricCollector<long>(null, PoolMetrics.MeterName, "zipora.buffers.pooled");
        using var evicted = new MetricCollector<long>(null, PoolMetrics.MeterName, "zipora.buffers.evicted");
        IMemoryOwner<byte> first = pool.Rent(100_000);
        pool.Rent(100_000).Dispose();
        first.Dispose();

        rented.RecordObservableInstruments();
        pooled.RecordObservableInstruments();
        Assert.Equal(2 * 114_688, LatestByTier(rented, owner)["large"]);
        Assert.Equal(2 * 114_688, LatestByTier(pooled, owner)["large"]);

        pool.Trim();
        pooled.RecordObservableInstruments();
        evicted.RecordObservableInstruments();
        Assert.Equal(0, LatestByTier(pooled, owner)["large"]);
        Assert.Equal(2 * 114_688, LatestByTier(evicted, owner)["large"]);
    }

    [Fact]
    public void UncarvedSlabSpaceIsReportedPerSlabTier()
    {
        string owner = $"metrics-{Guid.NewGuid():N}";
        using var pool = new TieredMemoryPool(new TieredMemoryPoolOptions { Name = owner });
        using var uncarved = new MetricCollector<long>(null, PoolMetrics.MeterName, "zipora.buffers.uncarved");
        IMemoryOwner<byte> small = pool.Rent(100);
        IMemoryOwner<byte> medium = pool.Rent(4096);

        uncarved.RecordObservableInstruments();
        Dictionary<string, long> byTier = LatestByTier(uncarved, owner);
        Assert.Equal((64 * 1024) - 112, byTier["small"]);
        Assert.Equal((64 * 1024) - 4096, byTier["medium"]);
        Assert.Equal(0, byTier["large"]);
        small.Dispose();
        medium.Dispose();
    }

    [Fact]
    public void NothingIsMeasuredWithoutAListenerAndADisposedPoolStopsReporting()
    {
        string owner = $"metrics-{Guid.NewGuid():N}";
        var pool = new TieredMemoryPool(new TieredMemoryPoolOptions { Name = owner });
        pool.Rent(4096).Dispose();
        using var collector = new MetricCollector<long>(null, PoolMetrics.MeterName, "zipora.buffers.rented");
        Assert.Empty(collector.GetMeasurementSnapshot());

        pool.Dispose();
        collector.RecordObservableInstruments();
        Assert.DoesNotContain(collector.GetMeasurementSnapshot(), measurement => Equals(measurement.Tags[PoolMetrics.OwnerTag], owner));
    }

    [Fact]
    public void APoolMadeWhileAnotherOfItsNameLivesReportsSeriesOfItsOwnUnderItsNameNumbered()
    {
        string name = $"metrics-{Guid.NewGuid():N}";
        var first = new TieredMemoryPool(new TieredMemoryPoolOptions { Name = name });
        using var second = new TieredMemoryPool(new TieredMemoryPoolOptions { Name = name });
        using var rented = new MetricCollector<long>(null, PoolMetrics.MeterName, "zipora.buffers.rented");
        first.Rent(4096).Dispose();
        second.Rent(4096).Dispose();
        second.Rent(4096).Dispose();

        rented.RecordObservableInstruments();
        Assert.Equal(4096, LatestByTier(rented, name)["medium"]);
        Assert.Equal(2 * 4096, LatestByTier(rented, name + "#2")["medium"]);

        // The first pool's series ends with it; the second's goes on, never lower. A pool made now takes the name free again.
        first.Dispose();
        using var third = new TieredMemoryPool(new TieredMemoryPoolOptions { Name = name });
        rented.Clear();
        rented.RecordObservableInstruments();
        Assert.Equal(0, LatestByTier(rented, name)["medium"]);
        Assert.Equal(2 * 4096, LatestByTier(rented, name + "#2")["medium"]);
        Assert.Single(rented.GetMeasurementSnapshot(), m => Equals(m.Tags[PoolMetrics.OwnerTag], name + "#2") && Equals(m.Tags[PoolMetrics.TierTag], "medium"));
    }

    [Fact]
    public void APoolMadeAfterANumberedOneWasDisposedTakesTheLowestNumberFree()
    {
        string name = $"metrics-{Guid.NewGuid():N}";
        using var first = new TieredMemoryPool(new TieredMemoryPoolOptions { Name = name });
        var second = new TieredMemoryPool(new TieredMemoryPoolOptions { Name = name });
        using var third = new TieredMemoryPool(new TieredMemoryPoolOptions { Name = name });

        // name#2 is free again, name#3 is not: a fourth pool reports under name#2, never under a name a live pool has.
        second.Dispose();
        using var fourth = new TieredMemoryPool(new TieredMemoryPoolOptions { Name = name });
        using var rented = new MetricCollector<long>(null, PoolMetrics.MeterName, "zipora.buffers.rented");
        first.Rent(4096).Dispose();
        third.Rent(4096).Dispose();
        third.Rent(4096).Dispose();
        third.Rent(4096).Dispose();
        fourth.Rent(4096).Dispose();
        fourth.Rent(4096).Dispose();

        rented.RecordObservableInstruments();
        foreach ((string owner, long bytes) in new[] { (name, 4096L), (name + "#2", 2 * 4096L), (name + "#3", 3 * 4096L) })
        {
            Assert.Equal(bytes, Assert.Single(rented.GetMeasurementSnapshot(), m => Equals(m.Tags[PoolMetrics.OwnerTag], owner) && Equals(m.Tags[PoolMetrics.TierTag], "medium")).Value);
        }
    }

    [Fact]
    public void ANumberedNameSkipsANameAnotherPoolWasGiven()
    {
        string name = $"metrics-{Guid.NewGuid():N}";
        using var first = new TieredMemoryPool(new TieredMemoryPoolOptions { Name = name });
        using var namedLikeASecond = new TieredMemoryPool(new TieredMemoryPoolOptions { Name = name + "#2" });
        using var second = new TieredMemoryPool(new TieredMemoryPoolOptions { Name = name });
        using var rented = new MetricCollector<long>(null, PoolMetrics.MeterName, "zipora.buffers.rented");
        second.Rent(4096).Dispose();

        rented.RecordObservableInstruments();
        Assert.Equal(4096, LatestByTier(rented, name + "#3")["medium"]);
        Assert.Equal(0, LatestByTier(rented, name + "#2")["medium"]);
    }

    [Fact]
    public void TheSharedPoolsAreNotNamedAsAPoolLeftAtTheDefaultName()
    {
        Assert.NotEqual(new TieredMemoryPoolOptions().Name, TieredMemoryPool.Shared.Name);
        Assert.NotEqual(new TieredArrayPoolOptions().Name, TieredArrayPool.Shared.Name);
        Assert.Equal(TieredMemoryPool.SharedName, TieredMemoryPool.Shared.Name);
        Assert.Equal(TieredArrayPool.SharedName, TieredArrayPool.Shared.Name);
    }

    [Fact]
    public void AFactoryOwnersRentsAreToldApartByThePoolTheyCameFrom()
    {
        string factoryOwner = $"kestrel-{Guid.NewGuid():N}";
        using var first = new TieredMemoryPool(new TieredMemoryPoolOptions { Name = "first-" + factoryOwner });
        using var second = new TieredMemoryPool(new TieredMemoryPoolOptions { Name = "second-" + factoryOwner });
        using var rents = new MetricCollector<long>(null, PoolMetrics.MeterName, "zipora.buffers.owner.rents");
        new TieredMemoryPoolFactory(first).Create(new MemoryPoolOptions { Owner = factoryOwner }).Rent(100).Dispose();
        MemoryPool<byte> secondView = new TieredMemoryPoolFactory(second).Create(new MemoryPoolOptions { Owner = factoryOwner });
        secondView.Rent(100).Dispose();
        secondView.Rent(100).Dispose();

        rents.RecordObservableInstruments();
        Dictionary<string, long> byPool = rents.GetMeasurementSnapshot()
            .Where(m => Equals(m.Tags[PoolMetrics.OwnerTag], factoryOwner))
            .ToDictionary(static m => (string)m.Tags[PoolMetrics.PoolTag]!, static m => m.Value);
        Assert.Equal(1, byPool["first-" + factoryOwner]);
        Assert.Equal(2, byPool["second-" + factoryOwner]);
        Assert.Equal(2, byPool.Count);
    }

    private static Dictionary<string, long> LatestByTier(MetricCollector<long> collector, string owner)
    {
        var latest = new Dictionary<string, long>();
        foreach (CollectedMeasurement<long> measurement in collector.GetMeasurementSnapshot())
        {
            if (Equals(measurement.Tags[PoolMetrics.OwnerTag], owner))
            {
                latest[(string)measurement.Tags[PoolMetrics.TierTag]!] = measurement.Value;
            }
        }

        return latest;
    }
}
