using System;
using System.Collections.Generic;
using System.Globalization;
using System.Linq;
using System.Text.RegularExpressions;
using Microsoft.Extensions.Diagnostics.Metrics.Testing;
using Microsoft.Extensions.Time.Testing;
using Zipora.Buffers.Native;

namespace Zipora.Buffers.Tests;

public sealed class AdaptiveCacheTests
{
    private const int Size = 64 * 1024;
    private static readonly TimeSpan s_delay = TimeSpan.FromSeconds(10);

    [Fact]
    public void TheRegionCacheKeepsAsManyRegionsAsTheRecentPeakNeeds()
    {
        using var pool = new TieredMemoryPool(new TieredMemoryPoolOptions { IdleReleaseDelay = s_delay, TimeProvider = new FakeTimeProvider() });
        Burst(pool, Size, 256);
        Assert.Equal(256L * Size, pool.GetStatistics().Large.BytesRetained);

        long maps = pool.GetStatistics().MmapCalls;
        Burst(pool, Size, 256);
        TieredMemoryPoolStatistics statistics = pool.GetStatistics();
        Assert.Equal(maps, statistics.MmapCalls);
        Assert.Equal(256, statistics.Large.CacheHits);
    }

    [Fact]
    public void ClassesThatPeakAtDifferentMomentsAreAllKeptSoSteadyTrafficNeverMapsAgain()
    {
        // Four classes, each with 32 buffers in use at its own moment: the tier never has more than 32 in use at once,
        // but each class needs its own 32 regions back.
        using var pool = new TieredMemoryPool(new TieredMemoryPoolOptions { RegionCacheMaxCount = 1, IdleReleaseDelay = s_delay, TimeProvider = new FakeTimeProvider() });
        int[] sizes = [20 * 1024, 40 * 1024, 80 * 1024, 160 * 1024];
        foreach (int size in sizes)
        {
            Burst(pool, size, 32);
        }

        long maps = pool.GetStatistics().MmapCalls;
        for (int round = 0; round < 3; round++)
        {
            foreach (int size in sizes)
            {
                Burst(pool, size, 32);
            }
        }

        TieredMemoryPoolStatistics statistics = pool.GetStatistics();
        Assert.Equal(maps, statistics.MmapCalls);
        Assert.Equal(3 * 4 * 32, statistics.Large.CacheHits);
    }

    [Fact]
    public void WithAdaptationOffTheCountLimitIsFixed()
    {
        using var pool = new TieredMemoryPool(new TieredMemoryPoolOptions { AdaptiveCaches = false, IdleReleaseDelay = s_delay, TimeProvider = new FakeTimeProvider() });
        Burst(pool, Size, 256);
        Assert.Equal(64L * Size, pool.GetStatistics().Large.BytesRetained);

        Burst(pool, Size, 256);
        Assert.Equal(64, pool.GetStatistics().Large.CacheHits);
    }

    [Fact]
    public void TheByteLimitStaysAHardCap()
    {
        using var pool = new TieredMemoryPool(new TieredMemoryPoolOptions { RegionCacheMaxBytes = 4 * 1024 * 1024, IdleReleaseDelay = s_delay, TimeProvider = new FakeTimeProvider() });
        Burst(pool, Size, 256);
        Assert.Equal(4L * 1024 * 1024, pool.GetStatistics().Large.BytesRetained);
    }

    [Fact]
    public void WhenDemandFallsTheCacheAndTheHighWaterMarkFallWithItWithinTwoWindows()
    {
        var time = new FakeTimeProvider();
        using var pool = new TieredMemoryPool(new TieredMemoryPoolOptions { IdleReleaseDelay = s_delay, TimeProvider = time });
        Burst(pool, Size, 256);
        Assert.Equal(256, HistogramRow(pool, "large", Size).HighWaterMark);

        for (int tick = 0; tick < 12; tick++)
        {
            Burst(pool, Size, 8);
            time.Advance(s_delay / 4);
        }

        TieredMemoryPoolStatistics statistics = pool.GetStatistics();
        Assert.Equal(8, HistogramRow(pool, "large", Size).HighWaterMark);
        Assert.InRange(statistics.Large.BytesRetained, 8L * Size, 64L * Size);
    }

