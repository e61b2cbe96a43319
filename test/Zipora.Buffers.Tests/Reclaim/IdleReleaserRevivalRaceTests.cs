using System;
using System.Reflection;
using System.Runtime.CompilerServices;
using System.Threading;
using Microsoft.Extensions.Time.Testing;

namespace Zipora.Buffers.Tests;

/// <summary>
/// A tick that finds its pool collected pauses the releaser, unless the pool's dispose held it strongly meanwhile: the
/// finalizer's work item revives the pool, holds it strongly, disposes it and wakes the releaser, and a wake that finds
/// the releaser running does nothing. So the tick looks again under the pause lock, which the wake takes too. Without
/// that second look, a tick whose first look came before the hold paused the releaser after the wake had passed, and
/// the disposed pool's memory waiting out its delay was never ticked out. The race is between two reads of one field;
/// the test holds the pause lock so the tick waits between them, as a preempted tick would.
/// </summary>
public sealed class IdleReleaserRevivalRaceTests
{
    private static readonly TimeSpan s_delay = TimeSpan.FromMilliseconds(400);

    [Fact]
    public void ATickThatFoundThePoolCollectedKeepsTickingThePoolItsDisposeHeldMeanwhile()
    {
        var time = new FakeTimeProvider();
        var clock = new IdleClock(s_delay, time);
        IdleReleaser releaser = ReleaserOfACollectedPool(clock, time);
        object pauseLock = typeof(IdleReleaser).GetField("_pauseLock", BindingFlags.NonPublic | BindingFlags.Instance)!.GetValue(releaser)!;
        var revived = new TickedPool();

        var tick = new Thread(() => releaser.Tick(time.GetTimestamp()));
        lock (pauseLock)
        {
            tick.Start();

            // The tick found no pool (held weakly, collected; not held strongly yet) and waits for the lock to pause.
            Assert.True(SpinWait.SpinUntil(() => (tick.ThreadState & ThreadState.WaitSleepJoin) != 0, TimeSpan.FromSeconds(10)), "the tick never waited for the pause lock");

            // The finalizer's work item: the pool held strongly, then the wake, which finds the releaser running (this
            // thread holds the lock already, as the wake would have taken it before the tick did).
            releaser.HoldStrongly(revived);
            releaser.Wake();
        }

        Assert.True(tick.Join(TimeSpan.FromSeconds(10)), "the tick never ended");

        // The next period's tick reaches the revived pool, and so do the ticks after it.
        for (int period = 0; period < 4; period++)
        {
            time.Advance(clock.Period);
        }

        Assert.True(revived.Ticks >= 3, $"the revived pool was ticked {revived.Ticks} times in four periods: its releaser paused with the pool held strongly (Wanted: {releaser.Wanted})");
    }

    /// <summary>A releaser whose pool, held only weakly, has been collected.</summary>
    [MethodImpl(MethodImplOptions.NoInlining)]
    private static IdleReleaser ReleaserOfACollectedPool(IdleClock clock, TimeProvider time)
    {
        WeakReference collected = MakeReleaser(clock, time, out IdleReleaser releaser);
        for (int i = 0; i < 10 && collected.IsAlive; i++)
        {
            GC.Collect();
            GC.WaitForPendingFinalizers();
        }

        Assert.False(collected.IsAlive, "the pool was never collected");
        return releaser;
    }

    [MethodImpl(MethodImplOptions.NoInlining)]
    private static WeakReference MakeReleaser(IdleClock clock, TimeProvider time, out IdleReleaser releaser)
    {
        var pool = new TickedPool();
        releaser = new IdleReleaser(pool, clock, time);
        return new WeakReference(pool);
    }

    /// <summary>A pool that counts its ticks.</summary>
    private sealed class TickedPool : IReclaimablePool
    {
        private int _ticks;

        public int Ticks => Volatile.Read(ref _ticks);

        public bool IsDisposed => true;

        public bool HoldsManagedMemory => false;

        public void Trim()
        {
        }

        public void TrimUnderPressure()
        {
        }

        public void ReleaseIdle(long now, long delayInTicks) => Interlocked.Increment(ref _ticks);

        public void PauseForUnload()
        {
        }
    }
}
