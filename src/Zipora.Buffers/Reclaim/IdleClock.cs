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

    private static readonly TimeSpan s_minimumPeriod = TimeSpan.FromMilliseconds(10);

    // A timer's period must stay below about 49.7 days (uint milliseconds); an hour keeps any delay, up to
    // TimeSpan.MaxValue, representable while costing an idle process nothing.
    private static readonly TimeSpan s_maximumPeriod = TimeSpan.FromHours(1);

    private readonly TimeProvider _time;
    private long _epoch;
    private long _lastTickAt;

    // Set when the last counted tick's end could not be read: the next tick only takes its own time as the mark.
    private bool _lastTickEndUnknown;

    /// <param name="delay">The idle delay: positive, or <see cref="Timeout.InfiniteTimeSpan"/> for <see cref="DefaultDelay"/>.</param>
    /// <param name="time">The clock that says whether a period has really passed between two ticks.</param>
    public IdleClock(TimeSpan delay, TimeProvider time)
    {
        _time = time;
        _lastTickAt = time.GetTimestamp();
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

    /// <summary>
    /// Whether the last <see cref="Advance"/> counted a tick. Read by the same tick's work: a use that work finds came
    /// before it, and the ticker times the next tick a period after the work ended, so a quiet span counted from such
    /// a tick need not wait the extra tick a return stamp waits (see <see cref="QuietLongEnough"/>).
    /// </summary>
    public bool LastTickCounted { get; private set; }

    /// <summary>
    /// Counts a tick if a whole period has passed since the last one that counted, at <paramref name="now"/> (a
    /// timestamp of the pool's <see cref="TimeProvider"/>, read by the ticker when it fired); returns the epoch.
    /// </summary>
    /// <remarks>
    /// Only the idle releaser's timer calls it, one tick at a time. The ticker reads the clock once per firing for
    /// every releaser it ticks: 10,000 pools on one clock cost one read, and a clock that fails now and then fails a
    /// firing, which the ticker reads again, not one pool's tick after another.
    /// </remarks>
    public long Advance(long now)
    {
        if (_lastTickEndUnknown)
        {
            // The last counted tick ended at an unknown time before now: now is the first mark known to be after it.
            _lastTickEndUnknown = false;
            _lastTickAt = now;
            LastTickCounted = false;
            return Epoch;
        }

        TimeSpan elapsed = _time.GetElapsedTime(_lastTickAt, now);
        LastTickCounted = elapsed >= Period;
        if (!LastTickCounted)
        {
            if (elapsed < TimeSpan.Zero)
            {
                // The clock stepped back: a whole period is counted from where it landed, not from a mark it may not
                // come back to for a year, when nothing would be given back.
                _lastTickAt = now;
            }

            return Epoch;
        }

        _lastTickAt = now;
        return Interlocked.Increment(ref _epoch);
    }

    /// <summary>
    /// Marks when the firing that ran the last tick ended (<paramref name="endedAt"/>, a timestamp of the pool's clock
    /// read after every tick of that firing; <see langword="null"/> when that read threw): the next tick counts only a
    /// whole period after it. <see cref="Advance"/>'s timestamp was read before the firing's first tick, and the ticks
    /// of other pools before this one's may take long; measured from that timestamp, two counted ticks could be less
    /// than a period apart, and memory could be unmapped before its delay.
    /// </summary>
    public void MarkTickEnded(long? endedAt)
    {
        if (!LastTickCounted)
        {
            return;
        }

        if (endedAt is { } ended)
        {
            _lastTickAt = ended;
        }
        else
        {
            _lastTickEndUnknown = true;
        }
    }

    /// <summary>
    /// Whether memory last returned at tick <paramref name="stamp"/> has been returned for at least one full delay.
    /// A stamp says only that the return happened before the next tick, so a full delay has passed once more than
    /// <see cref="DelayInTicks"/> ticks have: the strict comparison is what makes the guarantee whole.
    /// </summary>
    public bool HasWaitedOutDelay(long stamp) => Epoch - stamp > DelayInTicks;

    /// <summary>
    /// Whether memory last returned at tick <paramref name="stamp"/> will have waited out the delay at the next tick:
    /// returned between three quarters of a delay and a delay ago (plus the ticks' lateness). Its pages may go now, so
    /// that resident memory is back within the delay; the mapping waits for <see cref="HasWaitedOutDelay"/>. Never for
    /// a delay of fewer than <see cref="TicksPerDelay"/> ticks (under 40 ms, where the period stops shrinking): a tick
    /// early would be half the delay or more.
    /// </summary>
    public bool WaitsOutDelayByNextTick(long stamp) => DelayInTicks >= TicksPerDelay && Epoch - stamp >= DelayInTicks;

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
