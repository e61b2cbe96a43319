using System;
using System.Buffers;
using System.Threading;
using Microsoft.Extensions.Time.Testing;

namespace Zipora.Buffers.Tests;

/// <summary>
/// The ticker's one reading per firing (attack round 9): every releaser of a firing is ticked with the timestamp read
/// when the firing began, however long the ticks before it took, and its <see cref="IdleClock"/> records that stale
/// timestamp as the time of the tick it counts. The clock's guard ("a tick counts only a whole period after the last
/// one that counted") is then measured from a moment before the tick really happened; when the ticker's own schedule is
/// also off (the firing's closing reads throw, so the releasers are queued from the firing's first reading), the next
/// tick counts well under a period after the last one really ran, and a region returned just before that stale tick is
/// unmapped before a full delay.
/// </summary>
[Collection(BackgroundFailureWatch.ProvokingTests)]
public sealed class StaleTickTimestampSafetyTests
{
    private const int LargeSize = 100_000;
    private static readonly TimeSpan s_delay = SafetyCases.IdleDelay;
    private static readonly TimeSpan s_period = s_delay / IdleClock.TicksPerDelay;

    [Theory]
    [InlineData(true)]
    [InlineData(false)]
    public void ARegionReturnedDuringAnotherPoolsLongTickIsNotUnmappedBeforeAFullDelay(bool closingReadsFail)
    {
        var clock = new FrequencyHookClock();

        // Pool A is made at 0 (its first tick is due at one period), pool B a sixteenth of a period later (due at
        // 9/8 of a period, the next eighth): one late firing ticks A, then B.
        using var a = new TieredMemoryPool(SafetyCases.Options(OwnerMode.Default, clock));
        clock.Fake.Advance(s_period / 16);
        using var b = new TieredMemoryPool(SafetyCases.Options(OwnerMode.Default, clock));
        IMemoryOwner<byte> owner = b.Rent(LargeSize);
        owner.Memory.Span[0] = 1;
        OwnerRange range = SafetyCases.RangeOf(owner);
        using (IMemoryOwner<byte> fromA = a.Rent(LargeSize))
        {
            fromA.Memory.Span[0] = 1;
        }

        // The firing at 9/8 of a period reads the clock once, ticks A, and A's tick takes 0.9 of a period (the fake
        // clock is moved on within it). B's buffer is returned during A's tick, before B's tick has counted. Then B
        // is ticked with the firing's timestamp, taken 0.9 of a period earlier; the firing's closing reads fail.
        DateTimeOffset returnedAt = default;
        long failuresBefore = BackgroundFailures.Count;
        bool hooked = false;
        clock.Hook = () =>
        {
            if (hooked || a.IdleTicks != 1 || b.IdleTicks != 0)
            {
                return;
            }

            hooked = true;
            clock.Fake.Advance(s_period * 9 / 10);
            owner.Dispose();
            returnedAt = clock.Fake.GetUtcNow();
            clock.FailNextReads = closingReadsFail ? 2 : 0;
        };

        Exception? escaped = Record.Exception(() => clock.Fake.Advance(s_period * 9 / 8 - s_period / 16));
        clock.Hook = null;
        Assert.True(escaped is null, $"an exception left the timer's callback: {escaped}");
        Assert.True(hooked, $"the scripted long tick did not run: A ticked {a.IdleTicks} times, B {b.IdleTicks}");
        Assert.Equal(1, b.IdleTicks);

        // The clock works from here on, and runs a millisecond at a time, as a real clock under the timer.
        long failures = BackgroundFailures.Count - failuresBefore;
        BackgroundFailureWatch.Provoked(failures);
        Assert.Equal(closingReadsFail ? 2 : 0, failures);

        // Only B's ticks unmap its regions: the process's mappings are read after each (a read costs milliseconds in a
        // process that holds thousands of mappings, as the suite's does).
        DateTimeOffset? unmappedAt = null;
        long ticksAtUnmap = 0;
        long ticksSeen = b.IdleTicks;
        while (clock.Fake.GetUtcNow() < returnedAt + s_delay - TimeSpan.FromMilliseconds(1))
        {
            clock.Fake.Advance(TimeSpan.FromMilliseconds(1));
            if (b.IdleTicks == ticksSeen)
            {
                continue;
            }

            ticksSeen = b.IdleTicks;
            if (!ProcessMappings.IsMapped(range.Start, range.Length))
            {
                unmappedAt = clock.Fake.GetUtcNow();
                ticksAtUnmap = b.IdleTicks;
                break;
            }
        }

        Assert.True(
            unmappedAt is null,
            $"the region {range} returned to pool B at {(returnedAt - clock.Fake.Start).TotalSeconds:F3} s (during pool A's tick of the firing that then ticked B with its stale first timestamp) was unmapped at {(unmappedAt - clock.Fake.Start)?.TotalSeconds:F3} s, {(unmappedAt - returnedAt)?.TotalSeconds:F3} s after its return, before the {s_delay.TotalSeconds} s idle delay (B at tick {ticksAtUnmap}): B's IdleClock recorded the firing's first timestamp as its tick's time, so with the firing's closing reads failing (here: {closingReadsFail}) B was queued from that first reading too and its next tick counted an eighth of a period after its stale tick really ran");
    }

    /// <summary>
    /// A fake clock whose <see cref="TimestampFrequency"/> runs a hook on each read (the idle clock reads it at the start
    /// of every tick, to measure the time since the last one), and whose timestamp reads can be made to throw.
    /// </summary>
    private sealed class FrequencyHookClock : TimeProvider
    {
        private int _failNextReads;

        public FakeTimeProvider Fake { get; } = new();

        public Action? Hook { get; set; }

        public int FailNextReads
        {
            get => Volatile.Read(ref _failNextReads);
            set => Volatile.Write(ref _failNextReads, value);
        }

        public override long TimestampFrequency
        {
            get
            {
                Hook?.Invoke();
                return Fake.TimestampFrequency;
            }
        }

        public override DateTimeOffset GetUtcNow() => Fake.GetUtcNow();

        public override long GetTimestamp()
        {
            if (_failNextReads > 0)
            {
                _failNextReads--;
                throw new InvalidOperationException("the round 9 test clock refused a timestamp read");
            }

            return Fake.GetTimestamp();
        }

        public override ITimer CreateTimer(TimerCallback callback, object? state, TimeSpan dueTime, TimeSpan period) =>
            Fake.CreateTimer(callback, state, dueTime, period);
    }
}
