using System;
using System.Diagnostics;
using System.Threading;

namespace Zipora.Buffers.Tests;

/// <summary>
/// A clock on real time whose timestamps the test steps (by years, either way), as a wall clock an administrator or
/// NTP sets is stepped: it counts <see cref="TimeSpan"/> ticks from today's date, as a provider reading
/// <see cref="DateTime.UtcNow"/> would. Its timers are the system's, so they keep waiting real time whatever the
/// timestamps say. With <see cref="StepEveryRead"/> set, each read steps it once more: a clock that races ahead.
/// </summary>
internal sealed class SteppingClock : TimeProvider
{
    private readonly long _origin = Stopwatch.GetTimestamp();
    private long _offset = DateTime.UtcNow.Ticks;
    private long _pinnedAt = -1;

    /// <summary>Added to the offset at every read (0: the clock runs at real speed).</summary>
    public long StepEveryRead { get; set; }

    public override long TimestampFrequency => TimeSpan.TicksPerSecond;

    /// <summary>Steps the clock by <paramref name="by"/> (back when negative).</summary>
    public void Step(TimeSpan by) => Interlocked.Add(ref _offset, by.Ticks);

    /// <summary>Every read returns <paramref name="timestamp"/> until <see cref="Unpin"/>: the clock stands at, say, <see cref="DateTimeOffset.MaxValue"/>.</summary>
    public void PinAt(long timestamp) => Volatile.Write(ref _pinnedAt, timestamp);

    /// <summary>Reads run on real time again, from where they were before the pin.</summary>
    public void Unpin() => Volatile.Write(ref _pinnedAt, -1);

    public override long GetTimestamp()
    {
        long pinned = Volatile.Read(ref _pinnedAt);
        if (pinned >= 0)
        {
            return pinned;
        }

        long step = StepEveryRead;
        long offset = step == 0 ? Volatile.Read(ref _offset) : Interlocked.Add(ref _offset, step);
        return Stopwatch.GetElapsedTime(_origin).Ticks + offset;
    }
}
