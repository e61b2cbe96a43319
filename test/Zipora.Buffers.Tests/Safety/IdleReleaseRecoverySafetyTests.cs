using System;
using System.Buffers;
using System.Collections.Generic;
using System.Runtime.CompilerServices;
using System.Threading;

namespace Zipora.Buffers.Tests;

/// <summary>
/// Attacks on "background work never ends the process" (BackgroundFailures): a failure is reported and skipped, and the
/// work must go on at its next turn once the clock or timer works again. Each test provokes failures on purpose, so the
/// collection runs alone and declares exactly the failures counted while it ran.
/// </summary>
[Collection(BackgroundFailureWatch.ProvokingTests)]
public sealed class IdleReleaseRecoverySafetyTests
{
    private const int LargeSize = 100_000;
    private static readonly TimeSpan s_delay = SafetyCases.IdleDelay;
    private static readonly TimeSpan s_period = s_delay / IdleClock.TicksPerDelay;

    [Fact]
    public void ATimerThatRefusesOneNewDueTimeDoesNotStopIdleReleaseOfThePoolsOnItsClockForGood()
    {
        var clock = new HostileClock();
        using var pool = new TieredMemoryPool(new TieredMemoryPoolOptions { TimeProvider = clock, IdleReleaseDelay = s_delay });
        var arrays = new TieredArrayPool(new TieredArrayPoolOptions { TimeProvider = clock, IdleReleaseDelay = s_delay });
        ReturnSomething(pool, arrays);
        Assert.True(pool.GetStatistics().Large.BytesRetained > 0, "the returned regions should be kept for reuse");
        long failuresBefore = BackgroundFailures.Count;

        // The timer refuses the due time of the first tick's re-arming, once; the clock itself never fails.
        clock.FailNextChanges(1);
        Exception? escaped = Record.Exception(() => SafetyCases.Advance(clock.Fake, s_period));
        long failures = BackgroundFailures.Count - failuresBefore;
        BackgroundFailureWatch.Provoked(failures);
        Assert.True(escaped is null, $"an exception left the timer's callback: {escaped}");
        Assert.Equal(1, clock.Thrown);
        Assert.Equal(1, failures);

        // Everything works from here on: within three delays the idle memory of both pools goes back.
        long ticksAfterTheFailure = pool.IdleTicks;
        SafetyCases.Advance(clock.Fake, 3 * s_delay);
        TieredMemoryPoolStatistics statistics = pool.GetStatistics();
        long arraysRetained = arrays.GetStatistics().BytesRetained;
        Assert.True(
            statistics.Large.BytesRetained == 0 && arraysRetained == 0,
            $"three delays after one refused re-arming (the clock and timer worked since), idle release has not resumed: the pool ticked {pool.IdleTicks - ticksAfterTheFailure} times, retains {statistics.Large.BytesRetained} region bytes, and the array pool retains {arraysRetained} bytes");
        GC.KeepAlive(arrays);
    }

    [Fact]
    public void OneFailedClockReadOnTheTimerAfterAQuietSpellDelaysTheNextTickByNoMoreThanAPeriod()
    {
        var clock = new HostileClock();

        // The clock's ticker exists (another pool used it) and has been quiet for an hour: nothing was queued.
        _ = IdleTicker.For(clock);
        clock.Fake.Advance(TimeSpan.FromHours(1));
        using var pool = new TieredMemoryPool(new TieredMemoryPoolOptions { TimeProvider = clock, IdleReleaseDelay = s_delay });
        ReturnSomething(pool, arrays: null);
        long failuresBefore = BackgroundFailures.Count;

        // The clock fails for the one firing of the pool's first tick, then works for good.
        clock.Broken = true;
        Exception? escaped = Record.Exception(() => clock.Fake.Advance(s_period + (s_period / 8)));
        clock.Heal();
        long failures = BackgroundFailures.Count - failuresBefore;
        BackgroundFailureWatch.Provoked(failures);
        Assert.True(escaped is null, $"an exception left the timer's callback: {escaped}");
        Assert.True(failures > 0, "the broken clock should have been reported");

        // "The reading before it, so nothing new falls due and the timer is armed a period on": three delays on, the
        // pool must have ticked and let its idle regions go.
        long ticks = pool.IdleTicks;
        for (int i = 0; i < 3 * IdleClock.TicksPerDelay; i++)
        {
            clock.Fake.Advance(s_period);
        }

        TieredMemoryPoolStatistics statistics = pool.GetStatistics();
        Assert.True(
            statistics.Large.BytesRetained == 0,
            $"three delays after a clock that failed for one firing (and worked since), the pool ticked {pool.IdleTicks - ticks} times and still retains {statistics.Large.BytesRetained} region bytes: the failed reading fell back to a stale one, and the timer was armed as far from it as the hour the ticker was quiet");
    }

