using System;
using System.Collections.Generic;
using Microsoft.Extensions.Time.Testing;

namespace Zipora.Buffers.Tests;

/// <summary>
/// A process's first dispose of a pool comes at its GC heap limit: a service shut down in a container out of managed
/// memory. Every tier's dispose empties the threads' caches through a callback; made from a static lambda, the callback
/// came from the compiler's closure class, whose type initializer runs at the first use and allocates. It threw there,
/// and a type initializer that threw throws for good: the pool's dispose was never finished (its regions and slabs
/// mapped for the life of the process), and every later trim, idle release and dispose of every pool threw
/// TypeInitializationException. The callbacks are now made with each tier.
/// </summary>
[Collection(HeapFiller.AtTheHeapLimit)]
public sealed class SlotEmptyingAtTheHeapLimitSafetyTests
{
    private const int FullHeapProbe = 8 * 1024;

    [Fact]
    public void TheProcesssFirstDisposeAtTheHeapLimitLeavesEveryLaterTrimAndDisposeWorking()
    {
        if (IsolatedProcess.RunsElsewhereAtHeapLimit(typeof(SlotEmptyingAtTheHeapLimitSafetyTests), nameof(TheProcesssFirstDisposeAtTheHeapLimitLeavesEveryLaterTrimAndDisposeWorking)))
        {
            return;
        }

        long backgroundFailures = BackgroundFailures.Count;
        var time = new FakeTimeProvider();
        var pool = new TieredMemoryPool(new TieredMemoryPoolOptions { TimeProvider = time, IdleReleaseDelay = SafetyCases.IdleDelay, EnableHugepages = false });
        var filler = new List<byte[]>(400_000);
        bool heapFull = false;

        // The fresh thread parks a block and a region in its caches with room, then disposes the pool with the heap full:
        // the first emptying of thread caches in the process.
        Exception? atTheLimit = HeapFiller.ThrownOnAFreshThread(
            withRoom: () => RentAndReturn(pool),
            atTheLimit: () =>
            {
                // Probed before, not after: the dispose lets go of managed objects (its thread caches' slots), garbage a
                // failed allocation's collection finds room in. A fill that left room (1 run in 8) is topped up.
                heapFull = HeapFiller.TopUpUntilFull(filler, FullHeapProbe);
                pool.Dispose();
            },
            filler);
        filler.Clear();
        GC.Collect();

        // With room again: the caller's retry (or the timer's) finishes a dispose that stopped partway, and another pool
        // trims and disposes as any would.
        Exception? retry = Record.Exception(pool.Dispose);
        var other = new TieredMemoryPool(new TieredMemoryPoolOptions { TimeProvider = time, IdleReleaseDelay = SafetyCases.IdleDelay, EnableHugepages = false });
        Exception? otherTrim = null;
        Assert.Null(FreshThread.Run(() =>
        {
            RentAndReturn(other);
            otherTrim = Record.Exception(other.Trim);
        }));
        Exception? otherDispose = Record.Exception(other.Dispose);
        SafetyCases.Advance(time, SafetyCases.IdleDelay * 3);
        BackgroundFailureWatch.ProvokedSince(backgroundFailures);

        Assert.True(heapFull, $"the heap had room for {FullHeapProbe} bytes before the dispose: the test proves nothing");
        Assert.True(retry is null && otherTrim is null && otherDispose is null, $"at the limit: {atTheLimit}\nthe retry: {retry}\nanother pool's trim: {otherTrim}\nits dispose: {otherDispose}");
        foreach (TieredMemoryPool disposed in new[] { pool, other })
        {
            TieredMemoryPoolStatistics drained = disposed.GetStatistics();
            Assert.True(drained.MmapCalls == drained.MunmapCalls && drained.BytesAwaitingRelease == 0, $"three delays after the dispose: {drained}");
        }
    }

    /// <summary>Leaves a block in the thread's medium cache, a region in its large slot and a block parked by a segmented buffer.</summary>
    private static void RentAndReturn(TieredMemoryPool pool)
    {
        pool.Rent(4096).Dispose();
        pool.Rent(100_000).Dispose();
        _ = ParkedBlocks.WriteMessage(new SegmentedBufferOptions { Pool = pool }, 3);
    }
}
