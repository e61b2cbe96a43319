using System;
using System.Threading;

namespace Zipora.Buffers;

/// <summary>
/// A coarse clock that the idle releaser advances once per tick, four ticks per idle delay. Returns stamp memory
/// with it by a plain read, which costs the return path nothing, where a real timestamp would cost a clock read per
/// return.
/// </summary>
internal sealed class IdleClock
{
    /// <summary>Ticks per idle delay: memory idle for the delay is found within a quarter of it.</summary>
    public const int TicksPerDelay = 4;

    /// <summary>The delay that guards returned memory when the option turns background release off.</summary>
    public static readonly TimeSpan DefaultDelay = TimeSpan.FromSeconds(10);

    /// <summary>The stamp of memory that was never handed out: it has always waited out any delay.</summary>
    public const long NeverReturned = long.MinValue / 2;

    private static readonly TimeSpan s_minimumPeriod = TimeSpan.FromMilliseconds(10);

    // A timer's period must stay below about 49.7 days (uint milliseconds); an hour keeps any delay, up to
    // TimeSpan.MaxValue, representable while costing an idle process nothing.
    private static readonly TimeSpan s_maximumPeriod = TimeSpan.FromHours(1);

    private long _epoch;

    /// <param name="delay">The idle delay: positive, or <see cref="Timeout.InfiniteTimeSpan"/> for <see cref="DefaultDelay"/>.</param>
    public IdleClock(TimeSpan delay)
    {
        Delay = delay == Timeout.InfiniteTimeSpan ? DefaultDelay : delay;
        Period = TimeSpan.FromTicks(Math.Clamp(Delay.Ticks / TicksPerDelay, s_minimumPeriod.Ticks, s_maximumPeriod.Ticks));

        // Rounded up, so the delay in ticks never falls short of the delay.
        DelayInTicks = Math.Max(1, (Delay.Ticks / Period.Ticks) + (Delay.Ticks % Period.Ticks == 0 ? 0 : 1));
    }

    /// <summary>The delay memory must sit returned before the pool unmaps it (and, when enabled, before idle release).</summary>
    public TimeSpan Delay { get; }

    /// <summary>Time between ticks.</summary>
    public TimeSpan Period { get; }

    /// <summary>The delay, in ticks.</summary>
    public long DelayInTicks { get; }

    public long Epoch => Volatile.Read(ref _epoch);

    public long Advance() => Interlocked.Increment(ref _epoch);

    /// <summary>
    /// Whether memory last returned at tick <paramref name="stamp"/> has been returned for at least one full delay.
    /// A stamp says only that the return happened before the next tick, so a full delay has passed once more than
    /// <see cref="DelayInTicks"/> ticks have: the strict comparison is what makes the guarantee whole.
    /// </summary>
    public bool HasWaitedOutDelay(long stamp) => Epoch - stamp > DelayInTicks;
}
