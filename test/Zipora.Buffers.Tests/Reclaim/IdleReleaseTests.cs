using System;
using System.Buffers;
using System.Collections.Generic;
using Microsoft.Extensions.Time.Testing;

namespace Zipora.Buffers.Tests;

public sealed class IdleReleaseTests
{
    private static readonly TimeSpan s_delay = TimeSpan.FromSeconds(10);

    [Fact]
    public void MemoryIdleForTheWholeDelayIsGivenBackAndNotBefore()
    {
        var time = new FakeTimeProvider();
        using var pool = new TieredMemoryPool(new TieredMemoryPoolOptions { TimeProvider = time, IdleReleaseDelay = s_delay });
        RentAndReturn(pool, [100, 8192, 100_000, 6_000_000], count: 20);
        long retained = pool.GetStatistics().BytesRetained;
        Assert.True(retained > 6_000_000);

        time.Advance(s_delay / 2);
        Assert.Equal(retained, pool.GetStatistics().BytesRetained);

        // The delay counts in ticks of a quarter delay, so idle memory goes within 1.25 delays, plus one tick for a
        // slab tier to notice it has gone quiet.
        for (int tick = 0; tick < 8; tick++)
        {
            time.Advance(s_delay / 4);
        }

        TieredMemoryPoolStatistics statistics = pool.GetStatistics();
        Assert.Equal(0, statistics.BytesRetained);
    }

    /// <summary>
    /// Every tier gives its idle memory back within one tick (a quarter delay) after the delay, wherever in a tick's
    /// period its last use fell, and not a moment before: the ticks find a use within a period, and a quiet span is
    /// counted from the first tick that found the use (before, the slab tiers waited a tick more, up to 1.5 delays).
    /// </summary>
    [Theory]
    [InlineData(0.1)]
    [InlineData(0.5)]
    [InlineData(0.9)]
    public void IdleMemoryIsGivenBackWithinATickAfterTheDelayWhereverItsLastUseFell(double phaseOfAPeriod)
    {
        var time = new FakeTimeProvider();
        using var pool = new TieredMemoryPool(new TieredMemoryPoolOptions { TimeProvider = time, IdleReleaseDelay = SafetyCases.IdleDelay });
        TimeSpan period = SafetyCases.IdleDelay / 4;
        time.Advance(period * phaseOfAPeriod);
        RentAndReturn(pool, [100, 8192, 100_000, 6_000_000], count: 20);
        long retained = pool.GetStatistics().BytesRetained;

        SafetyCases.Advance(time, SafetyCases.IdleDelay - TimeSpan.FromMilliseconds(1));
        TieredMemoryPoolStatistics early = pool.GetStatistics();
        Assert.Equal(retained, early.BytesRetained);

        SafetyCases.Advance(time, period + TimeSpan.FromMilliseconds(1));
        TieredMemoryPoolStatistics late = pool.GetStatistics();
        Assert.True(late.BytesRetained == 0, $"retained a delay and a period after the last use: {late}");
    }

    [Fact]
    public void SteadyTrafficKeepsItsCachedMemory()
    {
        var time = new FakeTimeProvider();
        using var pool = new TieredMemoryPool(new TieredMemoryPoolOptions { TimeProvider = time, IdleReleaseDelay = s_delay });
        RentAndReturn(pool, [100, 8192, 100_000, 6_000_000], count: 4);
        long mapsBefore = pool.GetStatistics().MmapCalls;

        for (int tick = 0; tick < 40; tick++)
        {
            RentAndReturn(pool, [100, 8192, 100_000, 6_000_000], count: 4);
            time.Advance(s_delay / 4);
        }

        TieredMemoryPoolStatistics statistics = pool.GetStatistics();
        Assert.Equal(mapsBefore, statistics.MmapCalls);
        Assert.Equal(0, statistics.MunmapCalls);
        Assert.Equal(4, statistics.Large.CacheMisses);
        Assert.Equal(4, statistics.Huge.CacheMisses);
    }

    [Fact]
    public void IdleMemoryAboveTheGlobalCapIsTrimmedAtTheNextTickWithoutWaitingForTheDelay()
    {
        var time = new FakeTimeProvider();
        using var pool = new TieredMemoryPool(new TieredMemoryPoolOptions { TimeProvider = time, IdleReleaseDelay = TimeSpan.FromMinutes(10), MaxRetainedBytes = 4 * 1024 * 1024 });
        RentAndReturn(pool, [100_000], count: 8);
        RentAndReturn(pool, [6_000_000], count: 1);
        Assert.True(pool.GetStatistics().BytesRetained > 4 * 1024 * 1024);

        time.Advance(TimeSpan.FromMinutes(10) / 4);
        Assert.InRange(pool.GetStatistics().BytesRetained, 0, 4 * 1024 * 1024);
    }

    [Fact]
    public void AnInfiniteDelayTurnsBackgroundReleaseOff()
    {
        var time = new FakeTimeProvider();
        using var pool = new TieredMemoryPool(new TieredMemoryPoolOptions { TimeProvider = time, IdleReleaseDelay = System.Threading.Timeout.InfiniteTimeSpan });
        RentAndReturn(pool, [100_000], count: 2);
        time.Advance(TimeSpan.FromHours(1));
        Assert.Equal(2 * 114_688, pool.GetStatistics().Large.BytesRetained);
    }

    [Theory]
    [InlineData(0)]
    [InlineData(-5)]
    public void ANonPositiveDelayIsRejected(int seconds)
    {
        var error = Assert.Throws<ArgumentException>(() => new TieredMemoryPool(new TieredMemoryPoolOptions { IdleReleaseDelay = TimeSpan.FromSeconds(seconds) }));
        Assert.Equal(nameof(TieredMemoryPoolOptions.IdleReleaseDelay), error.ParamName);
    }

    private static void RentAndReturn(TieredMemoryPool pool, int[] sizes, int count)
    {
        var owners = new List<IMemoryOwner<byte>>();
        foreach (int size in sizes)
        {
            for (int i = 0; i < count; i++)
            {
                IMemoryOwner<byte> owner = pool.Rent(size);
                owner.Memory.Span[0] = 1;
                owners.Add(owner);
            }
        }

        owners.ForEach(owner => owner.Dispose());
    }
}
