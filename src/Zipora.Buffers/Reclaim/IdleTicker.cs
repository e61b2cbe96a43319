using System;
using System.Collections.Generic;
using System.Runtime.CompilerServices;
using System.Threading;

namespace Zipora.Buffers;

/// <summary>
/// One timer per <see cref="TimeProvider"/> for the idle releasers of every pool on that clock: each releaser is
/// ticked at its own period, and the timer is armed for whichever is due first.
/// </summary>
/// <remarks>
/// <para>
/// A timer per pool made 10,000 idle array pools cost 10,000 timers and their firings. Here a pool costs one entry
/// in a queue ordered by due time, and the queue holds only the releasers that run: one that stops (its pool was
/// collected, or its pool was disposed and nothing waits) leaves it, so nothing here keeps a dropped pool, its
/// releaser or its memory reachable.
/// </para>
/// <para>
/// A releaser is due one period after it started or last ticked, measured when that tick ended, rounded up to the
/// next 32nd of its period on the ticker's clock. Its <see cref="IdleClock"/> counts a tick only a whole period
/// after the last one it counted; a periodic timer, which fires its next tick early after a late one, had half its
/// ticks refused that way on a busy machine, and here none is. The rounding lets pools of one period created at
/// different moments share their firings (10,000 pools with the default delay cost at most 32 firings per period,
/// not 10,000). Each tick is late by up to that step (a tick ends after its grid point, so the next whole period ends
/// after the next one): with an eighth, four ticks came half a period late, and a region's pages, dropped at the
/// fourth tick after its return, outlived the delay. On a fake clock that stops on each due time, the ticks fall a
/// whole number of periods after the first, as a periodic timer's would.
/// </para>
/// <para>
/// Ticks run one after another on the timer's callback, outside the lock, and a releaser is never ticked twice at
/// once: it leaves the queue while it ticks.
/// </para>
/// <para>
/// The clock and the timer are the user's <see cref="TimeProvider"/>'s and may throw, where nobody can handle it (the
/// timer's callback; a start made for a pool being made or a late return). A reading that throws is reported (see
/// <see cref="BackgroundFailures"/>) and made once more at once; if that throws too, nothing is ticked and the timer
/// reads the clock again an eighth of the shortest period on. A timer that refuses a new due time (throws, or returns
/// false) is replaced by a new one and disposed on another thread. A firing reads the clock once for all the releasers
/// it ticks, and again after them: each releaser's clock counts its next tick a whole period after that second
/// reading, however long the ticks before its own took. Either way ticking resumes by itself once the provider works,
/// and nothing is given back early: a releaser ticked early by a stale reading is one its <see cref="IdleClock"/> does
/// not count.
/// </para>
/// </remarks>
internal sealed partial class IdleTicker
{
    private static readonly IdleTicker s_system = new(TimeProvider.System);
    private static readonly ConditionalWeakTable<TimeProvider, IdleTicker> s_byClock = [];

    // The system timer counts whole milliseconds and would round a shorter wait down to zero, firing at once for
    // nothing again and again until the due time: no wait is shorter. (A longer one it truncates, firing up to a
    // millisecond early once; the firing finds nothing due and arms again.)
    private static readonly TimeSpan s_shortestWait = TimeSpan.FromMilliseconds(1);

    // No honest wait is longer than a period, and none is above an hour (IdleClock's longest period): a longer one
    // comes only from a clock that went back, and the system timer refuses waits above about 49.7 days.
    private static readonly TimeSpan s_longestWait = TimeSpan.FromHours(2);

    // Due times are rounded up to a 32nd of the releaser's period (see the remarks).
    private const long FiringsPerPeriod = 32;

    // A clock that threw is read again an eighth of the shortest period on: a broken provider costs a few reports a period.
    private const long RetriesPerPeriod = 8;

    private readonly TimeProvider _time;
    private readonly long _startedAt;
    // A monitor, not a System.Threading.Lock: a contended Lock allocates its wait event on the managed heap, and the
    // ticker's firing takes it where an exception ends the process (a timer's callback, its catch), where running out of
    // managed memory must not throw (a monitor's contention allocates nothing).
    private readonly object _lock = new();
    private readonly PriorityQueue<IdleReleaser, long> _due = new();

    // Given to the queue's Remove, whose own default would make the runtime's equality comparer of IdleReleaser, a type
    // initializer, at the first stop: one failed there at the GC heap limit would fail every later stop, for good.
    private readonly IEqualityComparer<IdleReleaser> _sameReleaser = ReferenceEqualityComparer.Instance;

    // The list a firing collects the due releasers in, kept for the next: only under the lock (see Fire).
    private List<IdleReleaser>? _spareDue;
    private ITimer? _timer;

    // The system's timer that tries again to make _timer when the provider would not (see ScheduleRearm).
    // Made with the ticker, so a retry never needs managed memory (arming one is the last resort of a firing that ran
    // out of it).
    private readonly Timer _rearm;
    private long _armedFor = long.MaxValue;
    private int _ticking;

    // The clock's last reading, for one that throws: the ticker's time, which only its forward steps move.
    private long _lastReading;

