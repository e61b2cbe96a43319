using System;
using System.Threading;

namespace Zipora.Buffers;

/// <summary>
/// A coarse clock that the idle releaser advances once per tick, four ticks per idle delay. Returns stamp memory
/// with it by a plain read, which costs the return path nothing, where a real timestamp would cost a clock read per
/// return.
/// </summary>
/// <remarks>
/// A tick counts only when a whole period has passed on the pool's <see cref="TimeProvider"/> since the last one that
/// counted. A timer that fires late fires its next tick early (the runtime schedules it a period after its due time,
/// not after it ran), and two ticks in quick succession must not add up to a period that never passed: the
/// guarantee that memory stamped at tick E has waited <c>(N - E - 1)</c> periods by tick N rests on it.
/// </remarks>
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

    private readonly TimeProvider _time;

    // The delay in the time provider's timestamp units, for memory stamped with a timestamp (see ReturnedLongEnough);
    // capped where a sum with a timestamp could overflow (a delay of centuries).
    private readonly long _delayInTimestampUnits;

    // A period in timestamp units, rounded down: counted ticks are at least this far apart (the tick's comparison
    // goes through a double, whose error is far below a unit at any period).
    private readonly long _periodInTimestampUnits;
    private long _epoch;
    private long _lastTickAt;

    // The last epoch that counted and the timestamp read just after it was published (see TimestampOfTickStamp): one
    // object, so a reader on another thread sees the two together.
    private TickMark _lastMark;

    /// <param name="delay">The idle delay: positive, or <see cref="Timeout.InfiniteTimeSpan"/> for <see cref="DefaultDelay"/>.</param>
    /// <param name="time">The clock that says whether a period has really passed between two ticks.</param>
    public IdleClock(TimeSpan delay, TimeProvider time)
    {
        _time = time;
        _lastTickAt = time.GetTimestamp();
        _lastMark = new TickMark(0, _lastTickAt);
        Delay = delay == Timeout.InfiniteTimeSpan ? DefaultDelay : delay;
        Period = TimeSpan.FromTicks(Math.Clamp(Delay.Ticks / TicksPerDelay, s_minimumPeriod.Ticks, s_maximumPeriod.Ticks));

        // Rounded up, so the delay in ticks never falls short of the delay.
        DelayInTicks = Math.Max(1, (Delay.Ticks / Period.Ticks) + (Delay.Ticks % Period.Ticks == 0 ? 0 : 1));

        // Rounded up too, for the same reason; a delay of millennia is capped where a due time, in timestamp units or
        // on the ticker's clock, could overflow.
        double frequency = time.TimestampFrequency / (double)TimeSpan.TicksPerSecond;
        long cappedTicks = Math.Min(Delay.Ticks, long.MaxValue / 4);
        _delayInTimestampUnits = (long)Math.Min(Math.Ceiling(cappedTicks * frequency), long.MaxValue / 4);
        _periodInTimestampUnits = (long)Math.Floor(Period.Ticks * frequency);
    }

    /// <summary>The delay memory must sit returned before the pool unmaps it (and, when enabled, before idle release).</summary>
    public TimeSpan Delay { get; }

    /// <summary>Time between ticks.</summary>
    public TimeSpan Period { get; }

    /// <summary>The delay, in ticks.</summary>
    public long DelayInTicks { get; }

    public long Epoch => Volatile.Read(ref _epoch);

    /// <summary>
    /// The time provider's timestamp now: the stamp of memory that goes where a return is rare enough to pay a clock
    /// read (a region into the shared cache, a mapping set aside to unmap), so that it can go back exactly one delay
    /// after its return, not at the first tick after that (up to a period later).
    /// </summary>
    public long Now => _time.GetTimestamp();

    /// <summary>
    /// Whether the last <see cref="Advance"/> counted a tick. Read by the same tick's work: a use that work finds came
    /// before it, and the ticker times the next tick a period after the work ended, so a quiet span counted from such
    /// a tick need not wait the extra tick a return stamp waits (see <see cref="QuietLongEnough"/>).
    /// </summary>
    public bool LastTickCounted { get; private set; }

    /// <summary>Counts a tick if a whole period has passed since the last one that counted; returns the epoch.</summary>
    /// <remarks>Only the idle releaser's timer calls it, one tick at a time.</remarks>
    public long Advance()
    {
        long now = _time.GetTimestamp();
        LastTickCounted = _time.GetElapsedTime(_lastTickAt, now) >= Period;
        if (!LastTickCounted)
        {
            return Epoch;
        }

        long epoch = Interlocked.Increment(ref _epoch);

        // Read after the epoch moved: a stamp of an earlier epoch was taken before this moment (see TimestampOfTickStamp).
        _lastTickAt = _time.GetTimestamp();
        Volatile.Write(ref _lastMark, new TickMark(epoch, _lastTickAt));
        return epoch;
    }

    /// <summary>
    /// Whether memory last returned at tick <paramref name="stamp"/> has been returned for at least one full delay.
    /// A stamp says only that the return happened before the next tick, so a full delay has passed once more than
    /// <see cref="DelayInTicks"/> ticks have: the strict comparison is what makes the guarantee whole.
    /// </summary>
    public bool HasWaitedOutDelay(long stamp) => Epoch - stamp > DelayInTicks;

    /// <summary>Whether memory returned at timestamp <paramref name="returnedAt"/> (see <see cref="Now"/>) has, at timestamp <paramref name="now"/>, been returned for the whole delay.</summary>
    public bool ReturnedLongEnough(long returnedAt, long now) => now - returnedAt >= _delayInTimestampUnits;

    /// <summary>The timestamp at which memory returned at timestamp <paramref name="returnedAt"/> has been returned for the whole delay.</summary>
    public long DueAt(long returnedAt) => returnedAt + _delayInTimestampUnits;

    /// <summary>
    /// A return timestamp for memory whose return only a tick stamp records (a region parked in a thread's slot, whose
    /// fast path reads no clock): the latest moment that return can have been, never earlier, so nothing waits less
    /// than the delay, and, being no later than it must, nothing waits longer than it must either.
    /// </summary>
    /// <remarks>
    /// Memory stamped <paramref name="stamp"/> read the epoch before the tick that counted <c>stamp + 1</c> published
    /// it, so before that tick's mark was read; counted ticks lie at least a period apart, so that mark is at least
    /// <c>(E - stamp - 1)</c> periods before the mark of the last counted epoch E. With no later epoch counted yet,
    /// the return can have been as late as <paramref name="now"/>.
    /// </remarks>
    public long TimestampOfTickStamp(long stamp, long now)
    {
        TickMark last = Volatile.Read(ref _lastMark);
        long ticksSince = last.Epoch - stamp;
        if (ticksSince <= 0)
        {
            return now;
        }

        if (ticksSince > DelayInTicks)
        {
            // Waited out already (and so far back that the periods could overflow): due now.
            return Math.Min(now, last.At - _delayInTimestampUnits);
        }

        return Math.Min(now, last.At - ((ticksSince - 1) * _periodInTimestampUnits));
    }

    /// <summary>A counted epoch and the timestamp read just after it was published.</summary>
    private sealed record TickMark(long Epoch, long At);

    /// <summary>
    /// Whether something whose activity was last seen moving at tick <paramref name="quietSince"/> has, at tick
    /// <paramref name="now"/>, stayed unused for the delay. Seen at a tick that counted
    /// (<paramref name="seenAtCountedTick"/>), its last use came before that tick's work, and each later tick is a
    /// whole period after the one before it ended, so the delay in ticks is whole from there; seen at a tick that did
    /// not count, the use may have come up to a period after its epoch began, and one tick more is waited, as for a
    /// return stamp (see <see cref="HasWaitedOutDelay"/>).
    /// </summary>
    /// <remarks>
    /// Only the idle judgements use it (when a class or a tier is given back), not the unmaps: what they give back
    /// before its blocks' stamps have waited out the delay only has its pages dropped, and is unmapped later.
    /// </remarks>
    public bool QuietLongEnough(long now, long quietSince, bool seenAtCountedTick) =>
        now - quietSince >= DelayInTicks + (seenAtCountedTick ? 0 : 1);
}
