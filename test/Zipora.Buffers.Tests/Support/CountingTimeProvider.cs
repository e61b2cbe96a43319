using System;
using System.Threading;
using Microsoft.Extensions.Time.Testing;

namespace Zipora.Buffers.Tests;

/// <summary>A fake clock that counts the timers made on it, so a test sees how many timers its pools cost.</summary>
internal sealed class CountingTimeProvider : FakeTimeProvider
{
    private int _timersCreated;

    /// <summary>Timers created on this clock so far.</summary>
    public int TimersCreated => Volatile.Read(ref _timersCreated);

    public override ITimer CreateTimer(TimerCallback callback, object? state, TimeSpan dueTime, TimeSpan period)
    {
        Interlocked.Increment(ref _timersCreated);
        return base.CreateTimer(callback, state, dueTime, period);
    }
}
