using System.Buffers;
using System.Threading;
using Microsoft.Extensions.Time.Testing;

namespace Zipora.Buffers.Tests;

/// <summary>
/// The region tier's shared cache and slots, seen through the statistics: a slot's reservation keeps the count limit,
/// a hit from the shared cache counts while its buffer is still out, and a region parked on the fast path waits a
/// delay from that park.
/// </summary>
public sealed class RegionCacheAccountingTests
{
    private const int LargeSize = 100_000;
    private const int OtherLargeSize = 200_000;

    [Fact]
    public void AThreadsFirstParkEvictsCachedRegionsThatItsReservationPutsOverTheCountLimit()
    {
        using var pool = new TieredMemoryPool(new TieredMemoryPoolOptions
        {
            TimeProvider = new FakeTimeProvider(),
            AdaptiveCaches = false,
            RegionCacheMaxCount = 2,
        });
        IMemoryOwner<byte> first = pool.Rent(LargeSize);
        IMemoryOwner<byte> second = pool.Rent(LargeSize);
        IMemoryOwner<byte> third = pool.Rent(LargeSize);
        first.Dispose();
        second.Dispose();
        third.Dispose();

        // This thread's slot holds the third region, the shared cache the second: two, the limit.
        TierStatistics before = pool.GetStatistics().Large;
        long region = before.BytesRetained / 2;
        Assert.Equal(2 * region, before.BytesRetained);

        // Another thread parks a region of another class: its slot's reservation makes three, one past the limit.
        var other = new Thread(() => pool.Rent(OtherLargeSize).Dispose());
        other.Start();
        other.Join();

        TierStatistics after = pool.GetStatistics().Large;
        long otherRegion = after.BytesAllocated - before.BytesAllocated;
        Assert.True(
            after.BytesRetained == region + otherRegion,
            $"{after.BytesRetained} bytes retained after a second thread parked: expected {region + otherRegion} (one {region}-byte region and its {otherRegion}-byte one, RegionCacheMaxCount = 2), not three regions");
        Assert.Equal(2 * region, pool.GetStatistics().BytesAwaitingRelease);
    }

    [Fact]
    public void AHitFromTheSharedCacheCountsWhileItsBufferIsStillRented()
    {
        using var pool = new TieredMemoryPool(new TieredMemoryPoolOptions { TimeProvider = new FakeTimeProvider() });
        IMemoryOwner<byte> first = pool.Rent(LargeSize);
        IMemoryOwner<byte> second = pool.Rent(LargeSize);
        first.Dispose();
        second.Dispose();

        // The second region sits in this thread's slot, the first in the shared cache: one rent takes each.
        IMemoryOwner<byte> fromSlot = pool.Rent(LargeSize);
        IMemoryOwner<byte> fromShared = pool.Rent(LargeSize);

        TierStatistics large = pool.GetStatistics().Large;
        Assert.True(
            large.Rents == 4 && large.CacheHits == 2 && large.CacheMisses == 2,
            $"4 rents (2 mapped, 1 from the slot, 1 from the shared cache) counted as {large.Rents} rents, {large.CacheHits} hits, {large.CacheMisses} misses");
        fromSlot.Dispose();
        fromShared.Dispose();
    }

    [Fact]
    public void ATrimWaitsADelayFromAFastParkInAPoolOlderThanTheDelay()
    {
        var time = new FakeTimeProvider();
        using var pool = new TieredMemoryPool(new TieredMemoryPoolOptions { TimeProvider = time, IdleReleaseDelay = SafetyCases.IdleDelay });
        SafetyCases.Advance(time, SafetyCases.IdleDelay * 2);

        // The first return reserves the slot (slow path); the second parks on the fast path, which stamps only the slot.
        pool.Rent(LargeSize).Dispose();
        pool.Rent(LargeSize).Dispose();
        pool.Trim();

        TieredMemoryPoolStatistics trimmed = pool.GetStatistics();
        Assert.True(
            trimmed.MunmapCalls == 0 && trimmed.BytesAwaitingRelease > 0,
            $"a region returned a moment ago was unmapped by a trim ({trimmed.MunmapCalls} munmaps, {trimmed.BytesAwaitingRelease} bytes awaiting release): a stale Span into it would fault");
        SafetyCases.Advance(time, SafetyCases.IdleDelay * 2);
        Assert.Equal(1, pool.GetStatistics().MunmapCalls);
    }

    [Fact]
    public void RegionsWhosePageDropTheOsRefusedCountAsEvictedOnlyOnceTheyAreUnmapped()
    {
        var time = new FakeTimeProvider();
        using var pool = new TieredMemoryPool(new TieredMemoryPoolOptions
        {
            TimeProvider = time,
            IdleReleaseDelay = SafetyCases.IdleDelay,
            PageAllocator = new ScriptedPageAllocator { RefuseAdvice = true },
        });
        IMemoryOwner<byte> first = pool.Rent(LargeSize);
        IMemoryOwner<byte> second = pool.Rent(LargeSize);
        first.Dispose();
        second.Dispose();

        // The tick before their unmap tries to drop their pages, refused; a trim then lets them go, still resident.
        SafetyCases.Advance(time, SafetyCases.IdleDelay);
        pool.Trim();
        TieredMemoryPoolStatistics trimmed = pool.GetStatistics();
        Assert.True(
            trimmed.Large.BytesEvicted == 0 && trimmed.BytesAwaitingRelease == trimmed.Large.BytesAllocated,
            $"{trimmed.Large.BytesEvicted} bytes counted evicted of {trimmed.Large.BytesAllocated} whose pages the OS kept ({trimmed.BytesAwaitingRelease} awaiting release)");

        SafetyCases.Advance(time, SafetyCases.IdleDelay);
        TieredMemoryPoolStatistics unmapped = pool.GetStatistics();
        Assert.True(
            unmapped.Large.BytesEvicted == unmapped.Large.BytesAllocated && unmapped.BytesAwaitingRelease == 0,
            $"{unmapped.Large.BytesEvicted} of {unmapped.Large.BytesAllocated} bytes counted evicted once unmapped ({unmapped.BytesAwaitingRelease} awaiting release)");
    }
}
