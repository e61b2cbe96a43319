using System;
using System.Linq;
using Microsoft.Extensions.Diagnostics.Metrics.Testing;

namespace Zipora.Buffers.Tests;

public sealed class ArrayPoolStatisticsTests
{
    [Fact]
    public void CountersFollowEveryRentAndReturn()
    {
        var pool = new TieredArrayPool(new TieredArrayPoolOptions { MaxArrayLength = 1024 * 1024 });
        byte[] first = pool.Rent(3000);
        pool.Return(first);
        byte[] again = pool.Rent(3000);
        byte[] unpooled = pool.Rent(2_000_000);

        TierStatistics arrays = pool.GetStatistics().Arrays;
        Assert.Equal("array", arrays.Name);
        Assert.Equal(3, arrays.Rents);
        Assert.Equal(1, arrays.Returns);
        Assert.Equal(1, arrays.CacheHits);
        Assert.Equal(2, arrays.CacheMisses);
        Assert.Equal(4096 + 2_000_000, arrays.BytesInUse);
        Assert.Equal(0, arrays.BytesRetained);
        Assert.Equal((2 * 4096) + 2_000_000, arrays.BytesRented);
        Assert.Equal(4096 + 2_000_000, arrays.BytesAllocated);

        pool.Return(again);
        pool.Return(unpooled);
        TieredArrayPoolStatistics statistics = pool.GetStatistics();
        Assert.Equal(0, statistics.BytesInUse);
        Assert.Equal(4096, statistics.BytesRetained);
        Assert.Equal(1, statistics.UnpooledRents);
        Assert.Contains("array", statistics.ToString(), StringComparison.Ordinal);
    }

    [Fact]
    public void AMixedWorkloadReservesAtMostAQuarterMoreThanItAsks()
    {
        // Lengths drawn log-uniformly from 1 byte to 4 MB, as in the memory-efficiency benchmark.
        var random = new Random(20261125);
        var pool = new TieredArrayPool();
        long asked = 0;
        long handedOut = 0;
        for (int i = 0; i < 20_000; i++)
        {
            int length = (int)Math.Exp(random.NextDouble() * Math.Log(4 * 1024 * 1024));
            asked += length;
            handedOut += pool.Rent(Math.Max(1, length)).Length;
        }

        double ratio = (double)handedOut / asked;
        Assert.True(ratio <= 1.25, $"handed out / asked = {ratio:F3}");
        Assert.Equal(handedOut, pool.GetStatistics().BytesInUse);
    }

    [Fact]
    public void MetricsReportThePoolAsTheArrayTier()
    {
        string owner = $"arrays-{Guid.NewGuid():N}";
        var pool = new TieredArrayPool(new TieredArrayPoolOptions { Name = owner });
        using var rented = new MetricCollector<long>(null, PoolMetrics.MeterName, "zipora.buffers.rented");
        using var pooled = new MetricCollector<long>(null, PoolMetrics.MeterName, "zipora.buffers.pooled");
        pool.Return(pool.Rent(1000));
        pool.Return(pool.Rent(1000));

        rented.RecordObservableInstruments();
        pooled.RecordObservableInstruments();
        Assert.Equal(2048, Latest(rented, owner));
        Assert.Equal(1024, Latest(pooled, owner));
    }

    private static long Latest(MetricCollector<long> collector, string owner) =>
        collector.GetMeasurementSnapshot()
            .Last(measurement => Equals(measurement.Tags["zipora.buffers.owner"], owner) && Equals(measurement.Tags["zipora.buffers.tier"], "array"))
            .Value;
}
