using System;
using System.Threading;

namespace Zipora.Buffers;

/// <summary>The idle ticker's timer: arming it, and what a timer that refuses or a firing that fails falls back on.</summary>
internal sealed partial class IdleTicker
{
    /// <summary>An eighth of the shortest queued period, for retries (a failure's path: it looks at every releaser).</summary>
    private TimeSpan ShortestRetryStep()
    {
        long shortest = long.MaxValue;
        foreach ((IdleReleaser releaser, long _) in _due.UnorderedItems)
        {
            shortest = Math.Min(shortest, Math.Max(1, releaser.PeriodTicks / RetriesPerPeriod));
        }

        return TimeSpan.FromTicks(Math.Clamp(shortest, s_shortestWait.Ticks, s_longestWait.Ticks));
    }

    /// <summary>
    /// Arms the timer to fire after <paramref name="wait"/> (due at <paramref name="armedFor"/>). The timer is the
    /// pool's <see cref="TimeProvider"/>'s: one that refuses the new time (throws, or returns false as a disposed timer
    /// does) is reported and replaced by a new one, made once more at once if that throws, for a provider that failed
    /// once; if both throw, the system's timer tries again (see <see cref="ScheduleRearm"/>).
    /// </summary>
    private void ArmSafely(long armedFor, TimeSpan wait)
    {
        _armedFor = armedFor;
        try
        {
            if (TryArmTimer(wait))
            {
                return;
            }

            BackgroundFailures.Report("arming the idle ticker's timer", new InvalidOperationException("The idle ticker's timer refused a new due time: ITimer.Change returned false."));
        }
        catch (Exception error)
        {
            BackgroundFailures.Report("arming the idle ticker's timer", error);
        }

        RetireRefusedTimer();
        for (int attempt = 0; attempt < 2; attempt++)
        {
            try
            {
                _ = TryArmTimer(wait);
                return;
            }
            catch (Exception error)
            {
                BackgroundFailures.Report("making the idle ticker's timer anew", error);
            }
        }

        // No timer: nothing would ever tick or arm again, so the system's own timer tries again later.
        _armedFor = long.MaxValue;
        ScheduleRearm();
    }

    /// <summary>
    /// After a firing that ran out of managed memory: the provider's timer is armed for a retry, or failing that the
    /// system's timer made with the ticker. With no memory even for those (a timer queue's first use allocates), the
    /// ticker is left unarmed, and the next releaser started or woken arms it: the one state that cannot end the
    /// process or hand anything out twice.
    /// </summary>
    private void RetryAfterFailedFiring()
    {
        try
        {
            lock (_lock)
            {
                _armedFor = long.MaxValue;
                ArmUnsynchronized(_lastReading, clockRead: false);
            }
        }
        catch (OutOfMemoryException)
        {
            try
            {
                lock (_lock)
                {
                    _armedFor = long.MaxValue;
                    ScheduleRearm();
                }
            }
            catch (OutOfMemoryException)
            {
                lock (_lock)
                {
                    _armedFor = long.MaxValue;
                }
            }
        }
    }

    /// <summary>
    /// Tries again, on a timer of the system's (the provider's would not be made), to make the provider's timer, a
    /// step of the shortest queued period from now but at most a second of real time on: the provider may be a fake
    /// clock that real time does not move. Called under the lock.
    /// </summary>
    private void ScheduleRearm()
    {
        TimeSpan retry = TimeSpan.FromTicks(Math.Min(ShortestRetryStep().Ticks, TimeSpan.TicksPerSecond));
        _ = _rearm.Change(retry, Timeout.InfiniteTimeSpan);
    }

    /// <summary>Arms the provider's timer that a refusal left unmade or a failed firing left unarmed; it reads the clock itself when it fires.</summary>
    private void Rearm()
    {
        try
        {
            RearmUnguarded();
        }
        catch (OutOfMemoryException error)
        {
            // A timer's callback: nothing may leave it. Out of managed memory, the system's timer tries again.
            BackgroundFailures.Report("arming the idle ticker's timer again", error);
            lock (_lock)
            {
                ScheduleRearm();
            }
        }
    }

    private void RearmUnguarded()
    {
        lock (_lock)
        {
            // No timer (a refusal left it unmade), or one a firing out of managed memory could not arm again.
            if ((_timer is null || _armedFor == long.MaxValue) && _due.Count > 0)
            {
                ArmSafely(long.MinValue, ShortestRetryStep());
            }
        }
    }

    /// <summary>
    /// Forgets the timer and disposes it on a thread-pool thread: this runs under the lock and often on the timer's own
    /// callback, and a provider's timer may wait in its dispose for its callbacks to end, as
    /// <see cref="Timer.Dispose(WaitHandle)"/> can; here it would wait for itself, or for a firing waiting for the lock.
    /// </summary>
    private void RetireRefusedTimer()
    {
        ITimer? refused = _timer;
        _timer = null;
        if (refused is not null)
        {
            _ = ThreadPool.UnsafeQueueUserWorkItem(static timer => DisposeRefused(timer), refused, preferLocal: false);
        }
    }

    private static void DisposeRefused(ITimer refused)
    {
        try
        {
            refused.Dispose();
        }
        catch (Exception error)
        {
            BackgroundFailures.Report("disposing the idle ticker's refused timer", error);
        }
    }

    /// <summary>False when the timer refused the new due time without throwing (<see cref="ITimer.Change"/> returned false).</summary>
    private bool TryArmTimer(TimeSpan dueTime)
    {
        // A callback the provider runs inside these calls waits for this due time (see OnTimer).
        _arming = dueTime;
        try
        {
            if (_timer is not null)
            {
                return _timer.Change(dueTime, Timeout.InfiniteTimeSpan);
            }

            _timer = WithoutExecutionContext(() => _time.CreateTimer(static state => ((IdleTicker)state!).OnTimer(), this, dueTime, Timeout.InfiniteTimeSpan));
            return true;
        }
        finally
        {
            _arming = null;
        }
    }

    /// <summary>
    /// Makes a timer without the calling thread's execution context: the ticker's timers live as long as the clock,
    /// and must not carry the first pool's (its AsyncLocals) into every tick of every pool. A timer takes the context
    /// when it is made; changing its due time later takes none.
    /// </summary>
    internal static T WithoutExecutionContext<T>(Func<T> make)
    {
        if (ExecutionContext.IsFlowSuppressed())
        {
            return make();
        }

        using (ExecutionContext.SuppressFlow())
        {
            return make();
        }
    }
}