    // The provider's own last reading, in TimeSpan ticks since the ticker was made: a later one below it stepped back.
    private long _lastElapsed;

    // Set while the ticker makes or changes its timer, to the wait it asks for (see OnTimer).
    private TimeSpan? _arming;

    // The system's timer that runs a firing the provider ran inside CreateTimer or Change (see OnTimer).
    private readonly Timer _deferredFiring;

    private IdleTicker(TimeProvider time)
    {
        _time = time;
        _startedAt = time.GetTimestamp();
        _rearm = WithoutExecutionContext(() => new Timer(static state => ((IdleTicker)state!).Rearm(), this, Timeout.Infinite, Timeout.Infinite));
        _deferredFiring = WithoutExecutionContext(() => new Timer(static state => ((IdleTicker)state!).OnTimer(), this, Timeout.Infinite, Timeout.Infinite));
    }

    /// <summary>Releasers queued or ticking now (tests see that dropped pools leave nothing behind).</summary>
    internal int Scheduled
    {
        get
        {
            lock (_lock)
            {
                return _due.Count + _ticking;
            }
        }
    }

    /// <summary>The ticker of <paramref name="time"/>: one for the system clock, one per other clock while it lives.</summary>
    public static IdleTicker For(TimeProvider time) =>
        ReferenceEquals(time, TimeProvider.System) ? s_system : s_byClock.GetValue(time, static clock => new IdleTicker(clock));

    /// <summary>Ticks <paramref name="releaser"/> every period from one period after now, until <see cref="Stop"/>.</summary>
    public void Start(IdleReleaser releaser)
    {
        lock (_lock)
        {
            releaser.Wanted = true;
            if (releaser.State != IdleReleaser.TickerState.Stopped)
            {
                // Queued already, or ticking now and queued again when that tick ends.
                return;
            }

            // Called where nobody handles the clock's failure (a pool made, a late return waking a disposed pool):
            // a clock that throws is reported, and the timer reads it again soon (see ArmUnsynchronized).
            bool clockRead = TryReadClock(out long now, out _);
            EnqueueUnsynchronized(releaser, now + releaser.PeriodTicks);
            ArmUnsynchronized(now, clockRead);
        }
    }

    /// <summary>Stops ticking <paramref name="releaser"/> and forgets it; <see cref="Start"/> starts it again.</summary>
    public void Stop(IdleReleaser releaser)
    {
        lock (_lock)
        {
            releaser.Wanted = false;
            if (releaser.State == IdleReleaser.TickerState.Queued)
            {
                // Rare (a stop comes from the releaser's own tick, when it is not queued): a linear search is fine.
                _ = _due.Remove(releaser, out _, out _, _sameReleaser);
                releaser.State = IdleReleaser.TickerState.Stopped;
            }
        }
    }

    /// <summary>
    /// The timer's callback, where an exception ends the process. Out of managed memory (a process at its GC heap
    /// limit) the firing is reported and a retry armed (see <see cref="RetryAfterFailedFiring"/>); the firing's own
    /// list is made before a releaser leaves the queue, so none is lost.
    /// </summary>
    /// <remarks>
    /// A provider may run the callback on the caller's thread inside <see cref="TimeProvider.CreateTimer"/> or
    /// <see cref="ITimer.Change"/> (or inside a read of its clock, as a fake clock does), which the ticker calls under
    /// its lock: a firing run there ticked the pools under the lock of whoever called in (a pool being made, a late
    /// return), and its own arming made the timer again before the first was returned, whose callback fired again, until
    /// the stack overflowed and the process ended. Such a firing runs on the system's timer instead, after the wait being
    /// asked for (a callback run inside Change is one that came early), or at once for a callback run inside a read.
    /// </remarks>
    private void OnTimer()
    {
        if (Monitor.IsEntered(_lock))
        {
            _ = _deferredFiring.Change(_arming ?? TimeSpan.Zero, Timeout.InfiniteTimeSpan);
            return;
        }

        try
        {
            Fire();
        }
        catch (OutOfMemoryException error)
        {
            BackgroundFailures.Report("a firing of the idle ticker", error);
            RetryAfterFailedFiring();
        }
    }

