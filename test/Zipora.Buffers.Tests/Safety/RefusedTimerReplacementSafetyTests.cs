using System;
using System.Threading;

namespace Zipora.Buffers.Tests;

/// <summary>
/// The idle ticker's refused timers (attack round 10, on commit eb9938e): a timer whose Change returns false or throws
/// is replaced by a new one and disposed on a thread-pool thread. The replacement may fail, the disposal may throw,
/// and the retired timers may keep firing. Runs alone: it provokes background failures.
/// </summary>
[Collection(BackgroundFailureWatch.ProvokingTests)]
public sealed class RefusedTimerReplacementSafetyTests
{
    private static readonly TimeSpan s_delay = SafetyCases.IdleDelay;

    [Theory]
    [InlineData(true)]
    [InlineData(false)]
    public void ATickerWhoseTimerRefusesAndWhoseReplacementCannotBeMadeOnceArmsAgainOnceTheProviderHeals(bool silently)
    {
        var clock = new HostileClock();
        using var pool = new TieredMemoryPool(new TieredMemoryPoolOptions { TimeProvider = clock, IdleReleaseDelay = s_delay });
        SafetyCases.ReturnOneLargeRegion(pool);
        long before = BackgroundFailures.Count;
        try
        {
            // The first firing re-arms the timer: Change refuses (false, or throws), and the new timer cannot be made,
            // once. After that the provider works for good.
            if (silently)
            {
                clock.RefuseNextChangesSilently(1);
            }
            else
            {
                clock.FailNextChanges(1);
            }

            clock.FailNextCreates(1);
            SafetyCases.Advance(clock.Fake, s_delay / 2);
        }
        finally
        {
            clock.Heal();
        }

        SafetyCases.Advance(clock.Fake, 4 * s_delay);
        SpinWait.SpinUntil(() => clock.TimersDisposed >= 1, TimeSpan.FromSeconds(10));
        long failures = BackgroundFailures.Count - before;
        BackgroundFailureWatch.Provoked(failures);

        long retained = pool.GetStatistics().Large.BytesRetained;
        Assert.True(retained == 0, $"four delays after the provider healed, the idle region is still retained ({retained} bytes, {pool.IdleTicks} idle ticks): a refused Change followed by one failed CreateTimer left the idle ticker with no timer (IdleTicker.ArmSafely sets _armedFor = long.MaxValue and _timer = null), and nothing arms it again until another releaser starts, so idle release has stopped for good");
        Assert.Equal(2, failures);
    }

    [Fact]
    public void ATimerThatRefusesEveryNewDueTimeForAWhileLeaksNoTimerAndTheTicksResumeWhenItHeals()
    {
        var clock = new HostileClock();
        using var pool = new TieredMemoryPool(new TieredMemoryPoolOptions { TimeProvider = clock, IdleReleaseDelay = s_delay });
        SafetyCases.ReturnOneLargeRegion(pool);
        long before = BackgroundFailures.Count;
        try
        {
            clock.RefuseNextChangesSilently(int.MaxValue);
            SafetyCases.Advance(clock.Fake, 3 * s_delay);
        }
        finally
        {
            clock.Heal();
        }

        long failures = BackgroundFailures.Count - before;
        BackgroundFailureWatch.Provoked(failures);
        Assert.True(failures > 0, "no Change was refused: the attack did not run");
        long retainedWhileRefusing = pool.GetStatistics().Large.BytesRetained;
        Assert.True(retainedWhileRefusing == 0, $"every refusal is replaced by a new timer, which fires: the region should have gone back three delays on ({retainedWhileRefusing} bytes retained)");

        bool allButOneDisposed = SpinWait.SpinUntil(() => clock.TimersMade - clock.TimersDisposed == 1, TimeSpan.FromSeconds(30));
        Assert.True(allButOneDisposed, $"{clock.TimersMade} timers made and {clock.TimersDisposed} disposed after {failures} refusals: a refused timer was leaked (or disposed twice)");

        SafetyCases.ReturnOneLargeRegion(pool);
        SafetyCases.Advance(clock.Fake, 3 * s_delay);
        long retained = pool.GetStatistics().Large.BytesRetained;
        Assert.True(retained == 0, $"after the provider healed, a region returned three delays ago is still retained ({retained} bytes): the ticker no longer ticks");
        Assert.Equal(failures, BackgroundFailures.Count - before);
    }

