using System;
using System.Threading;

namespace Zipora.Buffers;

/// <summary>
/// Gives idle memory back in the background: a timer ticks four times per idle delay, advances the
/// <see cref="IdleClock"/>, and asks the pool to release what has been idle for the whole delay.
/// </summary>
/// <remarks>The timer holds the pool weakly, so a pool nobody references is not kept alive by its own timer.</remarks>
internal sealed class IdleReleaser : IDisposable
{
    private const int TicksPerDelay = 4;
    private static readonly TimeSpan s_minimumPeriod = TimeSpan.FromMilliseconds(10);

    private readonly WeakReference<IReclaimablePool> _pool;
    private readonly IdleClock _clock;
    private readonly ITimer _timer;
    private int _ticking;

    public IdleReleaser(IReclaimablePool pool, IdleClock clock, TimeProvider time, TimeSpan delay)
    {
        _pool = new WeakReference<IReclaimablePool>(pool);
        _clock = clock;
        TimeSpan period = TimeSpan.FromTicks(Math.Max(delay.Ticks / TicksPerDelay, s_minimumPeriod.Ticks));

        // An idle span is counted in whole ticks: memory returned just after a tick waits one tick more than the delay.
        DelayInTicks = Math.Max(1, (long)Math.Ceiling(delay / period));
        _timer = time.CreateTimer(static state => ((IdleReleaser)state!).Tick(), this, period, period);
    }

    /// <summary>The delay, in ticks of the clock.</summary>
    public long DelayInTicks { get; }

    public void Dispose() => _timer.Dispose();

    private void Tick()
    {
        // Timer callbacks may overlap when a release runs longer than the period; skip the late one.
        if (Interlocked.Exchange(ref _ticking, 1) != 0)
        {
            return;
        }

        try
        {
            Release();
        }
        finally
        {
            Volatile.Write(ref _ticking, 0);
        }
    }

    private void Release()
    {
        long now = _clock.Advance();
        if (_pool.TryGetTarget(out IReclaimablePool? pool))
        {
            pool.ReleaseIdle(now, DelayInTicks);
        }
        else
        {
            _timer.Dispose();
        }
    }
}
