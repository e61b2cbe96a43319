using System;
using System.Buffers;
using System.Globalization;
using System.Threading;
using Microsoft.Extensions.Time.Testing;

namespace Zipora.Buffers.Tests;

/// <summary>
/// The pool dates returned memory in ticks of its timer, and counts a delay as "more than DelayInTicks ticks". That
/// holds only if ticks are never closer than a period. A periodic <see cref="System.Threading.Timer"/> does not
/// promise that: when a firing is late (thread pool busy, which with a 10 ms delay is ordinary jitter), the runtime's
/// TimerQueue schedules the next firing <c>period - lateness</c> after it (or 1 ms when the lateness exceeded a period)
/// to keep the ticks from drifting. Memory returned inside the late window is then unmapped well before one delay.
/// </summary>
/// <remarks>
/// The timer here is driven by hand exactly as TimerQueue.FireNextTimers drives a late periodic timer; the clock is
/// a FakeTimeProvider. Reads /proc/self/maps, so it runs alone.
/// </remarks>
[Collection(nameof(HugepageTests))]
public sealed class LateTimerSafetyTests
{
    public static TheoryData<int, int> TiersAndDelays
    {
        get
        {
            var data = new TheoryData<int, int>();
            foreach (int size in SafetyCases.OneSizePerTier)
            {
                data.Add(size, 10_000);
                data.Add(size, 10);
            }

            return data;
        }
    }

    [Theory]
    [MemberData(nameof(TiersAndDelays))]
    public void MemoryReturnedWhileATimerTickIsLateStaysMappedForAFullDelay(int size, int delayMilliseconds)
    {
        Skip.Unless(ProcessMappings.CanRead, "reads /proc/self/maps, which only Linux has");
        var time = new HandDrivenTimerTimeProvider();
        TimeSpan delay = TimeSpan.FromMilliseconds(delayMilliseconds);
        using var pool = new TieredMemoryPool(new TieredMemoryPoolOptions { TimeProvider = time, IdleReleaseDelay = delay });
        ManualTimer timer = time.Timer ?? throw new InvalidOperationException("the pool made no timer");
        TimeSpan period = TimeSpan.FromTicks(Math.Max(delay.Ticks / 4, TimeSpan.FromMilliseconds(10).Ticks));

        // Three punctual ticks.
        for (int i = 0; i < 3; i++)
        {
            time.Advance(period);
            timer.Fire();
        }

        // The fourth is late by 99% of a period (the thread pool was busy). Meanwhile a buffer is returned and trimmed.
        TimeSpan lateness = period * 0.99;
        time.Advance(lateness);
        IMemoryOwner<byte> owner = pool.Rent(size);
        OwnerRange range = SafetyCases.RangeOf(owner);
        owner.Dispose();
        pool.Trim();
        DateTimeOffset returnedAt = time.GetUtcNow();

        // The late tick fires now; TimerQueue schedules the next one period - lateness later, then every period.
        timer.Fire();
        time.Advance(period - lateness);
        timer.Fire();
        while (true)
        {
            TimeSpan elapsed = time.GetUtcNow() - returnedAt;
            if (elapsed >= delay)
            {
                break;
            }

            Assert.True(
                ProcessMappings.IsMapped(range.Start, range.Length),
                string.Create(CultureInfo.InvariantCulture, $"{range} was unmapped {elapsed.TotalMilliseconds} ms after it was returned, with an idle delay of {delayMilliseconds} ms, because one timer tick was late ({ProcessMappings.Describe(range.Start, range.Length)})"));
            time.Advance(period);
            timer.Fire();
        }
    }

    /// <summary>A FakeTimeProvider's clock with a timer the test fires by hand.</summary>
    private sealed class HandDrivenTimerTimeProvider : TimeProvider
    {
        private readonly FakeTimeProvider _clock = new();

        public ManualTimer? Timer { get; private set; }

        public override DateTimeOffset GetUtcNow() => _clock.GetUtcNow();

        public override long GetTimestamp() => _clock.GetTimestamp();

        public override long TimestampFrequency => _clock.TimestampFrequency;

        public override ITimer CreateTimer(TimerCallback callback, object? state, TimeSpan dueTime, TimeSpan period)
        {
            var timer = new ManualTimer(callback, state);
            Timer = timer;
            return timer;
        }

        public void Advance(TimeSpan by) => _clock.Advance(by);
    }

    private sealed class ManualTimer(TimerCallback callback, object? state) : ITimer
    {
        private bool _disposed;

        public void Fire()
        {
            if (!_disposed)
            {
                callback(state);
            }
        }

        public bool Change(TimeSpan dueTime, TimeSpan period) => !_disposed;

        public void Dispose() => _disposed = true;

        public System.Threading.Tasks.ValueTask DisposeAsync()
        {
            _disposed = true;
            return System.Threading.Tasks.ValueTask.CompletedTask;
        }
    }
}
