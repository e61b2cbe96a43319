using System;
using System.Threading;

namespace Zipora.Buffers.Tests;

/// <summary>
/// The idle ticker's timer is the user's <see cref="TimeProvider"/>'s. One that refuses a new due time by returning
/// false (as a disposed <see cref="ITimer"/> does) must not be taken as armed, and one whose dispose waits for its
/// callbacks must not be disposed from its own callback. Runs alone: it provokes background failures.
/// </summary>
[Collection(BackgroundFailureWatch.ProvokingTests)]
public sealed class RefusedTimerSafetyTests
{
    private static readonly TimeSpan s_delay = SafetyCases.IdleDelay;

    [Fact]
    public void ATimerThatRefusesANewDueTimeByReturningFalseIsReplacedAndTheIdleRegionStillGoesBack()
    {
        var clock = new HostileClock();
        using var pool = new TieredMemoryPool(new TieredMemoryPoolOptions { TimeProvider = clock, IdleReleaseDelay = s_delay });
        SafetyCases.ReturnOneLargeRegion(pool);
        long before = BackgroundFailures.Count;

        // The first firing re-arms the timer with Change, which returns false and changes nothing.
        clock.RefuseNextChangesSilently(1);
        SafetyCases.Advance(clock.Fake, 3 * s_delay);
        clock.Heal();
        long failures = BackgroundFailures.Count - before;
        BackgroundFailureWatch.Provoked(failures);

        long retained = pool.GetStatistics().Large.BytesRetained;
        Assert.True(retained == 0, $"three delays after its return the idle region is still retained ({retained} bytes, {pool.IdleTicks} ticks): the timer's refusal (Change returned false) was taken as armed, and the ticker never fired again");
        Assert.Equal(1, failures);
    }

    [Fact]
    public void ATimerWhoseDisposeWaitsForItsCallbacksIsNotDisposedOnItsOwnCallbackWhenItRefusesANewDueTime()
    {
        var clock = new HostileClock { DisposeWaitsForCallbacks = true };
        using var pool = new TieredMemoryPool(new TieredMemoryPoolOptions { TimeProvider = clock, IdleReleaseDelay = s_delay });
        SafetyCases.ReturnOneLargeRegion(pool);
        long before = BackgroundFailures.Count;

        // The first firing's Change throws: the ticker replaces the timer and disposes the refused one.
        clock.FailNextChanges(1);
        SafetyCases.Advance(clock.Fake, s_delay / 2);
        clock.Heal();
        bool disposed = SpinWait.SpinUntil(() => clock.TimersDisposed == 1, TimeSpan.FromSeconds(10));
        long failures = BackgroundFailures.Count - before;
        BackgroundFailureWatch.Provoked(failures);

        Assert.True(clock.DisposeWaitsTimedOut == 0, "the refused timer was disposed on its own callback: its dispose waited 5 s for the callback that called it (a provider whose dispose waits without a limit deadlocks the ticker there)");
        Assert.True(disposed, "the refused timer was never disposed");
        Assert.Equal(1, failures);

        SafetyCases.Advance(clock.Fake, 3 * s_delay);
        long retained = pool.GetStatistics().Large.BytesRetained;
        Assert.True(retained == 0, $"the replacement timer did not tick the pool: {retained} bytes still retained three delays on");
    }
}
