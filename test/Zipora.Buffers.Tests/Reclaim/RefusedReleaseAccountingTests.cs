using System;
using System.Buffers;
using Microsoft.Extensions.Time.Testing;

namespace Zipora.Buffers.Tests;

/// <summary>
/// A region tier counts a region on its way out as retained until its unmap or page drop, then evicted: when the OS
/// refuses both (locked memory, <c>vm.max_map_count</c>) or a custom allocator throws instead, the region is neither
/// retained nor evicted but awaiting release, and it counts evicted only once it is unmapped. Nothing stays counted as
/// leaving, and nothing not freed is counted evicted.
/// </summary>
[Collection(BackgroundFailureWatch.ProvokingTests)]
public sealed class RefusedReleaseAccountingTests
{
    private static readonly int[] s_regionSizes = [128 * 1024, 3 * 1024 * 1024];

    // Whether the allocator frees again: set once the test has seen the refusals, and before the pool's dispose.
    private volatile bool _free;

    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public void ARegionTheOSWillNotFreeIsCountedEvictedOnlyOnceUnmapped(bool allocatorThrows)
    {
        var allocator = new LiveMappingsAllocator();
        var time = new FakeTimeProvider();
        var pool = new TieredMemoryPool(allocator.PoolOptions(OwnerMode.Default, time));
        // Refused, or thrown: the page drops (a refused hugepage hint only leaves the huge regions on base pages).
        allocator.AdviseOrRefuse = _ => _free || allocatorThrows;
        allocator.BeforeAdvise = advice =>
        {
            if (!_free && allocatorThrows && advice != Zipora.Buffers.Native.PageAdvice.HugePage)
            {
                throw new InvalidOperationException("the custom allocator's own bug");
            }
        };
        allocator.BeforeUnmap = () =>
        {
            if (!_free)
            {
                throw new InvalidOperationException("the custom allocator's own bug");
            }
        };

        long failuresBefore = BackgroundFailures.Count;
        try
        {
            // Each size: one region parked in the thread's slot, two cached.
            foreach (int size in s_regionSizes)
            {
                IMemoryOwner<byte>[] held = [pool.Rent(size), pool.Rent(size), pool.Rent(size)];
                Array.ForEach(held, static owner => owner.Dispose());
            }

            // A trim passes the allocator's exception on, its cached regions after the one that threw left for the next.
            Exception? trimError = Record.Exception(pool.Trim);
            Assert.True(allocatorThrows ? trimError is InvalidOperationException : trimError is null, $"the trim: {trimError}");
            for (int trim = 0; trim < 16 && trimError is not null; trim++)
            {
                trimError = Record.Exception(pool.Trim);
            }

            Assert.Null(trimError);
            TieredMemoryPoolStatistics refused = pool.GetStatistics();
            foreach (TierStatistics tier in (TierStatistics[])[refused.Large, refused.Huge])
            {
                Assert.True(tier.BytesRetained == 0 && tier.BytesEvicted == 0 && tier.BytesInUse == 0, $"{tier.Name}, its regions' page drops refused: {tier}\n{refused}");
            }

            Assert.Equal(refused.Large.BytesAllocated + refused.Huge.BytesAllocated, refused.BytesAwaitingRelease);

            _free = true;
            SafetyCases.Advance(time, SafetyCases.IdleDelay * 3);
            TieredMemoryPoolStatistics freed = pool.GetStatistics();
            foreach (TierStatistics tier in (TierStatistics[])[freed.Large, freed.Huge])
            {
                Assert.True(tier.BytesRetained == 0 && tier.BytesEvicted == tier.BytesAllocated, $"{tier.Name}, once unmapped: {tier}\n{freed}");
            }

            Assert.Equal(0, freed.BytesAwaitingRelease);
            Assert.Empty(allocator.Live());
        }
        finally
        {
            _free = true;
            pool.Dispose();
            BackgroundFailureWatch.ProvokedSince(failuresBefore);
        }
    }
}
