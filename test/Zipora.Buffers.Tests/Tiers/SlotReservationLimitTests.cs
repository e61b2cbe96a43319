using System.Buffers;
using Microsoft.Extensions.Time.Testing;

namespace Zipora.Buffers.Tests;

/// <summary>
/// A thread's slot parks a returned region on the fast path only when the room it reserved in the region cache's
/// limits holds that region: an empty slot that reserved room for a small region once must not take a large one
/// without reserving more, or the region sits outside the limits, and the tier retains more than
/// <see cref="TieredMemoryPoolOptions.RegionCacheMaxBytes"/> with nothing in use to explain it.
/// </summary>
public sealed class SlotReservationLimitTests
{
    private const int SmallRegion = 20_000;
    private const int LargeRegion = 240_000;
    private const long CacheBytes = 300_000;

    [Fact]
    public void AnEmptySlotThatReservedRoomForASmallRegionDoesNotParkALargeOnePastTheByteLimit()
    {
        TieredMemoryPoolOptions options = SafetyCases.Options(OwnerMode.Default, new FakeTimeProvider());
        options.RegionCacheMaxBytes = CacheBytes;
        using var pool = new TieredMemoryPool(options);

        // This thread's slot reserves room for a small region, and is empty again once it is rented back.
        pool.Rent(SmallRegion).Dispose();
        using IMemoryOwner<byte> small = pool.Rent(SmallRegion);

        // Another thread's slot holds a large region: the limit has no room left for a second.
        SafetyCases.RentAndReturnOnAnotherThread(pool, LargeRegion, 1);

        pool.Rent(LargeRegion).Dispose();
        TieredMemoryPoolStatistics statistics = pool.GetStatistics();
        Assert.True(statistics.Large.BytesRetained <= CacheBytes, $"the large tier retains {statistics.Large.BytesRetained} bytes under RegionCacheMaxBytes = {CacheBytes}, with one small region in use\n{statistics}");
    }
}
