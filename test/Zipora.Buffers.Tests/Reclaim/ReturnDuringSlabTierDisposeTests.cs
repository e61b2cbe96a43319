using System;
using System.Buffers;
using System.Reflection;
using System.Threading;
using Microsoft.Extensions.Time.Testing;

namespace Zipora.Buffers.Tests;

/// <summary>
/// A slab tier's dispose stops carving, empties the thread caches and the depots, and only then counts, per slab, the
/// blocks still rented (all it carved, less the free ones it took out). A block returned in between, to a depot
/// already closed or on a thread whose cache the disposed tier no longer makes, is set aside and counted with the
/// free ones (<c>SlabHeap.ReleaseAfterDispose</c>). Released at once instead, it was taken off a count not yet made,
/// which the accounting then overwrote: its slab waited for a block that had come back, and stayed mapped for the life
/// of the process. The suite's dispose storms landed a return there 1 run in 4; here the test holds a depot's lock, so
/// the dispose waits between its two steps while the block comes back, every run.
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
        Monitor.Enter(depotLock);
        try
        {
            // The dispose has stopped the medium tier's carving and waits for the depot to empty it.
            disposer.Start();
            Assert.True(
                SpinWait.SpinUntil(() => (disposer.ThreadState & ThreadState.WaitSleepJoin) != 0 && MediumTierStoppedCarving(pool), TimeSpan.FromSeconds(10)),
                "the dispose never waited for the medium tier's depot");

            // Returned on a thread without a cache of the tier, which the disposed tier makes none for.
            var returner = new Thread(late.Dispose);
            returner.Start();
            Assert.True(returner.Join(TimeSpan.FromSeconds(10)), "the return never ended");
        }
        finally
        {
            Monitor.Exit(depotLock);
        }

        Assert.True(disposer.Join(TimeSpan.FromSeconds(10)), "the dispose never ended");

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
