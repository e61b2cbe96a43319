using System;
using System.Reflection;
using Microsoft.Extensions.Time.Testing;

namespace Zipora.Buffers.Tests;

/// <summary>
/// A region rent reserves a place on the pool's list of unmaps before it maps (so letting the region go later never
/// allocates, see <see cref="DeferredUnmaps.ReservePlace"/>); a rent the OS or the cap refuses must give the place
/// back. Kept, each refusal made the list's next reservation grow it by one more entry, for the pool's life: a server
/// refused at its cap millions of times grows the list by tens of megabytes that are never used. The places are not
/// in the statistics, so the test reads the count by reflection.
/// </summary>
public sealed class RefusedRentPlaceTests
{
    private const int RegionSize = 100_000;

    [Theory]
    [InlineData(RegionSize)]
    [InlineData(3 * 1024 * 1024)]
    public void ARegionRentTheOSRefusesGivesBackItsPlaceOnTheListOfUnmaps(int size)
    {
        var allocator = new ScriptedPageAllocator { RefuseMap = static (_, _) => true };
        TieredMemoryPoolOptions options = SafetyCases.Options(OwnerMode.Default, new FakeTimeProvider());
        options.PageAllocator = allocator;
        options.FallbackPageAllocator = null;
        using var pool = new TieredMemoryPool(options);

        for (int i = 0; i < 3; i++)
        {
            _ = Assert.Throws<InsufficientMemoryException>(() => pool.Rent(size));
        }

        Assert.True(allocator.MapRequests > 0, "no mapping was asked for: the rent was refused before the tier's map");
        Assert.Equal(0, PlacesHeld(pool));
    }

    /// <summary>The places the pool's list of unmaps holds for mappings not on it (none while no region exists).</summary>
    private static int PlacesHeld(TieredMemoryPool pool)
    {
        const BindingFlags Private = BindingFlags.NonPublic | BindingFlags.Instance;
        object unmaps = typeof(TieredMemoryPool).GetField("_unmaps", Private)!.GetValue(pool)!;
        return (int)typeof(DeferredUnmaps).GetField("_placesHeld", Private)!.GetValue(unmaps)!;
    }
}
