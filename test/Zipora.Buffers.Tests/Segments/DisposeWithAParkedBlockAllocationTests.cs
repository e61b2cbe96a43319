using System.Threading;
using Microsoft.Extensions.Time.Testing;

namespace Zipora.Buffers.Tests;

/// <summary>
/// A pool's dispose allocates no managed memory (DisposeAtTheHeapLimitSafetyTests), also on a thread that never used
/// that pool: a finalizer's work item, a shutdown thread. The medium tier's dispose first takes back the blocks parked by the
/// segmented buffers, as returns on the disposing thread; on a thread without a cache of the tier, each such return
/// once made that thread a cache (5,408 bytes measured) for a tier about to drop it.
/// </summary>
public sealed class DisposeWithAParkedBlockAllocationTests
{
    [Fact]
    public void DisposingAPoolWithAParkedBlockOnAThreadThatNeverUsedThatPoolAllocatesNothing()
    {
        // The process's first dispose compiles its methods and initializes their types; a later one allocates its own.
        _ = DisposeOnAFreshThread();
        long allocated = DisposeOnAFreshThread();
        Assert.True(allocated == 0, $"the dispose allocated {allocated} bytes of managed memory");
    }

    /// <summary>Parks a medium block on a worker, disposes the pool on a thread that never used it; returns the bytes the dispose allocated.</summary>
    private static long DisposeOnAFreshThread()
    {
        var time = new FakeTimeProvider();
        TieredMemoryPool pool = ParkedBlocks.NewPool(time);

        // The worker stays alive across the dispose, its block parked: a statistics read retires an exited thread's
        // cache, which hands its block back on the reading thread.
        using var parked = new ManualResetEventSlim();
        using var disposed = new ManualResetEventSlim();
        long rentsBefore = -1;
        long rentsAfter = -2;
        var worker = new Thread(() =>
        {
            DepotReservation.Rent(pool, 64, 100).ForEach(static owner => owner.Dispose());
            DepotReservation.Rent(pool, 4096, 100).ForEach(static owner => owner.Dispose());
            var options = new SegmentedBufferOptions { Pool = pool };
            _ = ParkedBlocks.WriteMessage(options, 3);
            rentsBefore = pool.GetStatistics().Medium.Rents;
            _ = ParkedBlocks.WriteMessage(options, 4);
            rentsAfter = pool.GetStatistics().Medium.Rents;
            parked.Set();
            disposed.Wait();
        });
        worker.Start();
        parked.Wait();

        // The second message took the block the first parked, and parked it again: no rent.
        Assert.Equal(rentsBefore, rentsAfter);

        long allocated = -1;
        var disposer = new Thread(() =>
        {
            // The thread has used another pool: the runtime made its thread-statics (280 bytes, once per thread).
            using (var other = new TieredMemoryPool(new TieredMemoryPoolOptions { EnableHugepages = false }))
            {
                other.Rent(64).Dispose();
                other.Rent(4096).Dispose();
            }

            allocated = ThreadAllocations.During(pool.Dispose);
        });
        disposer.Start();
        disposer.Join();
        disposed.Set();
        worker.Join();
        SafetyCases.AssertDrainedThreeDelaysLater(pool, time);
        TieredMemoryPoolStatistics drained = pool.GetStatistics();
        Assert.True(drained.MmapCalls == drained.MunmapCalls, $"the parked block's slab went with the others: {drained}");
        return allocated;
    }
}
