using Microsoft.Extensions.Time.Testing;

namespace Zipora.Buffers.Tests;

/// <summary>
/// A tier's <see cref="TierStatistics.BytesEvicted"/> counts memory once it has left the process: a region let go of
/// within its idle delay stays mapped for a stale <c>Span</c>, but its pages are dropped at once, so it counts then, not
/// a delay later at its unmap (and never, were it taken again for a new region meanwhile).
/// </summary>
public sealed class LetGoEvictionCountTests
{
    private const int RegionSize = 100_000;
    private const long RegionBytes = 114_688;

    [Fact]
    public void ARegionLetGoOfWithinItsDelayCountsAsEvictedWhenItsPagesAreDropped()
    {
        using var pool = new TieredMemoryPool(new TieredMemoryPoolOptions { TimeProvider = new FakeTimeProvider(), EnableHugepages = false });
        pool.Rent(RegionSize).Dispose();
        Assert.Equal(0, pool.GetStatistics().Large.BytesEvicted);

        pool.Trim();

        TieredMemoryPoolStatistics statistics = pool.GetStatistics();
        Assert.Equal(RegionBytes, statistics.BytesAwaitingRelease);
        Assert.Equal(RegionBytes, statistics.Large.BytesEvicted);
    }
}
