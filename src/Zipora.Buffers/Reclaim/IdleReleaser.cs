using System;
using System.Threading;

namespace Zipora.Buffers;

/// <summary>
/// Drives a pool's background work: a timer ticks four times per idle delay, advances the <see cref="IdleClock"/>, and
/// asks the pool to release what has been idle for the whole delay.
/// </summary>
/// <remarks>
/// The timer holds the pool weakly, so a pool nobody references is not kept alive by its own timer. A disposed pool
/// may still hold memory that must wait out its delay (a leaked block in quarantine, a mapping returned moments
/// ago); it asks to be held strongly, so that memory is freed on time even after the pool object is dropped, pauses
/// the timer when nothing is left, and wakes it when something new has to wait (a buffer returned late).
/// </remarks>
internal sealed class IdleReleaser
{
    private readonly WeakReference<IReclaimablePool> _pool;
    private readonly IdleClock _clock;
    private readonly ITimer _timer;
    private readonly Lock _pauseLock = new();
    private IReclaimablePool? _heldStrongly;
    private bool _paused;
    private int _ticking;

    public IdleReleaser(IReclaimablePool pool, IdleClock clock, TimeProvider time)
    {
        _pool = new WeakReference<IReclaimablePool>(pool);
        _clock = clock;

        // An idle span is counted in whole ticks: memory returned just after a tick waits one tick more than the delay.
        _timer = time.CreateTimer(static state => ((IdleReleaser)state!).Tick(), this, clock.Period, clock.Period);
    }

    /// <summary>Keeps the pool reachable from the timer from now on (a disposed pool draining its memory).</summary>
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
                _timer.Change(Timeout.InfiniteTimeSpan, Timeout.InfiniteTimeSpan);
            }
        }
    }

    /// <summary>Starts a paused timer again: something now waits for a tick.</summary>
    public void Wake()
    {
        lock (_pauseLock)
        {
            if (_paused)
            {
                _paused = false;
                _timer.Change(_clock.Period, _clock.Period);
            }
        }
    }

    private void Tick()
    {
        // Timer callbacks may overlap when a release runs longer than the period; skip the late one.
        if (Interlocked.Exchange(ref _ticking, 1) != 0)
        {
            return;
        }

        try
        {
            long now = _clock.Advance();
            IReclaimablePool? pool = Volatile.Read(ref _heldStrongly);
            if (pool is not null || _pool.TryGetTarget(out pool))
            {
                pool.ReleaseIdle(now, _clock.DelayInTicks);
            }
            else
            {
                _timer.Dispose();
            }
        }
        finally
        {
            Volatile.Write(ref _ticking, 0);
        }
    }
}