    [Fact]
    public void ARefusedTimerWhoseDisposeThrowsIsReportedAndTheTickerKeepsTicking()
    {
        var clock = new HostileClock { DisposeThrows = true };
        using var pool = new TieredMemoryPool(new TieredMemoryPoolOptions { TimeProvider = clock, IdleReleaseDelay = s_delay });
        using var recorder = new PoolEventRecorder();
        SafetyCases.ReturnOneLargeRegion(pool);
        long before = BackgroundFailures.Count;
        Exception? escaped;
        try
        {
            clock.FailNextChanges(1);
            escaped = Record.Exception(() => SafetyCases.Advance(clock.Fake, s_delay / 2));
        }
        finally
        {
            clock.Heal();
        }

        // The refused timer's dispose runs on a work item: its failure is counted there, after the Advance.
        bool reported = SpinWait.SpinUntil(() => BackgroundFailures.Count - before >= 2, TimeSpan.FromSeconds(30));
        long failures = BackgroundFailures.Count - before;
        BackgroundFailureWatch.Provoked(failures);
        Assert.True(escaped is null, $"an exception left the idle ticker's timer callback: {escaped}");
        Assert.True(reported, $"the refused timer's dispose threw and was not reported within 30 s ({failures} failures counted, {clock.TimersDisposed} timers disposed)");
        Assert.Equal(2, failures);
        Assert.True(
            recorder.WaitFor("BackgroundWorkFailed", clock.Signature, 2, TimeSpan.FromSeconds(30)),
            "the two failures (the Change, the refused timer's dispose) were not both written as BackgroundWorkFailed events within 30 s");
        Assert.Contains(recorder.Lines, line => line.Contains("disposing the idle ticker's refused timer", StringComparison.Ordinal) && line.Contains("a timer's dispose", StringComparison.Ordinal));

        SafetyCases.Advance(clock.Fake, 3 * s_delay);
        long retained = pool.GetStatistics().Large.BytesRetained;
        Assert.True(retained == 0, $"after a refused timer's dispose threw, the replacement did not tick the pool: {retained} bytes still retained three delays on");
    }

    [Fact]
    public void RetiredTimersThatKeepFiringBesideTheirReplacementGiveNothingBackBeforeItsDelay()
    {
        var clock = new HostileClock();
        using var pool = new TieredMemoryPool(new TieredMemoryPoolOptions { TimeProvider = clock, IdleReleaseDelay = s_delay });
        long before = BackgroundFailures.Count;
        try
        {
            // The first three re-arms are refused: three retired timers and the live one, all still able to fire.
            clock.RefuseNextChangesSilently(3);
            SafetyCases.Advance(clock.Fake, s_delay);
        }
        finally
        {
            clock.Heal();
        }

        long failures = BackgroundFailures.Count - before;
        BackgroundFailureWatch.Provoked(failures);
        Assert.Equal(3, failures);
        Assert.Equal(4, clock.TimersMade);

        // The region's delay runs from here; every timer, retired or not, fires on four threads at once, again and
        // again, while the clock creeps to just before the delay's end.
        DateTimeOffset returnedAt = clock.Fake.GetUtcNow();
        SafetyCases.ReturnOneLargeRegion(pool);
        const int Steps = 40;
        for (int step = 1; step < Steps; step++)
        {
            clock.FireEveryTimerConcurrently(4);
            SafetyCases.Advance(clock.Fake, s_delay / Steps);
            clock.FireEveryTimerConcurrently(4);
            long retained = pool.GetStatistics().Large.BytesRetained;
            Assert.True(retained > 0, $"the region was given back {clock.Fake.GetUtcNow() - returnedAt} after its return, before its idle delay of {s_delay}: firings of the retired timers beside the live one were counted as ticks ({pool.IdleTicks} idle ticks)");
        }

        SafetyCases.Advance(clock.Fake, 3 * s_delay);
        Assert.True(pool.GetStatistics().Large.BytesRetained == 0, "three delays after its return the region is still retained: the extra firings stopped the ticks");
        Assert.Equal(failures, BackgroundFailures.Count - before);
    }
}