    [Fact]
    public void TheHistogramCountsRentsBuffersInUseThePeakAndTheCachedPerClass()
    {
        using var pool = new TieredMemoryPool(new TieredMemoryPoolOptions { IdleReleaseDelay = s_delay, TimeProvider = new FakeTimeProvider() });
        List<IDisposable> held = [.. Enumerable.Range(0, 5).Select(_ => pool.Rent(20 * 1024))];
        held[0].Dispose();
        held[1].Dispose();
        pool.Rent(3_000_000).Dispose();

        SizeClassStatistics large = HistogramRow(pool, "large", 20 * 1024);
        Assert.Equal(5, large.Rents);
        Assert.Equal(3, large.BuffersInUse);
        Assert.Equal(5, large.HighWaterMark);
        Assert.Equal(2, large.Cached);

        SizeClassStatistics huge = Assert.Single(pool.GetStatistics().SizeHistogram, row => row.Tier == "huge");
        Assert.Equal(3 * 1024 * 1024, huge.ClassSize);
        Assert.Equal(1, huge.Rents);
        Assert.Equal(0, huge.BuffersInUse);
        held.ForEach(owner => owner.Dispose());
    }

    [Fact]
    public void TheSmallTierReportsItsClassesToo()
    {
        using var pool = new TieredMemoryPool();
        List<IDisposable> held = [.. Enumerable.Range(0, 3).Select(_ => pool.Rent(100))];
        held[0].Dispose();

        SizeClassStatistics small = HistogramRow(pool, "small", 112);
        Assert.Equal(3, small.Rents);
        Assert.Equal(2, small.BuffersInUse);
        Assert.Equal(1, small.Cached);
        held.ForEach(owner => owner.Dispose());
    }

    [Fact]
    public void EachClassReportsItsRentsAndHighWaterMarkAsMetrics()
    {
        string owner = $"classes-{Guid.NewGuid():N}";
        var time = new FakeTimeProvider();
        using var pool = new TieredMemoryPool(new TieredMemoryPoolOptions { Name = owner, IdleReleaseDelay = s_delay, TimeProvider = time });
        using var rents = new MetricCollector<long>(null, PoolMetrics.MeterName, "zipora.buffers.class.rents");
        using var highWater = new MetricCollector<long>(null, PoolMetrics.MeterName, "zipora.buffers.class.high_water_mark");
        Burst(pool, 4096, 7);
        Burst(pool, Size, 3);

        rents.RecordObservableInstruments();
        highWater.RecordObservableInstruments();
        Assert.Equal(7, Latest(rents, owner, 4096));
        Assert.Equal(3, Latest(highWater, owner, Size));
    }

    [Fact]
    public void TheMediumHighWaterMarkIsSampledAtEachIdleTickAndAgesOut()
    {
        var time = new FakeTimeProvider();
        using var pool = new TieredMemoryPool(new TieredMemoryPoolOptions { IdleReleaseDelay = s_delay, TimeProvider = time });
        List<IDisposable> held = [.. Enumerable.Range(0, 10).Select(_ => pool.Rent(4096))];
        time.Advance(s_delay / 4);
        held.ForEach(owner => owner.Dispose());

        Assert.Equal(10, HistogramRow(pool, "medium", 4096).HighWaterMark);
        for (int tick = 0; tick < 9; tick++)
        {
            time.Advance(s_delay / 4);
        }

        Assert.Equal(0, HistogramRow(pool, "medium", 4096).HighWaterMark);
        Assert.Equal(10, HistogramRow(pool, "medium", 4096).Rents);
    }

