using System;
using System.Threading;
using Microsoft.Extensions.Time.Testing;

namespace Zipora.Buffers.Tests;

/// <summary>
/// An exited thread's slot holding a region parked more than a delay ago (an idle delay under four ticks, where a live
/// slot is emptied only once its region has waited it out): its retire unmaps the region, and a custom allocator whose
/// unmap throws (its bug, passed on) must not have the slot's counts folded into the retired ones while the slot stays
/// registered, where the next retire folds them again: the thread's rent and return then counted twice for good.
/// </summary>
[Collection(BackgroundFailureWatch.ProvokingTests)]
public sealed class RetiredSlotUnmapThatThrowsSafetyTests
{
    private const int RegionSize = 128 * 1024;

    // Under four ticks of the idle clock (its period is at least 10 ms): a slot is idle only once its region waited out the delay.
    private static readonly TimeSpan s_shortDelay = TimeSpan.FromMilliseconds(20);

    [Fact]
    public void AnUnmapThatThrowsInAnExitedThreadsRetireCountsItsRentOnce()
    {
        var allocator = new LiveMappingsAllocator();
        var time = new FakeTimeProvider();
        TieredMemoryPoolOptions options = allocator.PoolOptions(OwnerMode.Default, time);
        options.IdleReleaseDelay = s_shortDelay;
        using var pool = new TieredMemoryPool(options);
        TimeSpan period = s_shortDelay / 2;

        using var parked = new ManualResetEventSlim();
        using var exit = new ManualResetEventSlim();
        var thread = new Thread(() =>
        {
            pool.Rent(RegionSize).Dispose();
            parked.Set();
            exit.Wait();
        });
        thread.Start();
        Assert.True(parked.Wait(TimeSpan.FromSeconds(10)), "the thread never parked its region");

        // Two ticks with the thread alive: its slot is not idle yet (the region has not waited out the delay).
        time.Advance(period);
        time.Advance(period);
        exit.Set();
        thread.Join();
        Assert.Single(allocator.Live());

        var bug = new AllocatorBugOnce();
        allocator.BeforeUnmap = bug.Throw;

        // The third tick retires the exited thread's slot, whose region has now waited out the delay: unmapped, and it throws.
        long failuresBefore = BackgroundFailures.Count;
        time.Advance(period);
        allocator.BeforeUnmap = null;
        BackgroundFailureWatch.ProvokedSince(failuresBefore);
        Assert.True(bug.Thrown == 1, $"the retire never unmapped the region: the test proves nothing\n{pool.GetStatistics()}");

        AssertCountedOnce(pool.GetStatistics().Large, "right after the unmap threw");
        for (int tick = 0; tick < 8; tick++)
        {
            time.Advance(period);
        }

        TieredMemoryPoolStatistics after = pool.GetStatistics();
        AssertCountedOnce(after.Large, "once the allocator behaved again");
        Assert.True(allocator.Live().Length == 0, $"{allocator.Live().Length} mappings left\n{after}");
        Assert.Equal(0, after.BytesAwaitingRelease);
    }

    private static void AssertCountedOnce(TierStatistics large, string when)
    {
        Assert.True(large.Rents == 1 && large.Returns == 1 && large.BytesRequested == RegionSize, $"{when}: one rent and return of {RegionSize} bytes, counted as {large}");
    }
}