    [Theory]
    [MemberData(nameof(SafetyCases.TiersInBothOwnerModes), MemberType = typeof(SafetyCases))]
    public void ALeakedBlockOfADisposedPoolWhoseWakeFailedIsReleasedOnceTheClockWorks(int size, OwnerMode mode)
    {
        var clock = new HostileClock();
        using TieredMemoryPool pool = SafetyCases.Pool(mode, clock);
        List<IMemoryOwner<byte>> holder = SafetyCases.RentAndDisposeThePool(pool, size);

        // Two delays with nothing waiting: the disposed pool's releaser pauses.
        SafetyCases.Advance(clock.Fake, 2 * s_delay);
        long ticksWhilePaused = pool.IdleTicks;
        SafetyCases.Advance(clock.Fake, s_delay);
        Assert.Equal(ticksWhilePaused, pool.IdleTicks);

        // The leak's wake reads the clock on the finalizer thread, where (only there) it throws.
        OwnerRange leaked = clock.LeakWhileTheWakeFailsOffThisThread(pool, holder);

        // The clock works on every thread from here on: the block waits out its quarantine and is unmapped.
        SafetyCases.Advance(clock.Fake, 5 * s_delay);
        TieredMemoryPoolStatistics statistics = pool.GetStatistics();
        Assert.True(
            statistics.BytesQuarantined == 0 && statistics.BytesAwaitingRelease == 0,
            $"five delays after a leak whose wake failed once (the clock worked since), the disposed pool still holds {statistics.BytesQuarantined} bytes in quarantine and {statistics.BytesAwaitingRelease} awaiting release (its releaser ticked {pool.IdleTicks - ticksWhilePaused} times); the leaked block {leaked} is mapped: {ProcessMappings.IsMapped(leaked.Start, leaked.Length)}");
    }

    [Fact]
    public void ABufferReturnedToADisposedPoolWhileTheClockThrowsIsUnmappedOnceTheClockWorks()
    {
        var clock = new HostileClock();
        var pool = new TieredMemoryPool(SafetyCases.Options(OwnerMode.Default, clock));
        IMemoryOwner<byte> owner = pool.Rent(LargeSize);
        OwnerRange range = SafetyCases.RangeOf(owner);
        pool.Dispose();
        SafetyCases.Advance(clock.Fake, 3 * s_delay);

        // The return wakes the paused releaser, on the caller's thread, while the clock throws.
        long before = BackgroundFailures.Count;
        clock.Broken = true;
        Exception? fromDispose = Record.Exception(owner.Dispose);
        clock.Heal();
        BackgroundFailureWatch.ProvokedSince(before);
        Assert.True(fromDispose is null, $"the owner's Dispose threw because the pool's clock did: {fromDispose}");
        Assert.True(
            ProcessMappings.IsMapped(range.Start, range.Length),
            "a region returned to a disposed pool must stay mapped for a delay");

        // The wake read no clock, so its releaser may tick early: the mapping still waits its whole delay.
        SafetyCases.Advance(clock.Fake, s_delay * 0.9);
        Assert.True(
            ProcessMappings.IsMapped(range.Start, range.Length),
            "a region returned to a disposed pool was unmapped before its delay after a wake whose clock read failed");

        SafetyCases.Advance(clock.Fake, s_delay * 3.1);
        TieredMemoryPoolStatistics statistics = pool.GetStatistics();
        Assert.True(
            statistics.BytesAwaitingRelease == 0 && !ProcessMappings.IsMapped(range.Start, range.Length),
            $"four delays after its return (the clock worked since), the region {range} of a disposed pool is still mapped ({statistics.BytesAwaitingRelease} bytes awaiting release)");
    }

    [Fact]
    public void APoolDroppedWithoutDisposeWhoseWakeFailsOffTheTimerStillGivesItsMemoryBack()
    {
        var clock = new HostileClock();
        IdleTicker ticker = IdleTicker.For(clock);
        List<OwnerRange> ranges;
        long failures;

        // The finalizer thread is held first, then the pool is dropped, so its releaser's next tick finds it collected
        // and pauses before the finalizer's work item disposes it. The events are never disposed: the finalizer thread
        // may still be leaving its wait when the test ends.
        var entered = new ManualResetEventSlim();
        var release = new ManualResetEventSlim();
        MakeAFinalizerBlocker(entered, release);
        try
        {
            DropThePoolWhileTheFinalizerIsHeld(clock, ticker, entered, release, out ranges, out failures);
        }
        finally
        {
            release.Set();
        }

        // The clock works from here on: the dropped pool's regions wait out their delay and are unmapped.
        for (int i = 0; i < 4; i++)
        {
            SafetyCases.Advance(clock.Fake, s_delay);
            SafetyCases.CollectEverything();
        }

        List<OwnerRange> stillMapped = ranges.FindAll(static range => ProcessMappings.IsMapped(range.Start, range.Length));
        Assert.True(
            stillMapped.Count == 0,
            $"four delays after a dropped pool's disposal failed {failures} times on a clock read off the timer (the clock worked since), {stillMapped.Count} of its {ranges.Count} cached regions are still mapped, and its releaser is {(ticker.Scheduled == 0 ? "not" : "still")} scheduled: {string.Join(", ", stillMapped)}");
    }

