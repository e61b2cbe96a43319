using System;
using System.Buffers;
using System.Diagnostics.Tracing;
using System.Threading;

namespace Zipora.Buffers.Tests;

/// <summary>
/// A background failure is caught under the idle ticker's lock, which every pool on one clock shares, and an unmap the
/// OS refuses under a slab heap's lock. An <see cref="EventListener"/> runs on the thread that writes an event: one
/// that waits there for another thread needing that lock (making a pool on the same clock, renting from the same
/// tier) must not deadlock the pools. Runs alone: it provokes background failures and listens to the pools' event
/// source.
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
        using var listener = new WaitingListener("BackgroundWorkFailed", () => new TieredMemoryPool(new TieredMemoryPoolOptions { TimeProvider = clock, IdleReleaseDelay = SafetyCases.IdleDelay }).Dispose());
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
            listener.OtherThreadDone.Wait(TimeSpan.FromSeconds(30));
            BackgroundFailureWatch.ProvokedSince(before);
        }

        Assert.True(escaped is null, $"an exception left the idle ticker's timer callback: {escaped}");
        Assert.True(listener.OtherThreadFailed is null, $"making a pool on the listener's behalf threw: {listener.OtherThreadFailed}");
        Assert.True(listener.OtherThreadDoneInTime, "a pool made on another thread while a listener of a BackgroundWorkFailed event waited for it was not made within 5 s: the event was written under the idle ticker's lock, which the new pool needs");
    }

    [Fact]
    public void AListenerOfARefusedUnmapThatWaitsForARentFromTheSameTierOnAnotherThreadDoesNotDeadlockThePool()
    {
        var time = new Microsoft.Extensions.Time.Testing.FakeTimeProvider();
        var allocator = new ScriptedPageAllocator { RefuseUnmap = true };
        using var pool = new TieredMemoryPool(new TieredMemoryPoolOptions { PageAllocator = allocator, TimeProvider = time, IdleReleaseDelay = SafetyCases.IdleDelay, AdaptiveCaches = false });
        RentAndReturn(pool, 8192);

        // Traffic of another class keeps the tier from going idle, so the 8 KB slab is still there two delays on, when a
        // trim gives it back: returned over a delay ago, it is unmapped at once, under the slab heap's lock.
        for (int tick = 0; tick < 8; tick++)
        {
            RentAndReturn(pool, 4096);
            time.Advance(SafetyCases.IdleDelay / 4);
        }

        // A fresh thread renting a class the tier never carved goes to that slab heap.
        using var listener = new WaitingListener("UnmapRefused", () => pool.Rent(2048).Dispose());
        pool.Trim();
        Assert.True(listener.Waited.Wait(TimeSpan.FromSeconds(30)), $"no UnmapRefused event reached the listener within 30 s ({pool.GetStatistics().UnmapFailures} unmaps refused)");
        Assert.True(listener.OtherThreadDone.Wait(TimeSpan.FromSeconds(30)), "the rent on the listener's behalf never ended");

        Assert.True(listener.OtherThreadFailed is null, $"renting on the listener's behalf threw: {listener.OtherThreadFailed}");
        Assert.True(listener.OtherThreadDoneInTime, "a rent on another thread while a listener of an UnmapRefused event waited for it did not end within 5 s: the event was written under the slab heap's lock, which the rent needs");
        allocator.RefuseUnmap = false;
    }

    private static void RentAndReturn(TieredMemoryPool pool, int size)
    {
        using IMemoryOwner<byte> owner = pool.Rent(size);
        owner.Memory.Span[0] = 1;
    }

    /// <summary>
    /// At the first event named <c>eventName</c>, runs <c>onOtherThread</c> on another thread and waits up to 5 s for it,
    /// then throws, as a careless listener might (the event source keeps that to itself).
    /// </summary>
    private sealed class WaitingListener(string eventName, Action onOtherThread) : PoolEventListener
    {
        private int _seen;

        public ManualResetEventSlim Waited { get; } = new();

        public ManualResetEventSlim OtherThreadDone { get; } = new();

        public bool OtherThreadDoneInTime { get; private set; }

        public Exception? OtherThreadFailed { get; private set; }

        public override void Dispose()
        {
            base.Dispose();
            Waited.Dispose();
            OtherThreadDone.Dispose();
        }

        protected override void OnEventWritten(EventWrittenEventArgs eventData)
        {
            if (eventData.EventName != eventName || Interlocked.Exchange(ref _seen, 1) != 0)
            {
                return;
            }

            var other = new Thread(() =>
            {
                OtherThreadFailed = Record.Exception(onOtherThread);
                OtherThreadDone.Set();
            });
            other.Start();
            OtherThreadDoneInTime = OtherThreadDone.Wait(TimeSpan.FromSeconds(5));
            Waited.Set();
            throw new InvalidOperationException("a listener that throws");
        }
    }
}
