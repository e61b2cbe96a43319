using System;
using System.Diagnostics;
using System.Threading;

namespace Zipora.Buffers.Tests;

/// <summary>
/// A clock stepped by years on real time, as a wall clock an administrator or NTP sets is. Stepped back, the ticks
/// resume once it has moved forward a period from where it landed, so idle memory still goes back, and nothing goes
/// back early. Stepped forward, it counts at most one tick early: memory returned before the step stays mapped for
/// three quarters of its delay in real time at least (the delay is measured on the pool's clock; see the README).
/// </summary>
[Collection(nameof(HugepageTests))]
public sealed class SteppedClockSafetyTests
{
    private static readonly TimeSpan s_delay = TimeSpan.FromMilliseconds(200);

    /// <summary>
    /// Before, the ticker waited for the clock to come back to the due times it had set before the step, and each
    /// pool's clock for it to pass its last tick again: a year without a tick, so nothing cached was ever released.
    /// </summary>
    [Fact]
    public void IdleMemoryStillGoesBackAfterTheClockStepsBackAYear()
    {
        var clock = new SteppingClock();
        using var pool = new TieredMemoryPool(new TieredMemoryPoolOptions { IdleReleaseDelay = s_delay, TimeProvider = clock });
        var arrays = new TieredArrayPool(new TieredArrayPoolOptions { IdleReleaseDelay = s_delay, TimeProvider = clock });

        // A few ticks on an honest clock first, so the ticker and the pools' clocks have marks the step goes behind.
        pool.Rent(100).Dispose();
        Thread.Sleep(3 * s_delay);
        clock.Step(TimeSpan.FromDays(-365));

        foreach (int size in new[] { 100, 4096, 100_000 })
        {
            pool.Rent(size).Dispose();
        }

        arrays.Return(arrays.Rent(1000));
        System.Buffers.IMemoryOwner<byte> trimmed = pool.Rent(100_000);
        OwnerRange range = SafetyCases.RangeOf(trimmed);
        trimmed.Dispose();
        pool.Trim();
        Assert.True(pool.GetStatistics().BytesAwaitingRelease > 0, "precondition: the trimmed region waits out its delay");

        // 25 delays of real time: a tick every 50 ms, and the pools give back at the fourth or fifth after the return.
        var waited = Stopwatch.StartNew();
        while (waited.Elapsed < 25 * s_delay && (pool.GetStatistics().BytesRetained > 0 || pool.GetStatistics().BytesAwaitingRelease > 0 || arrays.GetStatistics().BytesRetained > 0))
        {
            Thread.Sleep(20);
        }

        TieredMemoryPoolStatistics statistics = pool.GetStatistics();
        Assert.True(statistics.BytesRetained == 0, $"{statistics.BytesRetained} bytes still cached {waited.ElapsedMilliseconds} ms after the clock stepped back (delay {s_delay.TotalMilliseconds} ms)");
        Assert.True(statistics.BytesAwaitingRelease == 0, $"{statistics.BytesAwaitingRelease} bytes still awaiting their unmap {waited.ElapsedMilliseconds} ms after the clock stepped back");
        Assert.True(arrays.GetStatistics().BytesRetained == 0, $"the array pool still caches {arrays.GetStatistics().BytesRetained} bytes");
        Assert.False(ProcessMappings.IsMapped(range.Start, range.Length), $"the trimmed region {range} is still mapped");
    }

