using System;
using System.Buffers;
using Microsoft.Extensions.Time.Testing;

namespace Zipora.Buffers.Tests;

public sealed class RegionCacheTests
{
    [Fact]
    public void ARentAfterAReturnReusesTheRegionWithoutMapping()
    {
        using var pool = new TieredMemoryPool();
        pool.Rent(100_000).Dispose();
        long maps = pool.GetStatistics().MmapCalls;
        for (int i = 0; i < 100; i++)
        {
            pool.Rent(100_000).Dispose();
        }

        TieredMemoryPoolStatistics statistics = pool.GetStatistics();
        Assert.Equal(maps, statistics.MmapCalls);
        Assert.Equal(100, statistics.Large.CacheHits);
    }

    [Fact]
    public void TheLeastRecentlyReturnedRegionIsUnmappedBeyondTheCountLimit()
    {
        using var pool = new TieredMemoryPool(new TieredMemoryPoolOptions { RegionCacheMaxCount = 2, AdaptiveCaches = false });
        IMemoryOwner<byte> oldest = pool.Rent(20_000);
        IMemoryOwner<byte> middle = pool.Rent(40_000);
        IMemoryOwner<byte> newest = pool.Rent(80_000);
        oldest.Dispose();
        middle.Dispose();
        newest.Dispose();

        // The 20 KB region left the cache; returned a moment ago, it waits out the idle delay before it is unmapped.
        TieredMemoryPoolStatistics statistics = pool.GetStatistics();
        Assert.Equal(20_480, statistics.BytesAwaitingRelease);
        Assert.Equal(0, statistics.MunmapCalls);
        Assert.Equal(40_960 + 81_920, statistics.Large.BytesRetained);

        // The 20 KB region went: renting it again maps; the 40 KB one is still cached.
        pool.Rent(40_000).Dispose();
        pool.Rent(20_000).Dispose();
        TierStatistics large = pool.GetStatistics().Large;
        Assert.Equal(1, large.CacheHits);
        Assert.Equal(4, large.CacheMisses);
    }

    [Fact]
    public void CachedRegionsStayWithinTheByteLimit()
    {
        var time = new FakeTimeProvider();
        using var pool = new TieredMemoryPool(new TieredMemoryPoolOptions { RegionCacheMaxBytes = 1024 * 1024, TimeProvider = time });
        var owners = new IMemoryOwner<byte>[20];
        for (int i = 0; i < owners.Length; i++)
        {
            owners[i] = pool.Rent(200_000);
        }

        foreach (IMemoryOwner<byte> owner in owners)
        {
            owner.Dispose();
        }

        // Evicted at once, unmapped once they have been returned for a full idle delay (10 s).
        int evicted = 20 - (1024 * 1024 / 229_376);
        TieredMemoryPoolStatistics statistics = pool.GetStatistics();
        Assert.InRange(statistics.Large.BytesRetained, 1, 1024 * 1024);
        Assert.Equal(evicted * 229_376L, statistics.BytesAwaitingRelease);
        Assert.Equal(0, statistics.MunmapCalls);
        for (int tick = 0; tick < 6; tick++)
        {
            time.Advance(TimeSpan.FromSeconds(2.5));
        }

        statistics = pool.GetStatistics();
        Assert.Equal(0, statistics.BytesAwaitingRelease);
        Assert.True(statistics.MunmapCalls >= evicted, statistics.ToString());
    }

    [Fact]
    public void ARentTakesTheMostRecentlyReturnedRegionOfItsLength()
    {
        using var pool = new TieredMemoryPool();
        IMemoryOwner<byte> first = pool.Rent(100_000);
        IMemoryOwner<byte> second = pool.Rent(100_000);
        nint secondAddress = OwnerAddress.Of(second);
        first.Dispose();
        second.Dispose();
        using IMemoryOwner<byte> again = pool.Rent(100_000);
        Assert.Equal(secondAddress, OwnerAddress.Of(again));
    }
}
