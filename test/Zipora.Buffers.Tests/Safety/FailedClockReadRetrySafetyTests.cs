using System;
using System.Buffers;
using System.Collections.Generic;

namespace Zipora.Buffers.Tests;

/// <summary>
/// The idle ticker's retry after a failed clock read (attack round 8): a start whose clock read throws, on a clock
/// shared with a pool of a longer period, and a firing whose two reads fail in turn. The clock works again right after
/// each failure; the pools on it must tick within about their own delay.
/// </summary>
[Collection(BackgroundFailureWatch.ProvokingTests)]
public sealed class FailedClockReadRetrySafetyTests
{
    private const int LargeSize = 100_000;
    private static readonly TimeSpan s_delay = SafetyCases.IdleDelay;
    private static readonly TimeSpan s_longDelay = TimeSpan.FromHours(4);

    [Fact]
    public void ALateReturnWhoseWakeReadFailedOnceIsUnmappedWithinAFewDelaysThoughAPoolWithAnHourLongPeriodSharesTheClock()
    {
        var clock = new HostileClock();

        // A live pool with a four-hour delay (an hour's period) on the same clock: the ticker's timer waits for it.
        using var hourly = new TieredMemoryPool(new TieredMemoryPoolOptions { TimeProvider = clock, IdleReleaseDelay = s_longDelay });
        var pool = new TieredMemoryPool(SafetyCases.Options(OwnerMode.Default, clock));
        IMemoryOwner<byte> owner = pool.Rent(LargeSize);
        OwnerRange range = SafetyCases.RangeOf(owner);
        pool.Dispose();
        SafetyCases.Advance(clock.Fake, 3 * s_delay);
        long ticksWhilePaused = pool.IdleTicks;

        // The late return wakes the paused releaser; its one clock read throws, and the clock works from then on.
        long before = BackgroundFailures.Count;
        clock.FailNextReads(1);
        Exception? fromDispose = Record.Exception(owner.Dispose);
        clock.Heal();
        long failures = BackgroundFailures.Count - before;
        BackgroundFailureWatch.Provoked(failures);
        Assert.True(fromDispose is null, $"the owner's Dispose threw: {fromDispose}");
        Assert.Equal(1, failures);

        SafetyCases.Advance(clock.Fake, 4 * s_delay);
        TieredMemoryPoolStatistics statistics = pool.GetStatistics();
        Assert.True(
            statistics.BytesAwaitingRelease == 0 && !ProcessMappings.IsMapped(range.Start, range.Length),
            $"four delays after a late return whose wake read the clock once in vain (the clock worked since), the disposed pool ticked {pool.IdleTicks - ticksWhilePaused} times and its region {range} is still mapped ({statistics.BytesAwaitingRelease} bytes awaiting release): the woken releaser waits for the timer armed for the hour-long pool's tick");
        GC.KeepAlive(hourly);
    }

