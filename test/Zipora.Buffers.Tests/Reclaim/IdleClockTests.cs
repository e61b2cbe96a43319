using System;
using Microsoft.Extensions.Time.Testing;

namespace Zipora.Buffers.Tests;

/// <summary>
/// The idle clock's judgement of a quiet span: counted from the first tick that found the last use, it is a whole delay
/// once the delay in ticks has passed since a tick that counted, and one tick later when the tick that found the use
/// came early and did not count (the use may then lie up to a period after that tick's epoch began).
/// </summary>
public sealed class IdleClockTests
{
    private static readonly TimeSpan s_delay = TimeSpan.FromSeconds(10);
    private static readonly TimeSpan s_period = s_delay / 4;

    [Fact]
    public void AUseFoundAtATickThatCountedIsQuietAWholeDelayLaterToTheTick()
    {
        var time = new FakeTimeProvider();
        var clock = new IdleClock(s_delay, time);
        time.Advance(s_period);
        long foundAt = clock.Advance(time.GetTimestamp());
        Assert.True(clock.LastTickCounted);

        // The use came before this tick's clock reading; four counted ticks later a whole delay has passed since.
        for (int tick = 1; tick < 4; tick++)
        {
            time.Advance(s_period);
            long now = clock.Advance(time.GetTimestamp());
            Assert.False(clock.QuietLongEnough(now, foundAt, seenAtCountedTick: true), $"quiet after {tick} ticks");
        }

        time.Advance(s_period);
        Assert.True(clock.QuietLongEnough(clock.Advance(time.GetTimestamp()), foundAt, seenAtCountedTick: true));
    }

    [Fact]
    public void AUseFoundAtAnEarlyTickThatDidNotCountWaitsATickMore()
    {
        var time = new FakeTimeProvider();
        var clock = new IdleClock(s_delay, time);
        time.Advance(s_period);
        _ = clock.Advance(time.GetTimestamp());

        // A tick 99% of a period later does not count: it keeps epoch 1, and the use it finds may be that late. The
        // next tick comes a whole period after the last one that counted, so it counts, and so do the ones after it:
        // four of them span only 3.01 periods since the use.
        time.Advance(s_period * 0.99);
        long foundAt = clock.Advance(time.GetTimestamp());
        Assert.False(clock.LastTickCounted);
        DateTimeOffset useAtTheLatest = time.GetUtcNow();
        time.Advance(s_period * 0.01);

        long now = clock.Advance(time.GetTimestamp());
        Assert.True(clock.LastTickCounted);
        while (!clock.QuietLongEnough(now, foundAt, seenAtCountedTick: false))
        {
            time.Advance(s_period);
            now = clock.Advance(time.GetTimestamp());
            Assert.True(clock.LastTickCounted);
        }

        Assert.True(time.GetUtcNow() - useAtTheLatest >= s_delay, $"judged quiet {time.GetUtcNow() - useAtTheLatest} after the use");
        Assert.Equal(foundAt + 5, now);
    }

    [Fact]
    public void ATickCountsAWholePeriodAfterTheFiringThatRanTheLastOneEndedNotAfterItsStart()
    {
        var time = new FakeTimeProvider();
        var clock = new IdleClock(s_delay, time);
        time.Advance(s_period);
        long epoch = clock.Advance(time.GetTimestamp());
        Assert.True(clock.LastTickCounted);

        // Other pools' ticks in the same firing took most of a period before this one's ended.
        time.Advance(s_period * 0.9);
        clock.MarkTickEnded(time.GetTimestamp());
        time.Advance(s_period * 0.2);
        Assert.Equal(epoch, clock.Advance(time.GetTimestamp()));
        Assert.False(clock.LastTickCounted, "a tick 1.1 periods after the last one's start but 0.2 after its end counted");

        time.Advance(s_period * 0.8);
        Assert.Equal(epoch + 1, clock.Advance(time.GetTimestamp()));
    }

    [Fact]
    public void AfterATickWhoseEndCouldNotBeReadTheNextTickOnlyMarksTimeAndTheOneAfterAWholePeriodCounts()
    {
        var time = new FakeTimeProvider();
        var clock = new IdleClock(s_delay, time);
        time.Advance(s_period);
        long epoch = clock.Advance(time.GetTimestamp());
        clock.MarkTickEnded(null);

        // Two periods later, but the last tick's end is unknown: this tick is the first mark known to follow it.
        time.Advance(2 * s_period);
        Assert.Equal(epoch, clock.Advance(time.GetTimestamp()));
        Assert.False(clock.LastTickCounted);

        time.Advance(s_period);
        Assert.Equal(epoch + 1, clock.Advance(time.GetTimestamp()));
    }
}
