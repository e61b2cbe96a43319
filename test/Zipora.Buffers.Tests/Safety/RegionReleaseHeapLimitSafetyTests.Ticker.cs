using System;
using System.Buffers;
using System.Collections.Generic;
using System.Reflection;
using System.Threading;
using Microsoft.Extensions.Time.Testing;

namespace Zipora.Buffers.Tests;

/// <summary>The idle ticker's timer firing at the GC heap limit.</summary>
public sealed partial class RegionReleaseHeapLimitSafetyTests
{
    /// <summary>
    /// The ticker's timer callback (IdleTicker.OnTimer) run with the heap full must not throw: for the system clock,
    /// which every pool uses by default and shares one ticker, it is a <see cref="System.Threading.Timer"/> callback on
    /// the thread pool, where an exception is unhandled and ends the process; and the one-shot timer is re-armed only
    /// in the callback's finally, which an exception before it skips, so every pool on the clock would stop ticking.
    /// The callback is bound before the heap is filled and called directly, so nothing but it runs at the limit.
    /// </summary>
    [Fact]
    public void TimerCallbackAtTheHeapLimitDoesNotThrow()
    {
        if (IsolatedProcess.RunsElsewhereAtHeapLimit(typeof(RegionReleaseHeapLimitSafetyTests), nameof(TimerCallbackAtTheHeapLimitDoesNotThrow)))
        {
            return;
        }

        long backgroundFailures = BackgroundFailures.Count;
        var time = new FakeTimeProvider();
        using var pool = new TieredMemoryPool(new TieredMemoryPoolOptions { TimeProvider = time, IdleReleaseDelay = SafetyCases.IdleDelay });
        IdleTicker ticker = IdleTicker.For(time);
        Action onTimer = typeof(IdleTicker).GetMethod("OnTimer", BindingFlags.NonPublic | BindingFlags.Instance)!.CreateDelegate<Action>(ticker);
        Exception? thrown = null;
        var worker = new Thread(() =>
        {
            // Compiled while there is room.
            List<IMemoryOwner<byte>> owners = DepotReservation.Rent(pool, RegionSize, 4);
            owners.ForEach(static owner => owner.Dispose());
            SafetyCases.Advance(time, SafetyCases.IdleDelay);
            onTimer();
            thrown = HeapFiller.OutOfMemoryFrom(onTimer);
        });
        worker.Start();
        worker.Join();
        BackgroundFailureWatch.ProvokedSince(backgroundFailures);
        Assert.True(thrown is null, $"an OutOfMemoryException left the idle ticker's timer callback at the heap limit (on the system clock an unhandled exception on a thread-pool thread, which ends the process): {thrown}");
    }
}