    [Fact]
    public void APoolMadeAfterAWakeWhoseReadFailedTicksWithinItsDelayThoughTheRetryWasArmedAnHourOn()
    {
        var clock = new HostileClock();
        IdleTicker ticker = IdleTicker.For(clock);

        // A pool with an hour's period is disposed with a buffer still rented, and pauses: the ticker's queue is empty.
        var hourly = new TieredMemoryPool(new TieredMemoryPoolOptions { TimeProvider = clock, IdleReleaseDelay = s_longDelay });
        IMemoryOwner<byte> owner = hourly.Rent(LargeSize);
        hourly.Dispose();
        AdvanceInEighthsOfAnHour(clock, 3 * s_longDelay);
        Assert.Equal(0, ticker.Scheduled);

        // Its late return wakes it with a clock read that throws, once: the timer is armed to read again an hour on.
        long before = BackgroundFailures.Count;
        clock.FailNextReads(1);
        owner.Dispose();
        clock.Heal();
        long failures = BackgroundFailures.Count - before;
        BackgroundFailureWatch.Provoked(failures);
        Assert.Equal(1, failures);

        // The clock works from here on. A pool with a 10 s delay is made (its start reads the clock fine) and caches regions.
        using var pool = new TieredMemoryPool(SafetyCases.Options(OwnerMode.Default, clock));
        var arrays = new TieredArrayPool(new TieredArrayPoolOptions { TimeProvider = clock, IdleReleaseDelay = s_delay });
        for (int i = 0; i < 4; i++)
        {
            using IMemoryOwner<byte> rented = pool.Rent(LargeSize);
            rented.Memory.Span[0] = 1;
            arrays.Return(arrays.Rent(LargeSize));
        }

        Assert.True(pool.GetStatistics().Large.BytesRetained > 0, "the returned regions should be kept for reuse");
        SafetyCases.Advance(clock.Fake, 3 * s_delay);
        long retained = pool.GetStatistics().Large.BytesRetained;
        long arraysRetained = arrays.GetStatistics().BytesRetained;
        Assert.True(
            retained == 0 && arraysRetained == 0,
            $"three delays after they were made on a clock that has worked since, a pool with a 10 s delay ticked {pool.IdleTicks} times and retains {retained} region bytes, and an array pool retains {arraysRetained} bytes: the failed wake's retry, armed an hour on and marked so no start moves it, holds back every pool on the clock");
        GC.KeepAlive(arrays);
    }

    [Fact]
    public void AClockWhoseReadsFailInTurnDoesNotSpinTheTimerAtAMillisecond()
    {
        var clock = new HostileClock();
        using var pool = new TieredMemoryPool(new TieredMemoryPoolOptions { TimeProvider = clock, IdleReleaseDelay = s_delay });
        long before = BackgroundFailures.Count;
        int thrownBefore = clock.Thrown;
        Exception? escaped;
        try
        {
            // Every other read throws, for two delays: each firing's first read may fail and its second work.
            // One read of the test's own between two delays shifts which of a firing's reads fail.
            clock.FailEveryNthRead(2);
            escaped = Record.Exception(() => AdvanceByMilliseconds(clock, s_delay));
            _ = Record.Exception(() => clock.GetTimestamp());
            escaped ??= Record.Exception(() => AdvanceByMilliseconds(clock, s_delay));
        }
        finally
        {
            clock.Heal();
            BackgroundFailureWatch.ProvokedSince(before);
        }

        Assert.True(escaped is null, $"an exception left the timer's callback: {escaped}");
        int thrown = clock.Thrown - thrownBefore;

        // "A reading that throws ... has the timer read the clock again a period on": two delays are eight periods, so a
        // few failed reads each at most (the test's own read one more), not one per millisecond.
        Assert.True(
            thrown <= 4 * 2 * IdleClock.TicksPerDelay,
            $"in two delays of a clock failing every other read, it threw {thrown} times and the pool ticked {pool.IdleTicks} times: the timer fires again and again a millisecond apart, each firing's first read failing and its second arming the timer for the overdue releaser at once");
    }

