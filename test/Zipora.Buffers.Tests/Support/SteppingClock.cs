using System;
using System.Diagnostics;
using System.Threading;

namespace Zipora.Buffers.Tests;

/// <summary>
/// A clock on real time whose timestamps the test steps (by years, either way), as a wall clock an administrator or
/// NTP sets is stepped; its timers are the system's, so they keep waiting real time whatever the timestamps say. With
/// <see cref="StepEveryRead"/> set, each read steps it once more: a clock that races ahead of real time.
/// </summary>
internal sealed class SteppingClock : TimeProvider
{
    private long _offset;

    /// <summary>Added to the offset at every read (0: the clock runs at real speed).</summary>
    public long StepEveryRead { get; set; }

    public override long TimestampFrequency => Stopwatch.Frequency;

    /// <summary>Steps the clock by <paramref name="by"/> (back when negative).</summary>
    public void Step(TimeSpan by) => Interlocked.Add(ref _offset, (long)(by.TotalSeconds * Stopwatch.Frequency));

    public override long GetTimestamp()
    {
        long step = StepEveryRead;
        return Stopwatch.GetTimestamp() + (step == 0 ? Volatile.Read(ref _offset) : Interlocked.Add(ref _offset, step));
    }
}
