using System;
using System.Linq;
using Microsoft.Extensions.Diagnostics.Metrics.Testing;

namespace Zipora.Buffers.Tests;

/// <summary>A pool's <c>Name</c> is documented as its metrics' owner tag, numbered when another live pool has the name.</summary>
public sealed class PoolNameTests
{
    [Fact]
    public void AMemoryPoolNamedLikeALiveOneIsNamedAsItsMetricsSeries()
    {
        string name = $"named-{Guid.NewGuid():N}";
        using var first = new TieredMemoryPool(new TieredMemoryPoolOptions { Name = name });
        using var second = new TieredMemoryPool(new TieredMemoryPoolOptions { Name = name });
        using var rented = new MetricCollector<long>(null, PoolMetrics.MeterName, "zipora.buffers.rented");
        second.Rent(4096).Dispose();

        rented.RecordObservableInstruments();
        string owner = (string)rented.GetMeasurementSnapshot().Single(m => m.Value == 4096 && ((string)m.Tags[PoolMetrics.OwnerTag]!).StartsWith(name, StringComparison.Ordinal)).Tags[PoolMetrics.OwnerTag]!;
        Assert.Equal(name + "#2", owner);
        Assert.Equal(name, first.Name);
        Assert.Equal(owner, second.Name);
    }

    [Fact]
    public void AnArrayPoolNamedLikeALiveOneIsNamedAsItsMetricsSeries()
    {
        string name = $"named-{Guid.NewGuid():N}";
        var first = new TieredArrayPool(new TieredArrayPoolOptions { Name = name });
        var second = new TieredArrayPool(new TieredArrayPoolOptions { Name = name });

        Assert.Equal(name, first.Name);
        Assert.Equal(name + "#2", second.Name);
        GC.KeepAlive(first);
    }
}