    /// <summary>Moves the fake clock on a millisecond at a time, as a real clock runs under the timer.</summary>
    [Fact]
    public void ALivePoolKeepsTickingWhenALateReturnDuringOneOfItsTicksFailsToReadTheClockForAPoolOfAnHoursPeriod()
    {
        var clock = new ScriptedReadClock();
        TimeSpan period = s_delay / IdleClock.TicksPerDelay;

        // A pool with an hour's period, disposed with a buffer still out, pauses once nothing waits.
        var hourly = new TieredMemoryPool(new TieredMemoryPoolOptions { TimeProvider = clock, IdleReleaseDelay = s_longDelay });
        IMemoryOwner<byte> late = hourly.Rent(LargeSize);
        hourly.Dispose();
        for (int i = 0; i < 96; i++)
        {
            clock.Fake.Advance(TimeSpan.FromMinutes(7.5));
        }

        // A live pool with a 10 s delay, with regions cached, and up to just before its first tick.
        using var pool = new TieredMemoryPool(SafetyCases.Options(OwnerMode.Default, clock));
        for (int i = 0; i < 4; i++)
        {
            using IMemoryOwner<byte> rented = pool.Rent(LargeSize);
            rented.Memory.Span[0] = 1;
        }

        clock.Fake.Advance(period - TimeSpan.FromMilliseconds(1));

        // Its first tick: the firing reads the clock (1), the tick reads it (2); there, on the timer's thread, the late
        // return to the hourly pool wakes its releaser, whose one read (3) throws. The clock works from then on.
        long before = BackgroundFailures.Count;
        Exception? fromReturn = null;
        clock.RunAtRead(2, () => fromReturn = Record.Exception(late.Dispose));
        clock.FailAtRead(3);
        Exception? escaped = Record.Exception(() => clock.Fake.Advance(TimeSpan.FromMilliseconds(1)));
        long failures = BackgroundFailures.Count - before;
        BackgroundFailureWatch.Provoked(failures);
        Assert.True(clock.ScriptDone, "the script did not run: the tick read the clock otherwise than planned");
        Assert.True(escaped is null && fromReturn is null, $"an exception left the timer's callback ({escaped}) or the late return ({fromReturn})");
        Assert.Equal(1, failures);

        long ticks = pool.IdleTicks;
        SafetyCases.Advance(clock.Fake, 3 * s_delay);
        long retained = pool.GetStatistics().Large.BytesRetained;
        Assert.True(
            retained == 0,
            $"three delays after one failed clock read in another pool's wake (the clock worked since), the live pool with a 10 s delay ticked {pool.IdleTicks - ticks} times and retains {retained} region bytes: the wake armed the retry an hour on (the period of the hourly pool, first in the queue while the live one ticked) and marked it so that the tick's own re-arming could not move it");
    }

    [Fact]
    public void ALeakedBlockOfADisposedPoolWhoseWakeFailedLeavesTheQuarantineOnceTheClockWorksThoughAPoolOfAnHoursPeriodSharesTheClock()
    {
        var clock = new HostileClock();
        using var hourly = new TieredMemoryPool(new TieredMemoryPoolOptions { TimeProvider = clock, IdleReleaseDelay = s_longDelay });
        using TieredMemoryPool pool = SafetyCases.Pool(OwnerMode.Default, clock);
        List<IMemoryOwner<byte>> holder = SafetyCases.RentAndDisposeThePool(pool, LargeSize);
        SafetyCases.Advance(clock.Fake, 3 * s_delay);
        long ticksWhilePaused = pool.IdleTicks;

        // The leak's wake reads the clock on the finalizer thread, where (only there) it throws.
        OwnerRange leaked = clock.LeakWhileTheWakeFailsOffThisThread(pool, holder);

        SafetyCases.Advance(clock.Fake, 5 * s_delay);
        TieredMemoryPoolStatistics statistics = pool.GetStatistics();
        Assert.True(
            statistics.BytesQuarantined == 0 && statistics.BytesAwaitingRelease == 0,
            $"five delays after a leak whose wake failed once (the clock worked since), the disposed pool ticked {pool.IdleTicks - ticksWhilePaused} times and holds {statistics.BytesQuarantined} bytes in quarantine and {statistics.BytesAwaitingRelease} awaiting release (the leaked block {leaked}): its releaser waits for the timer armed for the hourly pool");
        GC.KeepAlive(hourly);
    }

    private static void AdvanceByMilliseconds(HostileClock clock, TimeSpan by)
    {
        for (long i = 0; i < (long)by.TotalMilliseconds; i++)
        {
            clock.Fake.Advance(TimeSpan.FromMilliseconds(1));
        }
    }

    private static void AdvanceInEighthsOfAnHour(HostileClock clock, TimeSpan by)
    {
        TimeSpan step = TimeSpan.FromMinutes(7.5);
        for (long i = 0; i < by.Ticks / step.Ticks; i++)
        {
            clock.Fake.Advance(step);
        }
    }
}
