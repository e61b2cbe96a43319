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
    public void AnArrayDroppedOnReturnCountsAsEvictedWhetherItIsOfAClassOrLongerThanTheMaximum()
    {
        // No thread cache and no depot: a class array returned is dropped, and counted as evicted.
        var pool = new TieredArrayPool(new TieredArrayPoolOptions
        {
            MaxArrayLength = 4096,
            ThreadCacheMaxArrays = 0,
            SharedCacheMaxBytes = 0,
            IdleReleaseDelay = Timeout.InfiniteTimeSpan,
        });
        pool.Return(pool.Rent(100));
        Assert.Equal(128, pool.GetStatistics().Arrays.BytesEvicted);

        // An array longer than the maximum is dropped on return too.
        byte[] returned = pool.Rent(10_000);
        byte[] kept = pool.Rent(5000);
        pool.Return(returned);

        TierStatistics arrays = pool.GetStatistics().Arrays;
        Assert.Equal(128 + 10_000 + 5000, arrays.BytesAllocated);
        Assert.Equal(5000, arrays.BytesInUse);
        Assert.Equal(0, arrays.BytesRetained);
        Assert.Equal(128 + 10_000, arrays.BytesEvicted);
        Assert.Equal(arrays.BytesAllocated, arrays.BytesInUse + arrays.BytesRetained + arrays.BytesEvicted);
        pool.Return(kept);
    }

    [Fact]
    public void AfterAStormOfTrimsAndOneMoreTrimWithTheThreadsParkedNothingIsRetainedAndNoFigureIsNegative()
    {
        // A trim abandons a thread's slots while the thread may be in a rent or a return on them; the thread settles
        // the difference when it next reaches the class. Parked threads never do: the figures read then must still
        // say what the pool holds (nothing, after a trim), not the abandoned slots' count.
        var pool = new TieredArrayPool(new TieredArrayPoolOptions { IdleReleaseDelay = Timeout.InfiniteTimeSpan });
        int[] lengths = [16, 32, 64, 128, 256, 512, 1024, 2048, 4096, 5120, 6144, 7168, 8192, 10_240, 12_288, 14_336];
        const int Workers = 3;
        const int Rounds = 30;
        using var go = new Barrier(Workers + 2);
        using var parked = new Barrier(Workers + 2);
        int stop = 0;
        int rounds = 0;
        var failures = new List<string>();
        var threads = new List<Thread>();
        for (int w = 0; w < Workers; w++)
        {
            int seed = w;
            threads.Add(new Thread(() =>
            {
                var random = new Random(seed);
                var held = new List<byte[]>();
                for (int round = 0; round < Rounds; round++)
                {
                    go.SignalAndWait();
                    while (Volatile.Read(ref stop) == 0)
                    {
                        // Rents on one class and returns on another, so a class's last operation is either.
                        byte[] array = pool.Rent(lengths[random.Next(lengths.Length)]);
                        held.Add(array);
                        if (held.Count > 4)
                        {
                            int index = random.Next(held.Count);
                            pool.Return(held[index]);
                            held.RemoveAt(index);
                        }
                    }

                    parked.SignalAndWait();
                    parked.SignalAndWait();
                }

                foreach (byte[] array in held)
                {
                    pool.Return(array);
                }
            }));
        }

        var trimmer = new Thread(() =>
        {
            for (int round = 0; round < Rounds; round++)
            {
                go.SignalAndWait();
                while (Volatile.Read(ref stop) == 0)
                {
                    pool.Trim();
                }

                parked.SignalAndWait();
                parked.SignalAndWait();
            }
        });
        foreach (Thread thread in threads.Append(trimmer))
        {
            thread.Start();
        }

        for (int round = 0; round < Rounds; round++)
        {
            go.SignalAndWait();
            Thread.Sleep(20);
            Volatile.Write(ref stop, 1);
            parked.SignalAndWait();

            pool.Trim();
            TieredArrayPoolStatistics statistics = pool.GetStatistics();
            TierStatistics arrays = statistics.Arrays;
            if (statistics.BytesRetained != 0 || arrays.BytesInUse < 0 || arrays.BytesEvicted < 0
                || arrays.BytesAllocated != arrays.BytesInUse + arrays.BytesRetained + arrays.BytesEvicted)
            {
                failures.Add($"round {round}: after a trim with every thread parked, {arrays.BytesRetained} bytes retained, {arrays.BytesEvicted} evicted, {arrays.BytesInUse} in use, {arrays.BytesAllocated} allocated");
            }

            rounds++;
            Volatile.Write(ref stop, 0);
            parked.SignalAndWait();
        }

        foreach (Thread thread in threads.Append(trimmer))
        {
            thread.Join();
        }

        Assert.Equal(Rounds, rounds);
        Assert.True(failures.Count == 0, $"{failures.Count} of {Rounds} rounds:{Environment.NewLine}{string.Join(Environment.NewLine, failures)}");
    }

    [Fact]
    public void StatisticsReadWhileTrimsRaceRentsAndReturnsNeverShowANegativeFigure()
    {
        var pool = new TieredArrayPool(new TieredArrayPoolOptions { ThreadCacheMaxArrays = 4, IdleReleaseDelay = Timeout.InfiniteTimeSpan });
        int stop = 0;
        string? negative = null;
        var threads = new List<Thread>();
        for (int w = 0; w < 2; w++)
        {
            int seed = w;
            threads.Add(new Thread(() =>
            {
                var random = new Random(seed);
                var held = new List<byte[]>();
                while (Volatile.Read(ref stop) == 0)
                {
                    held.Add(pool.Rent(16 << random.Next(6)));
                    if (held.Count > 6 || random.Next(3) == 0)
                    {
                        int index = random.Next(held.Count);
                        pool.Return(held[index]);
                        held.RemoveAt(index);
                    }
                }

                held.ForEach(array => pool.Return(array));
            }));
        }

        threads.Add(new Thread(() =>
        {
            while (Volatile.Read(ref stop) == 0)
            {
                pool.Trim();
            }
        }));
        foreach (Thread thread in threads)
        {
            thread.Start();
        }

        int reads = 0;
        var watch = System.Diagnostics.Stopwatch.StartNew();
        while (watch.ElapsedMilliseconds < 1000 && negative is null)
        {
            TieredArrayPoolStatistics statistics = pool.GetStatistics();
            TierStatistics arrays = statistics.Arrays;
            if (arrays.BytesRetained < 0 || arrays.BytesEvicted < 0 || arrays.BytesInUse < 0 || arrays.CacheHits < 0 || arrays.Rents < arrays.Returns)
            {
                negative = statistics.ToString() + $", evicted {arrays.BytesEvicted}";
            }

            reads++;
        }

        Volatile.Write(ref stop, 1);
        foreach (Thread thread in threads)
        {
            thread.Join();
        }

        Assert.True(negative is null, $"read {reads}: {negative}");
        TierStatistics quiet = pool.GetStatistics().Arrays;
        Assert.Equal(0, quiet.BytesInUse);
        Assert.Equal(quiet.BytesAllocated, quiet.BytesRetained + quiet.BytesEvicted);
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
