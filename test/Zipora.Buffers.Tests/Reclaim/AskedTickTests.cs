using System;
using System.Collections.Generic;
using Microsoft.Extensions.Time.Testing;

namespace Zipora.Buffers.Tests;

/// <summary>
/// A tick may ask the ticker for another before the next regular one (a cached region due one delay after its
/// return). The asked tick comes no earlier than asked, at most a grid step (an eighth of a period) later; a pool that
/// asks at every tick is still ticked at most once per grid step; and the regular ticks stay a period apart.
/// </summary>
public sealed class AskedTickTests
{
    private static readonly TimeSpan s_delay = TimeSpan.FromSeconds(10);
    private static readonly TimeSpan s_period = s_delay / IdleClock.TicksPerDelay;
    private static readonly TimeSpan s_step = TimeSpan.FromMilliseconds(5);

    [Fact]
    public void AnAskedTickComesWhenAskedWithinAGridStepAndNotBefore()
    {
        var time = new FakeTimeProvider();
        var pool = new AskingPool(time);
        var clock = new IdleClock(s_delay, time);
        var releaser = new IdleReleaser(pool, clock, time);

        // At the first regular tick the pool asks for one 0.37 periods later.
        pool.AskIn = s_period * 0.37;
        Advance(time, s_period);
        Assert.Single(pool.Ticks);
        TimeSpan asked = pool.Ticks[0] + (s_period * 0.37);
        pool.AskIn = null;

        Advance(time, s_period * 0.5);
        Assert.Equal(2, pool.Ticks.Count);
        Assert.InRange(pool.Ticks[1], asked, asked + (s_period / 8) + s_step);

        // The regular ticks stay where they were: the next comes a period after the first, not after the asked one.
        Advance(time, (s_period * 2) - (s_period * 1.5) + s_step);
        Assert.Equal(3, pool.Ticks.Count);
        Assert.InRange(pool.Ticks[2], s_period * 2, (s_period * 2) + (s_period / 8) + s_step);
        Assert.Equal(2, clock.Epoch);
        GC.KeepAlive(releaser);
    }

    [Fact]
    public void APoolThatAsksAtEveryTickIsTickedAtMostOncePerGridStep()
    {
        var time = new FakeTimeProvider();
        var pool = new AskingPool(time) { AskIn = TimeSpan.Zero };
        var clock = new IdleClock(s_delay, time);
        var releaser = new IdleReleaser(pool, clock, time);

        Advance(time, s_period * 10);

        // Eight grid steps per period, the regular ticks among them; the fake clock's steps make a firing up to a step
        // late, so two may come up to a step less than a grid step apart.
        Assert.InRange(pool.Ticks.Count, 10, (10 * 8) + 1);
        for (int i = 1; i < pool.Ticks.Count; i++)
        {
            Assert.True(pool.Ticks[i] - pool.Ticks[i - 1] >= (s_period / 8) - s_step, $"ticks {i - 1} and {i} came {(pool.Ticks[i] - pool.Ticks[i - 1]).TotalMilliseconds} ms apart");
        }

        // The regular ticks still counted one per period.
        Assert.Equal(10, clock.Epoch);
        GC.KeepAlive(releaser);
    }

    /// <summary>Moves the fake clock on in small steps, so every timer fires near its due time.</summary>
    private static void Advance(FakeTimeProvider time, TimeSpan by)
    {
        for (TimeSpan moved = TimeSpan.Zero; moved < by; moved += s_step)
        {
            time.Advance(s_step);
        }
    }

    /// <summary>Records when it was ticked, and asks for the next tick <see cref="AskIn"/> after each (none when null).</summary>
    private sealed class AskingPool(FakeTimeProvider time) : IReclaimablePool
    {
        private readonly DateTimeOffset _start = time.GetUtcNow();

        public TimeSpan? AskIn { get; set; }

        public List<TimeSpan> Ticks { get; } = [];

        public bool IsDisposed => false;

        public void Trim()
        {
        }

        public void TrimUnderPressure()
        {
        }

        public long ReleaseIdle(long now, long delayInTicks)
        {
            Ticks.Add(time.GetUtcNow() - _start);
            return AskIn is { } askIn ? time.GetTimestamp() + (long)(askIn.Ticks * (double)time.TimestampFrequency / TimeSpan.TicksPerSecond) : long.MaxValue;
        }
    }
}