    /// <summary>
    /// The step back must not let a tick count early either: a region trimmed just after the step stays mapped for
    /// its delay (a second here), in real time, while the ticks resume.
    /// </summary>
    [Fact]
    public void AClockSteppedBackDoesNotShortenTheDelayOfMemoryReturnedAfterIt()
    {
        var clock = new SteppingClock();
        TimeSpan delay = TimeSpan.FromSeconds(1);
        using var pool = new TieredMemoryPool(new TieredMemoryPoolOptions { IdleReleaseDelay = delay, TimeProvider = clock });
        pool.Rent(100).Dispose();
        Thread.Sleep(delay / 2);
        clock.Step(TimeSpan.FromDays(-365));
        System.Buffers.IMemoryOwner<byte> trimmed = pool.Rent(100_000);
        OwnerRange range = SafetyCases.RangeOf(trimmed);
        trimmed.Dispose();
        var returned = Stopwatch.StartNew();
        pool.Trim();
        while (returned.Elapsed < 10 * delay && ProcessMappings.IsMapped(range.Start, range.Length))
        {
            Thread.Sleep(10);
        }

        TimeSpan mapped = returned.Elapsed;
        Assert.True(mapped >= delay, $"the region was unmapped {mapped.TotalMilliseconds} ms after its return, within its delay of {delay.TotalMilliseconds} ms");
        Assert.True(mapped < 10 * delay, $"the region was still mapped {mapped.TotalMilliseconds} ms after its return (delay {delay.TotalMilliseconds} ms)");
    }

    /// <summary>
    /// A forward step of a century, with a pool of a 40 ms delay on the same clock whose firings come every 10 ms: the
    /// first firing after the step ticks the slow pool too (its clock says a period has passed), but each tick after
    /// it waits a period of real time on the provider's timer, so the region returned before the step is unmapped no
    /// sooner than three periods (three quarters of its delay) of real time later.
    /// </summary>
    [Fact]
    public void AClockSteppedForwardCountsAtMostOneTickEarly()
    {
        var clock = new SteppingClock();
        TimeSpan delay = TimeSpan.FromSeconds(2);
        using var slow = new TieredMemoryPool(new TieredMemoryPoolOptions { IdleReleaseDelay = delay, TimeProvider = clock });
        using var fast = new TieredMemoryPool(new TieredMemoryPoolOptions { IdleReleaseDelay = TimeSpan.FromMilliseconds(40), TimeProvider = clock });
        fast.Rent(100).Dispose();
        System.Buffers.IMemoryOwner<byte> trimmed = slow.Rent(100_000);
        OwnerRange range = SafetyCases.RangeOf(trimmed);
        trimmed.Dispose();
        var returned = Stopwatch.StartNew();
        slow.Trim();
        clock.Step(TimeSpan.FromDays(36_525));
        while (returned.Elapsed < 10 * delay && ProcessMappings.IsMapped(range.Start, range.Length))
        {
            Thread.Sleep(10);
        }

        TimeSpan mapped = returned.Elapsed;
        Assert.True(mapped >= delay * 3 / 4, $"the region was unmapped {mapped.TotalMilliseconds} ms after its return, within three quarters of its delay of {delay.TotalMilliseconds} ms");
        Assert.True(mapped < 10 * delay, $"the region was still mapped {mapped.TotalMilliseconds} ms after its return (delay {delay.TotalMilliseconds} ms)");
    }

    /// <summary>
    /// A clock that reads <see cref="DateTimeOffset.MaxValue"/> for a while (a provider on the wall clock, set to its
    /// end) and then runs on from where it was: the ticks resume and the memory goes back. Before, the due times set
    /// while it read the end of time waited for the clock to come back there, and nothing was given back again.
    /// </summary>
    [Fact]
    public void IdleMemoryStillGoesBackAfterTheClockReadTheEndOfTimeForAWhile()
    {
        var clock = new SteppingClock();
        using var pool = new TieredMemoryPool(new TieredMemoryPoolOptions { IdleReleaseDelay = s_delay, TimeProvider = clock });
        pool.Rent(100).Dispose();
        Thread.Sleep(s_delay);
        clock.PinAt(DateTimeOffset.MaxValue.UtcTicks);
        Thread.Sleep(2 * s_delay);
        clock.Unpin();
        foreach (int size in new[] { 100, 4096, 100_000 })
        {
            pool.Rent(size).Dispose();
        }

        var waited = Stopwatch.StartNew();
        while (waited.Elapsed < 25 * s_delay && pool.GetStatistics().BytesRetained > 0)
        {
            Thread.Sleep(20);
        }

        Assert.True(pool.GetStatistics().BytesRetained == 0, $"{pool.GetStatistics().BytesRetained} bytes still cached {waited.ElapsedMilliseconds} ms after the clock came back from the end of time (delay {s_delay.TotalMilliseconds} ms)");
    }
}