    [Theory]
    [InlineData(true, 0)]
    [InlineData(false, 50)]
    public void AMediumClassThatWentColdIsGivenBackWhileAnotherClassStaysBusyOnlyWhenAdaptive(bool adaptive, int cachedAfter)
    {
        var time = new FakeTimeProvider();
        using var pool = new TieredMemoryPool(new TieredMemoryPoolOptions { AdaptiveCaches = adaptive, IdleReleaseDelay = s_delay, TimeProvider = time });
        Burst(pool, 4096, 50);
        for (int tick = 0; tick < 8; tick++)
        {
            Burst(pool, 1024, 10);
            time.Advance(s_delay / 4);
        }

        Assert.Equal(cachedAfter, HistogramRow(pool, "medium", 4096).Cached);
        Assert.Equal(10, HistogramRow(pool, "medium", 1024).Cached);
    }

    [Fact]
    public void AThreadCacheThatKeepsRunningEmptyGrowsToItsLimit()
    {
        using var pool = new TieredMemoryPool(new TieredMemoryPoolOptions { ThreadCacheMaxBuffers = 64 });
        // A class starts at a quarter of its limit (16 of 64), and the first rent ran it empty once: 16 + 8.
        pool.Rent(4096).Dispose();
        Assert.Equal(24, pool.ThreadCacheCapacity(4096));

        for (int round = 0; round < 20; round++)
        {
            Burst(pool, 4096, 64);
        }

        Assert.Equal(64, pool.ThreadCacheCapacity(4096));
    }

    [Fact]
    public void AThreadCacheThatOnlyReceivesReturnsShrinksToItsFloor()
    {
        using var pool = new TieredMemoryPool(new TieredMemoryPoolOptions { ThreadCacheMaxBuffers = 64 });
        int capacity = -1;
        var returner = new System.Threading.Thread(() =>
        {
            var rented = new List<IDisposable>();
            for (int i = 0; i < 2000; i++)
            {
                rented.Add(pool.Rent(4096));
            }

            // The renting happened here too, so start over on a thread that only returns.
            var onlyReturns = new System.Threading.Thread(() =>
            {
                rented.ForEach(owner => owner.Dispose());
                capacity = pool.ThreadCacheCapacity(4096);
            });
            onlyReturns.Start();
            onlyReturns.Join();
        });
        returner.Start();
        returner.Join();

        Assert.Equal(8, capacity);
    }

    [Fact]
    public void WithAdaptationOffThreadCachesStayAtTheirLimit()
    {
        using var pool = new TieredMemoryPool(new TieredMemoryPoolOptions { AdaptiveCaches = false, ThreadCacheMaxBuffers = 64 });
        Burst(pool, 4096, 1000);
        Assert.Equal(64, pool.ThreadCacheCapacity(4096));
    }

    [Fact]
    public void AClassGivenBackForIdlenessStartsOverSmall()
    {
        var time = new FakeTimeProvider();
        using var pool = new TieredMemoryPool(new TieredMemoryPoolOptions { IdleReleaseDelay = s_delay, TimeProvider = time, ThreadCacheMaxBuffers = 64 });
        for (int round = 0; round < 20; round++)
        {
            Burst(pool, 4096, 64);
        }

        Assert.Equal(64, pool.ThreadCacheCapacity(4096));
        for (int tick = 0; tick < 8; tick++)
        {
            Burst(pool, 1024, 4);
            time.Advance(s_delay / 4);
        }

        Assert.Equal(16, pool.ThreadCacheCapacity(4096));
    }

    [Fact]
    public void AClassWhoseBuffersAreAllRentedOutIsNotGivenBackForIdlenessAndKeepsItsCapacity()
    {
        // Idle means quiet with free buffers: a class holding all its buffers through the delay has nothing to give
        // back, and trimming it would only shrink its thread's capacity back to a quarter.
        var time = new FakeTimeProvider();
        using var pool = new TieredMemoryPool(new TieredMemoryPoolOptions { IdleReleaseDelay = s_delay, TimeProvider = time, ThreadCacheMaxBuffers = 64 });
        for (int round = 0; round < 20; round++)
        {
            Burst(pool, 4096, 64);
        }

        Assert.Equal(64, pool.ThreadCacheCapacity(4096));
        var held = new List<IDisposable>();
        while (HistogramRow(pool, "medium", 4096).Cached > 0)
        {
            held.Add(pool.Rent(4096));
        }

        for (int tick = 0; tick < 8; tick++)
        {
            Burst(pool, 1024, 4);
            time.Advance(s_delay / 4);
        }

        int capacity = pool.ThreadCacheCapacity(4096);
        Assert.True(capacity == 64, $"{held.Count} buffers held through two delays with none free: the class's capacity fell from 64 to {capacity}");
        held.ForEach(owner => owner.Dispose());
    }