    [Fact]
    public void TimerFiringsOnTwoThreadsAtOnceWhileTheClockThrowsNeitherEscapeNorDeadlockAndIdleReleaseResumes()
    {
        var clock = new HostileClock();
        using var pool = new TieredMemoryPool(new TieredMemoryPoolOptions { TimeProvider = clock, IdleReleaseDelay = s_delay });
        var arrays = new TieredArrayPool(new TieredArrayPoolOptions { TimeProvider = clock, IdleReleaseDelay = s_delay });
        long failuresBefore = BackgroundFailures.Count;
        try
        {
            // For four delays: reads fail now and then, every firing is doubled on two threads, rents and returns go on.
            clock.FailEveryNthRead(2);
            var random = new Random(7);
            for (int round = 0; round < 64; round++)
            {
                ReturnSomething(pool, arrays);
                clock.Fake.Advance(TimeSpan.FromMilliseconds(200 + random.Next(600)));
                clock.FireEveryTimerConcurrently(2);
                string? negative = SafetyCases.NegativeFigures(pool.GetStatistics());
                Assert.True(negative is null, $"round {round}: negative figures: {negative}");
            }
        }
        finally
        {
            clock.Heal();
            BackgroundFailureWatch.ProvokedSince(failuresBefore);
        }

        Assert.True(clock.Thrown > 0, "the clock never threw");
        SafetyCases.Advance(clock.Fake, 3 * s_delay);
        long regions = pool.GetStatistics().Large.BytesRetained;
        long cachedArrays = arrays.GetStatistics().BytesRetained;
        Assert.True(regions == 0 && cachedArrays == 0, $"three delays after the clock behaved again, the pool retains {regions} region bytes and the array pool {cachedArrays} bytes");
        GC.KeepAlive(arrays);
    }

    private static void DropThePoolWhileTheFinalizerIsHeld(HostileClock clock, IdleTicker ticker, ManualResetEventSlim entered, ManualResetEventSlim release, out List<OwnerRange> ranges, out long failures)
    {
        for (int i = 0; i < 100 && !entered.IsSet; i++)
        {
            GC.Collect();
            _ = entered.Wait(TimeSpan.FromMilliseconds(100));
        }

        Assert.True(entered.IsSet, "the finalizer thread never ran the blocker");
        ranges = SafetyCases.DropAPoolWithCachedRegions(clock);
        GC.Collect();
        SafetyCases.Advance(clock.Fake, s_period);
        Assert.Equal(0, ticker.Scheduled);

        // The work item's wake reads the clock on a pool thread, where (only there) it throws.
        long failuresBefore = BackgroundFailures.Count;
        clock.FailOffThisThread();
        release.Set();
        GC.WaitForPendingFinalizers();
        SpinWait.SpinUntil(() => BackgroundFailures.Count != failuresBefore, TimeSpan.FromSeconds(10));
        Thread.Sleep(200);
        clock.Heal();
        failures = BackgroundFailures.Count - failuresBefore;
        BackgroundFailureWatch.Provoked(failures);
        Assert.True(failures > 0, "the setup did not make the dropped pool's disposal read the clock off the timer");
    }

    private static void ReturnSomething(TieredMemoryPool pool, TieredArrayPool? arrays)
    {
        for (int i = 0; i < 4; i++)
        {
            using IMemoryOwner<byte> owner = pool.Rent(LargeSize);
            owner.Memory.Span[0] = 1;
            if (arrays is not null)
            {
                byte[] array = arrays.Rent(LargeSize);
                arrays.Return(array);
            }
        }
    }

    [MethodImpl(MethodImplOptions.NoInlining)]
    private static void MakeAFinalizerBlocker(ManualResetEventSlim entered, ManualResetEventSlim release) =>
        GC.KeepAlive(new FinalizerBlocker(entered, release));

    /// <summary>Holds the finalizer thread in its finalizer until released (at most 30 s).</summary>
    private sealed class FinalizerBlocker(ManualResetEventSlim entered, ManualResetEventSlim release)
    {
        ~FinalizerBlocker()
        {
            entered.Set();
            _ = release.Wait(TimeSpan.FromSeconds(30));
        }
    }
}
