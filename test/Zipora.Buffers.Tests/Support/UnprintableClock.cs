using System;
using System.Threading;
using Microsoft.Extensions.Time.Testing;

namespace Zipora.Buffers.Tests;

/// <summary>
/// A fake clock whose timestamp reads, while <see cref="Broken"/> is set, throw an <see cref="UnprintableException"/>,
/// whose description itself throws. Its time and timers are otherwise the fake's.
/// </summary>
internal sealed class UnprintableClock : TimeProvider
{
    private int _broken;

    public FakeTimeProvider Fake { get; } = new();

    /// <summary>Every timestamp read throws while set.</summary>
    public bool Broken
    {
        get => Volatile.Read(ref _broken) != 0;
        set => Volatile.Write(ref _broken, value ? 1 : 0);
    }

    public override long TimestampFrequency => Fake.TimestampFrequency;

    /// <summary>Reads work again.</summary>
    public void Heal() => Broken = false;

    public override DateTimeOffset GetUtcNow() => Fake.GetUtcNow();

    public override long GetTimestamp() => Broken ? throw new UnprintableException() : Fake.GetTimestamp();

    public override ITimer CreateTimer(TimerCallback callback, object? state, TimeSpan dueTime, TimeSpan period) =>
        Fake.CreateTimer(callback, state, dueTime, period);
}
