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
/// ago); it asks to be held strongly until then, so that memory is freed on time even after the pool object is
/// dropped, and stops the timer itself when nothing is left.
/// </remarks>
internal sealed class IdleReleaser : IDisposable
{
    private readonly WeakReference<IReclaimablePool> _pool;
    private readonly IdleClock _clock;
    private readonly ITimer _timer;
    private IReclaimablePool? _heldUntilDrained;
    private int _ticking;

    public IdleReleaser(IReclaimablePool pool, IdleClock clock, TimeProvider time)
    {
        _pool = new WeakReference<IReclaimablePool>(pool);
        _clock = clock;

        // An idle span is counted in whole ticks: memory returned just after a tick waits one tick more than the delay.
        _timer = time.CreateTimer(static state => ((IdleReleaser)state!).Tick(), this, clock.Period, clock.Period);
    }

    /// <summary>Keeps the pool reachable from the timer until it stops the timer (a disposed pool draining its memory).</summary>
    public void HoldUntilDrained(IReclaimablePool pool) => Volatile.Write(ref _heldUntilDrained, pool);

    public void Dispose()
    {
        _timer.Dispose();
        Volatile.Write(ref _heldUntilDrained, null);
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
            IReclaimablePool? pool = Volatile.Read(ref _heldUntilDrained);
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
