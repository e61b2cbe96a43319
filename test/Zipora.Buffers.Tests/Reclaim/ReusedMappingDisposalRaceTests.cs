using System;
using System.Buffers;
using System.Threading;
using Microsoft.Extensions.Time.Testing;
using Zipora.Buffers.Native;

namespace Zipora.Buffers.Tests;

/// <summary>
/// A new slab may take a mapping let go of within its idle delay (<see cref="TieredMemoryPoolStatistics.MappingsReused"/>),
/// which a stale <c>Span</c> of its old holder may still write to. When the pool is disposed while that slab is being
/// mapped, the heap gives the slab back at once: it must wait out the old holder's delay like any memory let go of,
/// not be unmapped as if it had never been used. Here a rent at <c>MaxBytesInUse</c> trims the pool, and another
/// thread disposes the pool while that trim runs (the trim's hint on a large region is the moment).
/// </summary>
/// <remarks>Reads /proc/self/maps; never writes the stale range (a fault would end the test host).</remarks>
public sealed class ReusedMappingDisposalRaceTests
{
    [Fact]
    public void AMappingTakenAgainByASlabWhileThePoolIsDisposedStillWaitsOutItsDelay()
    {
        Skip.Unless(ProcessMappings.CanRead, "reads /proc/self/maps, which only Linux has");
        const int LargeSize = 1024 * 1024;
        var allocator = new ScriptedPageAllocator();
        var pool = new TieredMemoryPool(new TieredMemoryPoolOptions
        {
            PageAllocator = allocator,
            TimeProvider = new FakeTimeProvider(),
            IdleReleaseDelay = SafetyCases.IdleDelay,
            MaxBytesInUse = LargeSize + (32 * 1024),
        });

        // A 4 KB block on its own 64 KB medium slab, let go of by a trim: pages dropped, mapping kept for the delay.
        IMemoryOwner<byte> stale = pool.Rent(4096);
        OwnerRange range = SafetyCases.RangeOf(stale);
        stale.Dispose();
        pool.Trim();

        // A cached large region fills the pool to its cap, so the next slab makes the pool trim.
        pool.Rent(LargeSize).Dispose();
        Thread? disposer = null;
        allocator.BeforeAdvice = (_, length, advice) =>
        {
            if (advice == PageAdvice.DontNeed && length == LargeSize && disposer is null)
            {
                disposer = new Thread(pool.Dispose);
                disposer.Start();

                // The disposal stops the slab heaps while this trim goes on to the later tiers.
                Thread.Sleep(300);
            }
        };

        try
        {
            pool.Rent(4096).Dispose();
        }
        catch (ObjectDisposedException)
        {
            // The pool was disposed under the rent: refusing it is right.
        }

        disposer?.Join();
        Assert.NotNull(disposer);
        Assert.True(
            ProcessMappings.IsMapped(range.Start, range.Length),
            $"memory let go of within its delay ({SafetyCases.IdleDelay}) was unmapped: a stale write into it would fault; {pool.GetStatistics().MappingsReused} mappings reused");
    }
}
