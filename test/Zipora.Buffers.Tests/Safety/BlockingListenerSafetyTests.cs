using System;
using System.Diagnostics.Tracing;
using System.Threading;

namespace Zipora.Buffers.Tests;

/// <summary>
/// A background failure is caught under the idle ticker's lock, which every pool on one clock shares. An
/// <see cref="EventListener"/> runs on the thread that writes an event: one that waits there for another thread (one
/// making a pool on the same clock, which takes that lock) must not deadlock the pools. Runs alone: it provokes
/// background failures and listens to the pools' event source.
/// </summary>
[Collection(BackgroundFailureWatch.ProvokingTests)]
public sealed class BlockingListenerSafetyTests
{
    [Fact]
    public void AListenerThatWaitsForAPoolMadeOnTheSameClockOnAnotherThreadDoesNotDeadlockThePools()
    {
        var clock = new HostileClock();
        using var pool = new TieredMemoryPool(new TieredMemoryPoolOptions { TimeProvider = clock, IdleReleaseDelay = SafetyCases.IdleDelay });
        long before = BackgroundFailures.Count;
        using var listener = new WaitingListener(clock);
        Exception? escaped;
        try
        {
            // The firing's read of the clock fails, and so does the read made once more: two reports. The firing runs on
            // this thread (the fake clock's Advance); the pool made on the listener's behalf reads it on another.
            clock.FailNextReadsOnThisThread(2);
            escaped = Record.Exception(() => SafetyCases.Advance(clock.Fake, SafetyCases.IdleDelay));
            Assert.True(listener.Waited.Wait(TimeSpan.FromSeconds(30)), "no BackgroundWorkFailed event reached the listener within 30 s");
        }
        finally
        {
            clock.Heal();
            listener.PoolMade.Wait(TimeSpan.FromSeconds(30));
            BackgroundFailureWatch.Provoked(BackgroundFailures.Count - before);
        }

        Assert.True(escaped is null, $"an exception left the idle ticker's timer callback: {escaped}");
        Assert.True(listener.MakerFailed is null, $"making a pool on the listener's thread threw: {listener.MakerFailed}");
        Assert.True(listener.PoolMadeInTime, "a pool made on another thread while a listener of a BackgroundWorkFailed event waited for it was not made within 5 s: the event was written under the idle ticker's lock, which the new pool needs");
    }

    /// <summary>
    /// At the first <c>BackgroundWorkFailed</c> event, makes a pool on the clock on another thread and waits up to 5 s for
    /// it, then throws, as a careless listener might (the event source keeps that to itself).
    /// </summary>
    private sealed class WaitingListener(HostileClock clock) : EventListener
    {
        private int _seen;

        public ManualResetEventSlim Waited { get; } = new();

        public ManualResetEventSlim PoolMade { get; } = new();

        public bool PoolMadeInTime { get; private set; }

        public Exception? MakerFailed { get; private set; }

        public override void Dispose()
        {
            base.Dispose();
            Waited.Dispose();
            PoolMade.Dispose();
        }

        protected override void OnEventSourceCreated(EventSource eventSource)
        {
            if (eventSource.Name == "Zipora-Buffers")
            {
                EnableEvents(eventSource, EventLevel.Verbose);
            }
        }

        protected override void OnEventWritten(EventWrittenEventArgs eventData)
        {
            if (eventData.EventName != "BackgroundWorkFailed" || Interlocked.Exchange(ref _seen, 1) != 0)
            {
                return;
            }

            var maker = new Thread(() =>
            {
                MakerFailed = Record.Exception(() => new TieredMemoryPool(new TieredMemoryPoolOptions { TimeProvider = clock, IdleReleaseDelay = SafetyCases.IdleDelay }).Dispose());
                PoolMade.Set();
            });
            maker.Start();
            PoolMadeInTime = PoolMade.Wait(TimeSpan.FromSeconds(5));
            Waited.Set();
            throw new InvalidOperationException("a listener that throws");
        }
    }
}
