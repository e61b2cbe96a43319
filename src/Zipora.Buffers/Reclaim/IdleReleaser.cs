using System;
using System.Threading;

namespace Zipora.Buffers;

/// <summary>
/// Drives a pool's background work: its clock's <see cref="IdleTicker"/> ticks it four times per idle delay; each tick
/// advances the <see cref="IdleClock"/> and asks the pool to release what has been idle for the whole delay.
/// </summary>
/// <remarks>
/// The releaser holds the pool weakly, so a pool nobody references is not kept alive by its own ticks: the first tick
/// that finds it gone stops. A disposed pool may still hold memory that must wait out its delay (a leaked block in
/// quarantine, a mapping returned moments ago); it asks to be held strongly, so that memory is freed on time even
/// after the pool object is dropped, pauses when nothing is left, and wakes when something new has to wait (a
/// buffer returned late). A paused or stopped releaser is not in the ticker's queue: only what waits on it keeps it.
/// </remarks>
internal sealed class IdleReleaser
{
    private readonly WeakReference<IReclaimablePool> _pool;
    private readonly IdleClock _clock;
    private readonly IdleTicker _ticker;
    // A monitor, not a System.Threading.Lock: a contended Lock allocates its wait event on the managed heap, and a late
    // return's wake takes it inside an owner's dispose, where running out of managed memory must not throw (a monitor's
    // contention allocates nothing).
    private readonly object _pauseLock = new();
    private IReclaimablePool? _heldStrongly;
    private bool _paused;

    public IdleReleaser(IReclaimablePool pool, IdleClock clock, TimeProvider time)
    {
        _pool = new WeakReference<IReclaimablePool>(pool);
        _clock = clock;
        PeriodTicks = clock.Period.Ticks;

        // An idle span is counted in whole ticks: memory returned just after a tick waits one tick more than the delay.
        _ticker = IdleTicker.For(time);
        _ticker.Start(this);
    }

    /// <summary>Where the releaser is in its ticker; only the ticker reads or writes it, under its lock.</summary>
    internal enum TickerState
    {
        Stopped,
        Queued,
        Ticking,
    }

    /// <summary>The ticker's view of this releaser; written under the ticker's lock.</summary>
    internal TickerState State { get; set; }

    /// <summary>Whether the ticker should keep ticking it; written under the ticker's lock.</summary>
    internal bool Wanted { get; set; }

    /// <summary>The clock's period, in <see cref="TimeSpan"/> ticks.</summary>
    internal long PeriodTicks { get; }

    /// <summary>Keeps the pool reachable from the releaser from now on (a disposed pool draining its memory).</summary>
    public void HoldStrongly(IReclaimablePool pool) => Volatile.Write(ref _heldStrongly, pool);

    /// <summary>Stops ticking if <paramref name="nothingWaiting"/> says so; <see cref="Wake"/> starts again.</summary>
    /// <remarks>
    /// Checked and paused under one lock, and whatever adds work adds it before it calls <see cref="Wake"/>, which
    /// takes the same lock: so either the check sees the new work, or the wake sees the pause.
    /// </remarks>
    public void PauseIf(Func<bool> nothingWaiting)
    {
        lock (_pauseLock)
        {
            if (!_paused && nothingWaiting())
            {
                _paused = true;
                _ticker.Stop(this);
            }
        }
    }

    /// <summary>Starts a paused releaser again, a period from now: something now waits for a tick.</summary>
    /// <remarks>
    /// Called where something has to wait (a late return to a disposed pool, the pool's dispose, a leaked block on the
    /// finalizer thread), none of whose callers has anything to do with a failure to start. The ticker deals with a
    /// clock or timer that throws itself; anything else a start throws is reported as background work
    /// (<see cref="BackgroundFailures"/>) and leaves the releaser paused for the next wake.
    /// </remarks>
    public void Wake()
    {
        lock (_pauseLock)
        {
            if (!_paused)
            {
                return;
            }

            try
            {
                _ticker.Start(this);
                _paused = false;
            }
            catch (Exception error)
            {
                BackgroundFailures.Report("waking the idle clock", error);
            }
        }
    }

    /// <summary>Called by the ticker, never twice at once; a tick that throws is reported and skipped (see <see cref="BackgroundFailures"/>).</summary>
    /// <param name="timestamp">The pool's clock, as the ticker read it when it fired.</param>
    internal void Tick(long timestamp)
    {
        try
        {
            TickUnguarded(timestamp);
        }
        catch (Exception error)
        {
            BackgroundFailures.Report("a tick of the idle clock", error);
        }
    }

    /// <summary>Called by the ticker after the firing that ticked this releaser (see <see cref="IdleClock.MarkTickEnded"/>).</summary>
    internal void MarkTickEnded(long? endedAt) => _clock.MarkTickEnded(endedAt);

    private void TickUnguarded(long timestamp)
    {
        long now = _clock.Advance(timestamp);
        IReclaimablePool? pool = Volatile.Read(ref _heldStrongly);
        if (pool is not null || _pool.TryGetTarget(out pool))
        {
            pool.ReleaseIdle(now, _clock.DelayInTicks);
            return;
        }

        // The pool was collected. Paused rather than gone: a pool collected without dispose is disposed by its
        // finalizer's work item, which holds it strongly first and then wakes the releaser when its memory has to
        // wait. Checked again under the lock: a wake that came since found the releaser running and did nothing,
        // so the hold it followed must be seen here, or that memory would never be ticked out.
        lock (_pauseLock)
        {
            if (Volatile.Read(ref _heldStrongly) is null)
            {
                _paused = true;
                _ticker.Stop(this);
            }
        }
    }
}
