using System;
using System.Collections.Generic;
using System.Linq;
using System.Threading;
using Microsoft.Extensions.Diagnostics.Metrics.Testing;

namespace Zipora.Buffers.Tests;

/// <summary>The statistics and the meter: exact when the pool is quiet, never negative.</summary>
public sealed partial class ArrayPoolAttackTests
{
    [Fact]
    public void ForeignArraysLongerThanTheMaximumReturnedNeverDriveTheStatisticsNegative()
    {
        // The contract accepts (and drops) any array longer than the pooled maximum; a class-length array never
        // rented is counted with a rent (its returns raise the rents), so the longer ones must not go below zero either.
        var pool = new TieredArrayPool(new TieredArrayPoolOptions { MaxArrayLength = 4096, IdleReleaseDelay = Timeout.InfiniteTimeSpan });
        pool.Return(new byte[4097]);
        pool.Return(new byte[1 << 20]);

        TieredArrayPoolStatistics statistics = pool.GetStatistics();
        AssertNoNegativeFigure(statistics);
        Assert.Equal(0, statistics.BytesInUse);
    }

    [Fact]
    public void TheMeterReportsWhatTheStatisticsSayForTheArrayTierAfterAStorm()
    {
        string owner = $"attack-{Guid.NewGuid():N}";
        var pool = new TieredArrayPool(new TieredArrayPoolOptions { Name = owner, IdleReleaseDelay = Timeout.InfiniteTimeSpan });
        string[] instruments =
        [
            "zipora.buffers.rented", "zipora.buffers.allocated", "zipora.buffers.pooled", "zipora.buffers.evicted",
            "zipora.buffers.in_use", "zipora.buffers.cache.hits", "zipora.buffers.cache.misses",
        ];
        var collectors = instruments.ToDictionary(name => name, name => new MetricCollector<long>(null, PoolMetrics.MeterName, name));
        try
        {
            var workers = new Thread[2];
            for (int w = 0; w < workers.Length; w++)
            {
                workers[w] = new Thread(() =>
                {
                    var held = new Queue<byte[]>();
                    for (int i = 0; i < 20_000; i++)
                    {
                        held.Enqueue(pool.Rent(1 + (i * 37 % 70_000)));
                        if (held.Count > 20)
                        {
                            pool.Return(held.Dequeue());
                        }

                        if (i % 5000 == 0)
                        {
                            pool.Trim();
                        }
                    }

                    while (held.Count > 0)
                    {
                        pool.Return(held.Dequeue());
                    }
                });
                workers[w].Start();
            }

            foreach (Thread worker in workers)
            {
                worker.Join();
            }

            byte[] kept = pool.Rent(100_001);
            TierStatistics arrays = pool.GetStatistics().Arrays;
            foreach (MetricCollector<long> collector in collectors.Values)
            {
                collector.RecordObservableInstruments();
            }

            Assert.Equal(arrays.BytesRented, Latest(collectors["zipora.buffers.rented"], owner));
            Assert.Equal(arrays.BytesAllocated, Latest(collectors["zipora.buffers.allocated"], owner));
            Assert.Equal(arrays.BytesRetained, Latest(collectors["zipora.buffers.pooled"], owner));
            Assert.Equal(arrays.BytesEvicted, Latest(collectors["zipora.buffers.evicted"], owner));
            Assert.Equal(arrays.BytesInUse, Latest(collectors["zipora.buffers.in_use"], owner));
            Assert.Equal(arrays.CacheHits, Latest(collectors["zipora.buffers.cache.hits"], owner));
            Assert.Equal(arrays.CacheMisses, Latest(collectors["zipora.buffers.cache.misses"], owner));
            Assert.Equal(kept.Length, arrays.BytesInUse);
            Assert.Equal(arrays.BytesAllocated, arrays.BytesInUse + arrays.BytesRetained + arrays.BytesEvicted);
            Assert.Equal(arrays.Rents, arrays.Returns + 1);
            pool.Return(kept);
        }
        finally
        {
            foreach (MetricCollector<long> collector in collectors.Values)
            {
                collector.Dispose();
            }
        }
    }

    private static long Latest(MetricCollector<long> collector, string owner) =>
        collector.GetMeasurementSnapshot()
            .Last(measurement => Equals(measurement.Tags["zipora.buffers.owner"], owner) && Equals(measurement.Tags["zipora.buffers.tier"], "array"))
            .Value;
}
