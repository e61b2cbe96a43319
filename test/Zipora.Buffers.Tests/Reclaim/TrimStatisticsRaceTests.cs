using System.Buffers;
using System.Collections.Generic;
using System.Threading;

namespace Zipora.Buffers.Tests;

/// <summary>
/// Statistics read while a trim gives back the cached memory of a quiet pool (every buffer returned, no user thread
/// renting): the pool trims on its own (after a collection, at the idle tick, over a cap), so a dashboard or the meter
/// reading meanwhile cannot avoid it, and must find every tier adding up: no buffer in use, no figure below zero, and
/// every byte mapped either in use, retained, fragmented, uncarved or evicted.
/// </summary>
public sealed class TrimStatisticsRaceTests
{
    // One size per tier and then some: small slabs, medium slabs, large regions, huge regions.
    private static readonly int[] s_sizes = [64, 512, 4096, 12 * 1024, 64 * 1024, 512 * 1024, 3 * 1024 * 1024];

    private const int BuffersPerSize = 6;

    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public void StatisticsReadDuringATrimOfAQuietPoolAddUp(bool reuseOwners)
    {
        using var pool = new TieredMemoryPool(new TieredMemoryPoolOptions { ReuseOwners = reuseOwners, IdleReleaseDelay = Timeout.InfiniteTimeSpan });
        var held = new List<IMemoryOwner<byte>>(s_sizes.Length * BuffersPerSize);
        (string? torn, int readsDuringATrim) = ReadsDuringTrims.Run(
            refill: () =>
            {
                // Fill every tier's caches again: the rents find what the last trim left (nothing) or map afresh.
                for (int i = 0; i < s_sizes.Length * BuffersPerSize; i++)
                {
                    held.Add(pool.Rent(s_sizes[i % s_sizes.Length]));
                }

                held.ForEach(owner => owner.Dispose());
                held.Clear();
            },
            trim: pool.Trim,
            wrongRead: () => QuietTierThatDoesNotAddUp(pool.GetStatistics()));

        Assert.True(torn is null, $"read during a trim of a quiet pool: {torn}");
        Assert.True(readsDuringATrim > 0, "no read met a trim, so the test proves nothing");
        TieredMemoryPoolStatistics after = pool.GetStatistics();
        Assert.Null(QuietTierThatDoesNotAddUp(after));
        Assert.Equal(0, after.BytesRetained);
    }

    /// <summary>What is wrong with the first tier that does not add up as a quiet pool's must; null when every one does.</summary>
    internal static string? QuietTierThatDoesNotAddUp(TieredMemoryPoolStatistics statistics)
    {
        foreach (TierStatistics tier in (TierStatistics[])[statistics.Small, statistics.Medium, statistics.Large, statistics.Huge])
        {
            long accounted = tier.BytesInUse + tier.BytesRetained + tier.BytesFragmented + tier.BytesUncarved + tier.BytesEvicted;
            if (tier.BuffersInUse != 0 || tier.BytesInUse != 0)
            {
                return $"{tier.Name}: {tier.BuffersInUse} buffers ({tier.BytesInUse} bytes) in use ({tier.Rents} rents, {tier.Returns} returns)";
            }

            if (tier.BytesRetained < 0 || tier.BytesFragmented < 0 || tier.BytesUncarved < 0 || tier.BytesEvicted < 0 || tier.BytesAllocated < 0)
            {
                return $"{tier.Name}: a figure below zero: {tier}";
            }

            if (tier.BytesAllocated != accounted)
            {
                return $"{tier.Name}: {tier.BytesAllocated} bytes allocated, but {tier.BytesInUse} in use + {tier.BytesRetained} retained + {tier.BytesFragmented} fragmented + {tier.BytesUncarved} uncarved + {tier.BytesEvicted} evicted = {accounted}";
            }
        }

        return null;
    }
}
