using System;
using System.Buffers;
using System.Collections.Generic;
using System.Diagnostics;
using System.Threading.Tasks;

namespace Zipora.Buffers.Tests;

/// <summary>The worst layout for a slab tier: slabs full of blocks that were all written to, one still rented in each.</summary>
internal static class FragmentedLayout
{
    /// <summary>
    /// Rents <paramref name="slabs"/> slabs' worth of blocks on this thread (a fresh pool carves them in address order,
    /// slab after slab), writes every one, and returns all but the first block of each slab; returns those.
    /// <paramref name="residentAtPeak"/> is the process's resident memory with every block written, before any is returned.
    /// </summary>
    public static List<IMemoryOwner<byte>> Rent(TieredMemoryPool pool, int blockSize, int blocksPerSlab, int slabs, out long residentAtPeak)
    {
        var live = new List<IMemoryOwner<byte>>(slabs);
        var free = new List<IMemoryOwner<byte>>(slabs * blocksPerSlab);
        for (int i = 0; i < slabs * blocksPerSlab; i++)
        {
            IMemoryOwner<byte> owner = pool.Rent(blockSize);
            owner.Memory.Span.Fill((byte)(i % blocksPerSlab == 0 ? 0x4C : 0xAB));
            (i % blocksPerSlab == 0 ? live : free).Add(owner);
        }

        TierStatistics tier = TierOf(pool.GetStatistics(), blockSize);
        Assert.Equal((long)slabs * blocksPerSlab * blockSize, tier.BytesAllocated);
        residentAtPeak = ProcessMemory.CanRead ? ProcessMemory.ResidentBytes() : 0;
        free.ForEach(owner => owner.Dispose());
        return live;
    }

    /// <summary>The tier that serves <paramref name="blockSize"/>.</summary>
    public static TierStatistics TierOf(TieredMemoryPoolStatistics statistics, int blockSize) =>
        blockSize <= SmallTier.MaxSize ? statistics.Small : statistics.Medium;

    /// <summary>The free bytes a live block at the start of a page-aligned slab pins on its pages.</summary>
    public static long PinnedBesideEachLiveBlock(int blockSize) =>
        Math.Max(0, Environment.SystemPageSize - blockSize);

    /// <summary>
    /// Every byte the tier mapped is in use, pinned on a live block's page, retained, or was given back (nothing was
    /// unmapped: every slab holds a live block), and each figure is what the layout implies.
    /// </summary>
    public static void AssertAddsUp(TierStatistics tier, int blockSize, int slabBytes, int slabs)
    {
        Assert.Equal((long)slabs * slabBytes, tier.BytesAllocated);
        Assert.Equal((long)slabs * blockSize, tier.BytesInUse);
        Assert.Equal(slabs * PinnedBesideEachLiveBlock(blockSize), tier.BytesFragmented);
        Assert.Equal(0, tier.BytesRetained);
        Assert.Equal(tier.BytesAllocated, tier.BytesInUse + tier.BytesFragmented + tier.BytesRetained + tier.BytesEvicted);
    }

    /// <summary>Polls the pool every delay until its retained bytes are at most <paramref name="cap"/>; fails after <paramref name="timeout"/>.</summary>
    public static async Task<TieredMemoryPoolStatistics> WaitUntilRetainedAtMost(TieredMemoryPool pool, long cap, TimeSpan delay, TimeSpan timeout)
    {
        var waited = Stopwatch.StartNew();
        TieredMemoryPoolStatistics statistics = pool.GetStatistics();
        while (statistics.BytesRetained > cap && waited.Elapsed < timeout)
        {
            await Task.Delay(delay, TestContext.Current.CancellationToken);
            statistics = pool.GetStatistics();
        }

        Assert.True(statistics.BytesRetained <= cap, $"retained {statistics.BytesRetained >> 20} MB after {waited.Elapsed.TotalSeconds:F1} s, cap {cap >> 20} MB\n{statistics}");
        return statistics;
    }
}
