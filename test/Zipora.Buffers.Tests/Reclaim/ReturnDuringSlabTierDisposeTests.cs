using System;
using System.Buffers;
using System.Reflection;
using System.Threading;
using Microsoft.Extensions.Time.Testing;

namespace Zipora.Buffers.Tests;

/// <summary>
/// A slab tier's dispose stops carving (from then on each slab waits for every block it carved), empties the thread
/// caches into the depots and releases what the depots hold. A block returned meanwhile, on a thread whose cache the
/// disposed tier no longer makes, comes back to the slab heap itself (<c>SlabHeap.ReleaseAfterDispose</c>). When the
/// dispose counted the rented blocks only after the caches were empty, such a return was once taken off a count not
/// yet made, which the accounting then overwrote: its slab waited for a block that had come back, and stayed mapped
/// for the life of the process (the suite's dispose storms landed a return there 1 run in 4). Here the test holds a
/// depot's lock, so the dispose waits halfway through emptying the caches while the block comes back, every run.
/// </summary>
public sealed class ReturnDuringSlabTierDisposeTests
{
    [Fact]
    public void ABlockReturnedWhileTheDisposeEmptiesTheCachesIsUnmappedWithItsSlab()
    {
        var time = new FakeTimeProvider();
        var allocator = new LiveMappingsAllocator();
        var pool = new TieredMemoryPool(new TieredMemoryPoolOptions { TimeProvider = time, PageAllocator = allocator, IdleReleaseDelay = TimeSpan.FromMilliseconds(400) });
        IMemoryOwner<byte> late = pool.Rent(4096);
        object depotLock = DepotReservation.LockOf(pool, "_medium", 4096);
        var disposer = new Thread(pool.Dispose);
        Thread? returner = null;
        Monitor.Enter(depotLock);
        try
        {
            // The dispose has stopped the medium tier's carving and waits for the depot to empty it.
            disposer.Start();
            Assert.True(
                SpinWait.SpinUntil(() => (disposer.ThreadState & ThreadState.WaitSleepJoin) != 0 && MediumTierStoppedCarving(pool), TimeSpan.FromSeconds(10)),
                "the dispose never waited for the medium tier's depot");

            // Returned on a thread without a cache of the tier, which the disposed tier makes none for. The dispose
            // holds the caches' registry while it empties them, so the return waits for it there, or has ended.
            returner = new Thread(late.Dispose);
            returner.Start();
            Assert.True(
                SpinWait.SpinUntil(() => (returner.ThreadState & (ThreadState.WaitSleepJoin | ThreadState.Stopped)) != 0, TimeSpan.FromSeconds(10)),
                "the return neither waited nor ended");
        }
        finally
        {
            Monitor.Exit(depotLock);
        }

        Assert.True(disposer.Join(TimeSpan.FromSeconds(10)), "the dispose never ended");
        Assert.True(returner.Join(TimeSpan.FromSeconds(10)), "the return never ended");

        // Nothing is rented: one delay on (four ticks, and two for the tick's rounding), every slab is unmapped.
        for (int tick = 0; tick < 6; tick++)
        {
            time.Advance(TimeSpan.FromMilliseconds(100));
        }

        allocator.AssertNoneLive($"one delay after a dispose that a block's return met halfway\n{pool.GetStatistics()}");
    }

    /// <summary>Whether the medium tier's dispose has begun: its slab heap carves no more.</summary>
    private static bool MediumTierStoppedCarving(TieredMemoryPool pool)
    {
        const BindingFlags Private = BindingFlags.NonPublic | BindingFlags.Instance;
        object tier = typeof(TieredMemoryPool).GetField("_medium", Private)!.GetValue(pool)!;
        object heap = tier.GetType().BaseType!.GetField("_heap", Private)!.GetValue(tier)!;
        return (bool)heap.GetType().GetField("_disposing", Private)!.GetValue(heap)!;
    }
}