    [Fact]
    public void MostLargeRentsJustAboveTheMmapThresholdBringAdviceToRaiseIt()
    {
        using var pool = new TieredMemoryPool();
        for (int i = 0; i < 600; i++)
        {
            pool.Rent(20_000).Dispose();
        }

        Assert.Contains(pool.GetAdvice(), hint => hint.Contains("MmapThreshold = 32768", StringComparison.Ordinal));
    }

    [Theory]
    [InlineData(16 * 1024, 2 * 1024 * 1024, 20_000)]
    [InlineData(4096, 8192, 5000)]
    [InlineData(512 * 1024, 1024 * 1024, 600_000)]
    public void TheSettingsTheMmapThresholdAdviceNamesMakeAPoolTogether(int mmapThreshold, int hugepageThreshold, int size)
    {
        var options = new TieredMemoryPoolOptions { MmapThreshold = mmapThreshold, HugepageThreshold = hugepageThreshold, EnableHugepages = false };
        string advice;
        using (var pool = new TieredMemoryPool(options))
        {
            for (int i = 0; i < 600; i++)
            {
                pool.Rent(size).Dispose();
            }

            advice = Assert.Single(pool.GetAdvice(), static hint => hint.Contains("MmapThreshold = ", StringComparison.Ordinal));
        }

        // Every "Setting = value" the advice names, applied together, as a reader would.
        foreach (Match setting in Regex.Matches(advice, @"(?<name>[A-Za-z]+) = (?<value>\d+)"))
        {
            typeof(TieredMemoryPoolOptions).GetProperty(setting.Groups["name"].Value)!.SetValue(options, int.Parse(setting.Groups["value"].Value, CultureInfo.InvariantCulture));
        }

        Assert.Equal(2 * mmapThreshold, options.MmapThreshold);
        Exception? refused = Record.Exception(() => new TieredMemoryPool(options).Dispose());
        Assert.True(refused is null, $"the advice \"{advice}\" makes no pool: {refused?.Message}");
    }

    [Fact]
    public void HugeBuffersOnAMachineWithoutReservedHugepagesBringAdviceToReserveThem()
    {
        using var pool = new TieredMemoryPool();
        using IDisposable huge = pool.Rent(8 * 1024 * 1024);

        bool advised = pool.GetAdvice().Any(hint => hint.Contains("nr_hugepages", StringComparison.Ordinal));
        Assert.Equal(HugePageInfo.Read().Total2MBPages == 0, advised);
    }

    [Fact]
    public void AQuietPoolGetsNoAdvice()
    {
        using var pool = new TieredMemoryPool();
        pool.Rent(100).Dispose();
        pool.Rent(20_000).Dispose();
        Assert.Empty(pool.GetAdvice());
    }

    private static long Latest(MetricCollector<long> collector, string owner, long classSize) =>
        collector.GetMeasurementSnapshot()
            .Last(measurement => Equals(measurement.Tags[PoolMetrics.OwnerTag], owner) && Equals(measurement.Tags[PoolMetrics.ClassSizeTag], classSize))
            .Value;

    private static SizeClassStatistics HistogramRow(TieredMemoryPool pool, string tier, int classSize) =>
        Assert.Single(pool.GetStatistics().SizeHistogram, row => row.Tier == tier && row.ClassSize == classSize);

    private static void Burst(TieredMemoryPool pool, int size, int count)
    {
        var held = new List<IDisposable>();
        for (int i = 0; i < count; i++)
        {
            held.Add(pool.Rent(size));
        }

        held.ForEach(owner => owner.Dispose());
    }
}
