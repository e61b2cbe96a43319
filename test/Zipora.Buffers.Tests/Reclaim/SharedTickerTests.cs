using System;
using System.Collections.Generic;

namespace Zipora.Buffers.Tests;

/// <summary>Every pool on one clock shares one timer, and each still ticks at its own period.</summary>
public sealed class SharedTickerTests
{
    [Fact]
    public void TenThousandIdleArrayPoolsCostOneTimer()
    {
        var time = new CountingTimeProvider();
        var pools = new List<TieredArrayPool>();
        for (int i = 0; i < 10_000; i++)
        {
            pools.Add(new TieredArrayPool(new TieredArrayPoolOptions { TimeProvider = time }));
        }

        Assert.Equal(1, time.TimersCreated);
        GC.KeepAlive(pools);
    }

    [Fact]
    public void MemoryPoolsShareTheTimerOfTheirClock()
    {
        var time = new CountingTimeProvider();
        var pools = new List<TieredMemoryPool>();
        for (int i = 0; i < 100; i++)
        {
            pools.Add(new TieredMemoryPool(new TieredMemoryPoolOptions { TimeProvider = time }));
            pools.Add(new TieredMemoryPool(new TieredMemoryPoolOptions { TimeProvider = time, IdleReleaseDelay = TimeSpan.FromSeconds(1 + i) }));
        }

        Assert.Equal(1, time.TimersCreated);
        foreach (TieredMemoryPool pool in pools)
        {
            pool.Dispose();
        }
    }

    [Fact]
    public void EachPoolTicksAtItsOwnPeriodOnTheSharedTimer()
    {
        var time = new CountingTimeProvider();
        using var fast = new TieredMemoryPool(new TieredMemoryPoolOptions { TimeProvider = time, IdleReleaseDelay = TimeSpan.FromMilliseconds(40) });
        using var slow = new TieredMemoryPool(new TieredMemoryPoolOptions { TimeProvider = time, IdleReleaseDelay = TimeSpan.FromMilliseconds(400) });
        for (int step = 0; step < 40; step++)
        {
            time.Advance(TimeSpan.FromMilliseconds(10));
        }

        // Periods of 10 and 100 ms over 400 ms, each tick on time.
        Assert.Equal(40, fast.IdleTicks);
        Assert.Equal(4, slow.IdleTicks);
    }

    [Fact]
    public void APoolCreatedBetweenTicksTicksNoEarlierThanAPeriodAndAtMostAnEighthOfOneLate()
    {
        var time = new CountingTimeProvider();
        using var first = new TieredMemoryPool(new TieredMemoryPoolOptions { TimeProvider = time, IdleReleaseDelay = TimeSpan.FromMilliseconds(400) });
        time.Advance(TimeSpan.FromMilliseconds(30));
        using var second = new TieredMemoryPool(new TieredMemoryPoolOptions { TimeProvider = time, IdleReleaseDelay = TimeSpan.FromMilliseconds(400) });

        // Periods of 100 ms: the first pool ticks at 100 ms; the second, made at 30 ms, shares the first's firings
        // on the grid of 12.5 ms, so it ticks at 137.5 ms, not at 129 ms.
        time.Advance(TimeSpan.FromMilliseconds(99));
        Assert.Equal(1, first.IdleTicks);
        Assert.Equal(0, second.IdleTicks);
        time.Advance(TimeSpan.FromMilliseconds(8.5));
        Assert.Equal(1, second.IdleTicks);
        Assert.Equal(1, time.TimersCreated);
    }
}
