using System.Buffers;
using System.Collections.Generic;
using System.Linq;
using System.Threading;
using Microsoft.Extensions.Time.Testing;

namespace Zipora.Buffers.Tests;

/// <summary>
/// A slab tier's fast path counts no hit: the hits are derived from the blocks moved in and out of each thread's
/// stack. So a rent the class's depot serves outside the stack (per-thread caching off, or the caches closed while a
/// trim empties them) must count its move in, or it is neither a hit nor a rent, and a buffer the test holds does not
/// show as in use.
/// </summary>
public sealed class DepotRentStatisticsTests
{
    private const int Count = 10;
    private const int Size = 4096;

    [Theory]
    [InlineData(100)]
    [InlineData(4096)]
    public void WithPerThreadCachingOffARentTheDepotServesCountsAsAHitWhileItsBufferIsHeld(int size)
    {
        using var pool = new TieredMemoryPool(new TieredMemoryPoolOptions { ThreadCacheMaxBuffers = 0, IdleReleaseDelay = Timeout.InfiniteTimeSpan });

        // Carved (misses), returned to the depot, then all rented from it again and held.
        List<IMemoryOwner<byte>> held = [.. Enumerable.Range(0, Count).Select(_ => pool.Rent(size))];
        held.ForEach(static owner => owner.Dispose());
        held = [.. Enumerable.Range(0, Count).Select(_ => pool.Rent(size))];
        Assert.Equal(Count, held.Select(OwnerAddress.Of).Distinct().Count());

        TieredMemoryPoolStatistics statistics = pool.GetStatistics();
        TierStatistics tier = size < 1024 ? statistics.Small : statistics.Medium;
        Assert.True(
            tier.CacheHits == Count && tier.CacheMisses == Count && tier.BuffersInUse == held.Count,
            $"{Count} carved, returned and rented again from the depot, {held.Count} held: {tier.Name} counts {tier.CacheHits} hits, {tier.CacheMisses} misses, {tier.BuffersInUse} buffers in use");
        held.ForEach(static owner => owner.Dispose());
    }

    [Fact]
    public void ARentTheDepotServesWhileATrimHasTheCachesClosedCountsAsAHitWhileItsBufferIsHeld()
    {
        var allocator = new LiveMappingsAllocator(mostLive: 64);
        using var pool = new TieredMemoryPool(allocator.PoolOptions(OwnerMode.Default, new FakeTimeProvider()));

        // One slab of 16 blocks, the first two held: the trim drops the pages of the other 14, and its advice is a
        // moment when it holds the caches closed.
        List<IMemoryOwner<byte>> owners = [.. Enumerable.Range(0, 16).Select(_ => pool.Rent(Size))];
        owners.Skip(2).ToList().ForEach(static owner => owner.Dispose());
        nint returnedDuringTrim = OwnerAddress.Of(owners[1]);

        // There, a return goes straight to the depot and a rent takes it from there, past the closed cache.
        IMemoryOwner<byte>? rentedDuringTrim = null;
        allocator.BeforeAdvise = _ =>
        {
            if (rentedDuringTrim is null)
            {
                owners[1].Dispose();
                rentedDuringTrim = pool.Rent(Size);
            }
        };
        pool.Trim();
        allocator.BeforeAdvise = null;
        Assert.NotNull(rentedDuringTrim);
        Assert.Equal(returnedDuringTrim, OwnerAddress.Of(rentedDuringTrim));

        // 17 rents (16 carved, one from the depot) and 15 returns; the test holds two buffers.
        TierStatistics medium = pool.GetStatistics().Medium;
        Assert.True(
            medium.CacheHits == 1 && medium.CacheMisses == 16 && medium.BuffersInUse == 2,
            $"one rent served from the depot during a trim, two buffers held: medium counts {medium.CacheHits} hits, {medium.CacheMisses} misses, {medium.BuffersInUse} buffers in use");
        rentedDuringTrim.Dispose();
        owners[0].Dispose();
    }
}
