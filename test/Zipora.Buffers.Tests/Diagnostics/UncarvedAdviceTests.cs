using System;
using Zipora.Buffers.Native;

namespace Zipora.Buffers.Tests;

/// <summary>Slab space mapped but never cut gets a word of advice only when it is a large share of what the slab tiers hold.</summary>
public sealed class UncarvedAdviceTests
{
    private const long Megabyte = 1024 * 1024;

    [Fact]
    public void MuchUncutSlabSpaceIsPointedOutWithWhatItCosts()
    {
        string advice = Assert.Single(PoolAdvice.From(Statistics(uncarved: 40 * Megabyte, inUse: 10 * Megabyte), new TieredMemoryPoolOptions(), HugePageInfo.Read()));
        Assert.Contains("40 MB of slab space (80 %", advice, StringComparison.Ordinal);
        Assert.Contains("not resident", advice, StringComparison.Ordinal);
        Assert.Contains("Trim()", advice, StringComparison.Ordinal);
    }

    [Theory]
    [InlineData(8 * Megabyte, 1 * Megabyte)]
    [InlineData(40 * Megabyte, 200 * Megabyte)]
    public void AFewSlabsPerClassOrASmallShareSayNothing(long uncarved, long inUse) =>
        Assert.Empty(PoolAdvice.From(Statistics(uncarved, inUse), new TieredMemoryPoolOptions(), HugePageInfo.Read()));

    private static TieredMemoryPoolStatistics Statistics(long uncarved, long inUse) => new()
    {
        Small = new TierStatistics { Name = "small" },
        Medium = new TierStatistics { Name = "medium", BytesUncarved = uncarved, BytesInUse = inUse },
        Large = new TierStatistics { Name = "large" },
        Huge = new TierStatistics { Name = "huge" },
        Backend = "mmap",
    };
}
