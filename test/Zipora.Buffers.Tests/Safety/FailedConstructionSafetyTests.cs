using System;
using System.Threading;

namespace Zipora.Buffers.Tests;

/// <summary>
/// A pool whose constructor throws partway (here its clock fails at one read; at the GC heap limit, any allocation)
/// leaves nothing behind: each tier takes a slot in every thread's table of caches when it is made, and a slot never
/// given back keeps every later thread's table as long as the highest slot ever taken. Each test runs in a process of
/// its own, where no other test's pools take or give back slots meanwhile.
/// </summary>
[Collection(BackgroundFailureWatch.ProvokingTests)]
public sealed class FailedConstructionSafetyTests
{
    // Enough reads to pass every read a constructor makes: the sweep ends with pools that were made whole.
    private const int ReadsToSweep = 8;

    [Fact]
    public void AMemoryPoolWhoseConstructorThrowsPartwayGivesBackEverySlotItsTiersTook()
    {
        if (IsolatedProcess.RunsElsewhere(typeof(FailedConstructionSafetyTests), nameof(AMemoryPoolWhoseConstructorThrowsPartwayGivesBackEverySlotItsTiersTook)))
        {
            return;
        }

        SweepAndCheck(static clock => new TieredMemoryPool(new TieredMemoryPoolOptions { TimeProvider = clock }).Dispose());
    }

    [Fact]
    public void AnArrayPoolWhoseConstructorThrowsPartwayGivesBackItsSlot()
    {
        if (IsolatedProcess.RunsElsewhere(typeof(FailedConstructionSafetyTests), nameof(AnArrayPoolWhoseConstructorThrowsPartwayGivesBackItsSlot)))
        {
            return;
        }

        // An array pool is never disposed: the one made whole gives its slot back when it is collected.
        SweepAndCheck(static clock => _ = new TieredArrayPool(new TieredArrayPoolOptions { TimeProvider = clock }));
    }

    private static void SweepAndCheck(Action<TimeProvider> makeAndDrop)
    {
        _ = TieredMemoryPool.Shared;
        _ = TieredArrayPool.Shared;
        (int slotBefore, int poolsBefore) = LowestFreeSlotAndTrackedPools();

        long backgroundFailures = BackgroundFailures.Count;
        int failed = 0;
        for (int failingRead = 1; failingRead <= ReadsToSweep; failingRead++)
        {
            var clock = new ClockFailingAtOneRead(failingRead);
            try
            {
                makeAndDrop(clock);
            }
            catch (InvalidOperationException error) when (error.Message == ClockFailingAtOneRead.Failure)
            {
                // The clock's own exception reaches the caller, unchanged.
                failed++;
            }
        }

        (int slotAfter, int poolsAfter) = LowestFreeSlotAndTrackedPools();

        // A pool made whole hands its clock to the idle ticker, whose reads fail at the failing read too; it reports them.
        BackgroundFailureWatch.ProvokedSince(backgroundFailures);
        Assert.True(failed >= 2, $"only {failed} of {ReadsToSweep} constructions failed: the sweep never failed one after its tiers were made");
        Assert.True(failed < ReadsToSweep, "every construction failed: the sweep never passed every read");
        Assert.Equal(slotBefore, slotAfter);
        Assert.Equal(poolsBefore, poolsAfter);
    }

    private static (int LowestFreeSlot, int LivePools) LowestFreeSlotAndTrackedPools()
    {
        // Pools made whole and dropped give their slots back from their finalizers.
        GC.Collect();
        GC.WaitForPendingFinalizers();
        GC.Collect();
        int slot = ThreadCacheSlots.Acquire();
        ThreadCacheSlots.Release(slot);
        return (slot, PoolMetrics.LivePools().Count);
    }

    /// <summary>A clock that fails its <c>failingRead</c>-th read only: a pool made whole keeps a clock that works.</summary>
    private sealed class ClockFailingAtOneRead(int failingRead) : TimeProvider
    {
        public const string Failure = "the clock failed at this read";

        private int _reads;

        public override long GetTimestamp() =>
            Interlocked.Increment(ref _reads) == failingRead ? throw new InvalidOperationException(Failure) : base.GetTimestamp();
    }
}
