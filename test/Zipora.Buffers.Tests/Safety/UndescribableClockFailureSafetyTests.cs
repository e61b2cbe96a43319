using System;
using System.Buffers;

namespace Zipora.Buffers.Tests;

/// <summary>
/// The report of a background failure that cannot be described (attack round 8): the exception comes from the user's
/// clock, and describing it for the event source is the user's code too. Runs alone: it provokes background failures
/// and listens to the pools' event source.
/// </summary>
[Collection(BackgroundFailureWatch.ProvokingTests)]
public sealed class UndescribableClockFailureSafetyTests
{
    private const int LargeSize = 100_000;
    private static readonly TimeSpan s_delay = SafetyCases.IdleDelay;

    [Fact]
    public void AClockFailureThatCannotBeDescribedDoesNotLeaveTheTimerCallbackWhileSomeoneListens()
    {
        var clock = new HostileClock { Undescribable = true };
        using var pool = new TieredMemoryPool(new TieredMemoryPoolOptions { TimeProvider = clock, IdleReleaseDelay = s_delay });
        using var recorder = new PoolEventRecorder();
        long before = BackgroundFailures.Count;
        Exception? escaped;
        try
        {
            clock.Broken = true;
            escaped = Record.Exception(() => SafetyCases.Advance(clock.Fake, s_delay));
        }
        finally
        {
            clock.Heal();
            BackgroundFailureWatch.ProvokedSince(before);
        }

        Assert.True(escaped is null, $"an exception left the idle ticker's timer callback (on a real timer, the process ends) because the clock's exception could not be described for the BackgroundWorkFailed event: {escaped}");
    }

    [Fact]
    public void ABufferReturnedToADisposedPoolWhileTheClockFailsIndescribablyUnderAListenerIsUnmappedOnceTheClockWorks()
    {
        var clock = new HostileClock { Undescribable = true };
        var pool = new TieredMemoryPool(SafetyCases.Options(OwnerMode.Default, clock));
        IMemoryOwner<byte> owner = pool.Rent(LargeSize);
        OwnerRange range = SafetyCases.RangeOf(owner);
        pool.Dispose();
        SafetyCases.Advance(clock.Fake, 3 * s_delay);
        using var recorder = new PoolEventRecorder();
        long before = BackgroundFailures.Count;
        Exception? fromDispose;
        try
        {
            clock.Broken = true;
            fromDispose = Record.Exception(owner.Dispose);
        }
        finally
        {
            clock.Heal();
            BackgroundFailureWatch.ProvokedSince(before);
        }

        Assert.True(fromDispose is null, $"a late return's Dispose threw because the pool's clock failed with an exception that could not be described for the BackgroundWorkFailed event: {fromDispose}");

        // The clock works from here on: the region waits out its delay and is unmapped.
        SafetyCases.Advance(clock.Fake, 4 * s_delay);
        TieredMemoryPoolStatistics statistics = pool.GetStatistics();
        Assert.True(
            statistics.BytesAwaitingRelease == 0 && !ProcessMappings.IsMapped(range.Start, range.Length),
            $"four delays after its return (the clock worked since), the region {range} of a disposed pool is still mapped ({statistics.BytesAwaitingRelease} bytes awaiting release, {pool.IdleTicks} ticks): the wake's report of the clock's failure threw, so the wake failed and left the releaser paused");
    }
}
