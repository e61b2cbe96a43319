using System.Buffers;

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

        TieredMemoryPoolStatistics statistics = pool.GetStatistics();
        Assert.Equal(1, statistics.MunmapCalls);
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
        using var pool = new TieredMemoryPool(new TieredMemoryPoolOptions { RegionCacheMaxBytes = 1024 * 1024 });
        var owners = new IMemoryOwner<byte>[20];
        for (int i = 0; i < owners.Length; i++)
        {
            owners[i] = pool.Rent(200_000);
        }

        foreach (IMemoryOwner<byte> owner in owners)
        {
            owner.Dispose();
        }

        TieredMemoryPoolStatistics statistics = pool.GetStatistics();
        Assert.InRange(statistics.Large.BytesRetained, 1, 1024 * 1024);
        Assert.Equal(20 - (1024 * 1024 / 229_376), statistics.MunmapCalls);
    }

    [Fact]
    public void ARentTakesTheMostRecentlyReturnedRegionOfItsLength()
    {
        using var pool = new TieredMemoryPool();
        IMemoryOwner<byte> first = pool.Rent(100_000);
        IMemoryOwner<byte> second = pool.Rent(100_000);
        nint secondAddress = ((Native.NativeMemoryManager)second).Address;
        first.Dispose();
        second.Dispose();
        using IMemoryOwner<byte> again = pool.Rent(100_000);
        Assert.Equal(secondAddress, ((Native.NativeMemoryManager)again).Address);
    }
}