    private void Fire()
    {
        List<IdleReleaser> due;
        bool clockRead;
        long timestamp;
        lock (_lock)
        {
            _armedFor = long.MaxValue;

            // A clock that threw tells nothing of what is due: nothing is ticked, and the timer reads it again soon.
            clockRead = TryReadClock(out long now, out timestamp);
            // The list of the last firing, when no other firing holds it (one armed by a start while this ran): a firing
            // at the GC heap limit that made its own threw there, and ticked no pool out of its idle memory
            // (ArrayPoolIdleTickHeapLimitSafetyTests).
            due = _spareDue ?? new List<IdleReleaser>();

            // Room for every releaser queued before any leaves the queue: an Add that grew the list at the limit would
            // throw with a releaser dequeued and on no list, never ticked again. A no-op once the list held as many.
            due.EnsureCapacity(clockRead ? _due.Count : 0);
            _spareDue = null;
            while (clockRead && _due.TryPeek(out IdleReleaser? releaser, out long dueAt) && dueAt <= now)
            {
                _ = _due.Dequeue();
                releaser.State = IdleReleaser.TickerState.Ticking;
                due.Add(releaser);
            }

            _ticking += due.Count;
        }

        try
        {
            foreach (IdleReleaser releaser in due)
            {
                releaser.Tick(timestamp);
            }
        }
        finally
        {
            // All back in one lock, also after a tick that threw, so no other releaser is lost; timed from now, after
            // the ticks, so the next is a whole period after the last one any of their clocks counted.
            lock (_lock)
            {
                // Armed from a reading only if both of the firing's reads worked: after a first read that threw, the
                // releasers it left due wait for the retry step, so a clock failing every other read cannot make the
                // timer fire again and again at once.
                bool closingRead = TryReadClock(out long now, out long endedAt);
                clockRead &= closingRead;
                foreach (IdleReleaser releaser in due)
                {
                    // Its clock counts the next tick from here, after every tick of this firing, not from its start.
                    releaser.MarkTickEnded(closingRead ? endedAt : null);
                    releaser.State = IdleReleaser.TickerState.Stopped;
                    if (releaser.Wanted)
                    {
                        EnqueueUnsynchronized(releaser, now + releaser.PeriodTicks);
                    }
                }

                _ticking -= due.Count;
                due.Clear();
                _spareDue = due;
                ArmUnsynchronized(now, clockRead);
            }
        }
    }

    /// <summary>The step due times are rounded up to: a 32nd of the releaser's period (see the remarks).</summary>
    private static long StepOf(IdleReleaser releaser) => Math.Max(1, releaser.PeriodTicks / FiringsPerPeriod);

    private void EnqueueUnsynchronized(IdleReleaser releaser, long dueAt)
    {
        long grid = StepOf(releaser);
        dueAt = (dueAt + grid - 1) / grid * grid;
        releaser.State = IdleReleaser.TickerState.Queued;
        _due.Enqueue(releaser, dueAt);
    }

    /// <summary>
    /// Arms the timer for the first due releaser unless it is armed for that time or earlier. Without a reading of the
    /// clock (<paramref name="clockRead"/> false: it threw) no due time can be compared with now: the timer reads the
    /// clock again after the shortest retry step of the queued releasers (an eighth of the shortest period), and is
    /// marked armed before any due time until then, so that no start moves the retry later.
    /// </summary>
    private void ArmUnsynchronized(long now, bool clockRead)
    {
        if (!_due.TryPeek(out _, out long dueAt))
        {
            return;
        }

        if (!clockRead)
        {
            if (_armedFor != long.MinValue)
            {
                ArmSafely(long.MinValue, ShortestRetryStep());
            }

            return;
        }

        // A retry's time is not known (it was armed without a reading): with one now, the timer is armed by it.
        if (dueAt < _armedFor || _armedFor == long.MinValue)
        {
            ArmSafely(dueAt, TimeSpan.FromTicks(Math.Clamp(dueAt - now, s_shortestWait.Ticks, s_longestWait.Ticks)));
        }
    }

    /// <summary>
    /// Reads the clock: <paramref name="now"/> the time since the ticker was made, in <see cref="TimeSpan"/> ticks, and
    /// <paramref name="timestamp"/> the provider's own timestamp, for the releasers' clocks. A read that throws is
    /// reported (the pool's <see cref="TimeProvider"/> is the user's; see <see cref="BackgroundFailures"/>) and made
    /// once more at once, so a clock that fails now and then cannot fall in step with the ticker's reads; false when
    /// both threw, with the last reading in <paramref name="now"/>.
    /// </summary>
    private bool TryReadClock(out long now, out long timestamp)
    {
        for (int attempt = 0; attempt < 2; attempt++)
        {
            try
            {
                timestamp = _time.GetTimestamp();
                now = _lastReading = Forward(_time.GetElapsedTime(_startedAt, timestamp).Ticks);
                return true;
            }
            catch (Exception error)
            {
                BackgroundFailures.Report("reading the idle ticker's clock", error);
            }
        }

        now = _lastReading;
        timestamp = 0;
        return false;
    }

    /// <summary>
    /// The ticker's time at a reading of <paramref name="elapsed"/> (the provider's time since the ticker was made):
    /// the last one moved by how far the clock went forward since the last reading, at most the longest wait, and left
    /// where it was when the clock went back. Due times set before a clock stepped back a year would otherwise wait that
    /// year, and those set while it read <see cref="DateTimeOffset.MaxValue"/> would wait for it to come back there: no
    /// pool on it was ticked, and none gave anything back. A longer step makes nothing more due (no due time is more
    /// than a period and a step ahead), and the ticker's time cannot overflow whatever the clock reads.
    /// </summary>
    private long Forward(long elapsed)
    {
        Int128 forward = (Int128)elapsed - _lastElapsed;
        _lastElapsed = elapsed;
        return forward <= 0 ? _lastReading : _lastReading + (long)Int128.Min(forward, s_longestWait.Ticks);
    }
}
