using System;
using System.Diagnostics;
using System.Threading;

namespace Zipora.Buffers.Tests;

/// <summary>
/// A <see cref="TimeProvider"/> whose timers run their callback at once on the caller's thread, inside
/// <see cref="TimeProvider.CreateTimer"/> or <see cref="ITimer.Change"/>, before the ticker has its timer back. Each test
/// runs in a process of its own: the failure it guards against is a stack overflow, which ends the process.
/// </summary>
public sealed class SynchronousTimerSafetyTests
{
    private static readonly TimeSpan s_delay = TimeSpan.FromMilliseconds(200);

    /// <summary>
    /// The ticker makes and arms its timer under its lock: a callback run inside ran a firing there, whose arming
    /// made the timer again (the first was not yet returned), whose callback ran a firing, and so on until the stack
    /// overflowed and the process ended (exit code 134, "Stack overflow."). Such a firing now waits for its due time on
    /// a timer of the system's, and the memory still goes back.
    /// </summary>
    [Fact]
    public void ATimerThatFiresInsideCreateTimerNeitherOverflowsTheStackNorStopsTheRelease()
    {
        if (!IsolatedProcess.RunsElsewhere(GetType(), nameof(ATimerThatFiresInsideCreateTimerNeitherOverflowsTheStackNorStopsTheRelease)))
        {
            IdleMemoryGoesBackOn(new FiresOnTheCallersThread(alsoInsideChange: false));
        }
    }

    /// <summary>As above, with every <see cref="ITimer.Change"/> firing at once too: the firings it sets off wait for their due time.</summary>
    [Fact]
    public void ATimerThatFiresInsideEveryChangeNeitherOverflowsTheStackNorStopsTheRelease()
    {
        if (!IsolatedProcess.RunsElsewhere(GetType(), nameof(ATimerThatFiresInsideEveryChangeNeitherOverflowsTheStackNorStopsTheRelease)))
        {
            IdleMemoryGoesBackOn(new FiresOnTheCallersThread(alsoInsideChange: true));
        }
    }

    private static void IdleMemoryGoesBackOn(FiresOnTheCallersThread clock)
    {
        using var pool = new TieredMemoryPool(new TieredMemoryPoolOptions { IdleReleaseDelay = s_delay, TimeProvider = clock });
        pool.Rent(100_000).Dispose();
        pool.Rent(4096).Dispose();
        TimeSpan cpuBefore = ProcessCpu.UsedSoFar();
        var waited = Stopwatch.StartNew();
        while (waited.Elapsed < 25 * s_delay && pool.GetStatistics().BytesRetained > 0)
        {
            Thread.Sleep(20);
        }

        Assert.True(clock.FiredInside > 0, "precondition: a callback ran inside the provider's CreateTimer or Change");
        Assert.True(pool.GetStatistics().BytesRetained == 0, $"{pool.GetStatistics().BytesRetained} bytes still cached after {waited.ElapsedMilliseconds} ms (delay {s_delay.TotalMilliseconds} ms)");

        // The firings set off inside Change wait for their due time: the ticks do not spin.
        int firedBefore = clock.FiredInside;
        Thread.Sleep(1000);
        TimeSpan cpu = ProcessCpu.UsedSoFar() - cpuBefore;
        int fired = clock.FiredInside - firedBefore;
        TestContext.Current.TestOutputHelper?.WriteLine($"{fired} firings inside the provider in 1 s idle; {cpu.TotalMilliseconds} ms CPU in all");
        Assert.True(fired < 100, $"{fired} firings inside the provider's calls in 1 s of an idle 50 ms period");
    }

    /// <summary>Real time and the system's timers, whose callback also runs at once inside CreateTimer (and Change).</summary>
    private sealed class FiresOnTheCallersThread(bool alsoInsideChange) : TimeProvider
    {
        private int _firedInside;

        public int FiredInside => Volatile.Read(ref _firedInside);

        public override ITimer CreateTimer(TimerCallback callback, object? state, TimeSpan dueTime, TimeSpan period)
        {
            FireInside(callback, state);
            return new Timer(this, callback, state, System.CreateTimer(callback, state, dueTime, period));
        }

        private void FireInside(TimerCallback callback, object? state)
        {
            Interlocked.Increment(ref _firedInside);
            callback(state);
        }

        private sealed class Timer(FiresOnTheCallersThread clock, TimerCallback callback, object? state, ITimer inner) : ITimer
        {
            public bool Change(TimeSpan dueTime, TimeSpan period)
            {
                if (clock.AlsoInsideChange)
                {
                    clock.FireInside(callback, state);
                }

                return inner.Change(dueTime, period);
            }

            public void Dispose() => inner.Dispose();

            public System.Threading.Tasks.ValueTask DisposeAsync() => inner.DisposeAsync();
        }

        private bool AlsoInsideChange => alsoInsideChange;
    }
}
