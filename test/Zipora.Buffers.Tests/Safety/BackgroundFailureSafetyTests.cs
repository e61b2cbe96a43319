using System;
using System.Buffers;
using System.Collections.Generic;
using System.Linq;

namespace Zipora.Buffers.Tests;

/// <summary>
/// The pools' background work runs on a timer's callback, where an exception nobody catches ends the process. The
/// clock it reads there is the user's <see cref="TimeProvider"/>: a clock that throws is reported as the
/// <c>BackgroundWorkFailed</c> event and the work goes on when the clock does. Alone in its collection: it counts the
/// process-wide failures, which no other test may add to meanwhile.
/// </summary>
[Collection(BackgroundFailureWatch.ProvokingTests)]
public sealed class BackgroundFailureSafetyTests
{
    [Fact]
    public void AClockThatThrowsOnTheTimerNeitherEndsTheProcessNorStopsTheIdleReleaseOnceItWorksAgain()
    {
        var time = new HostileClock();
        using var listener = new PoolEventRecorder();
        using var pool = new TieredMemoryPool(new TieredMemoryPoolOptions { TimeProvider = time, IdleReleaseDelay = SafetyCases.IdleDelay });
        for (int i = 0; i < 4; i++)
        {
            using IMemoryOwner<byte> owner = pool.Rent(100_000);
            owner.Memory.Span[0] = 1;
        }

        long retained = pool.GetStatistics().Large.BytesRetained;
        Assert.True(retained > 0, "the returned region should be kept for reuse");
        long failuresBefore = BackgroundFailures.Count;

        // Every tick in three delays reads a clock that throws: on the old code the exception left the timer's
        // callback (here it came out of Advance; on the system's timer it ends the process).
        time.Broken = true;
        Exception? escaped = Record.Exception(() => SafetyCases.Advance(time.Fake, 3 * SafetyCases.IdleDelay));
        long failures = BackgroundFailures.Count - failuresBefore;
        bool written = listener.WaitFor("BackgroundWorkFailed", time.Signature, failures, TimeSpan.FromSeconds(10));
        int fromThisClock = Failures(listener).Count(failure => failure.Error.Contains(time.Signature, StringComparison.Ordinal));
        BackgroundFailureWatch.Provoked(fromThisClock);
        Assert.True(escaped is null, $"an exception left the pool's timer callback: {escaped}");
        Assert.True(written, $"{failures} background failures were counted but only {fromThisClock} events naming this test's clock were written within 10 s: {string.Join("; ", Failures(listener))}");
        Assert.True(fromThisClock >= 12, $"each of the 12 ticks should have reported its failure; {fromThisClock} were reported");
        Assert.True(failures == fromThisClock, $"{failures - fromThisClock} background failures came from elsewhere: {string.Join("; ", Failures(listener))}");
        Assert.Contains(Failures(listener), failure => failure.Work.Contains("clock", StringComparison.Ordinal));
        Assert.Equal(retained, pool.GetStatistics().Large.BytesRetained);

        // The clock works again: the ticks count from there, and the idle region goes back within the delay and a tick.
        time.Broken = false;
        SafetyCases.Advance(time.Fake, SafetyCases.IdleDelay + (SafetyCases.IdleDelay / 2));
        TieredMemoryPoolStatistics after = pool.GetStatistics();
        Assert.True(after.Large.BytesRetained == 0, $"the idle region should have gone back once the clock worked again; {after.Large.BytesRetained} bytes are retained");
        Assert.Equal(failuresBefore + failures, BackgroundFailures.Count);
    }

    private static IEnumerable<(string Work, string Error)> Failures(PoolEventRecorder listener) =>
        listener.Payloads("BackgroundWorkFailed").Select(payload => ((string)payload[0]!, (string)payload[1]!));
}
