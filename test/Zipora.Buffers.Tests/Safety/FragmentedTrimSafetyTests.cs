using System;
using System.Buffers;
using System.Collections.Generic;
using System.Threading;

namespace Zipora.Buffers.Tests;

/// <summary>
/// A trim drops pages of slabs that still hold live blocks, so it must never drop a page under a live block: not when
/// blocks straddle two pages, not when a page holds blocks of several owners, not after the free ones were used again.
/// A dropped page would read back as zeros, so each live block carries its own stamp and is checked after every trim.
/// </summary>
public sealed class FragmentedTrimSafetyTests
{
    private const int SlabBytes = 64 * 1024;
    private const int Slabs = 2;

    /// <summary>Sizes whose classes do not divide the page (640 B straddles pages, 112 B leaves a tail) or share it (2 KB).</summary>
    public static TheoryData<int, int> Classes => new()
    {
        { 600, 640 },
        { 100, 112 },
        { 1500, 2048 },
    };

    [Theory]
    [MemberData(nameof(Classes))]
    public void ATrimNeverDropsAPageUnderALiveBlockAndCountsEveryOtherPageOnce(int size, int classSize)
    {
        using var pool = new TieredMemoryPool(new TieredMemoryPoolOptions { IdleReleaseDelay = Timeout.InfiniteTimeSpan });
        int blocksPerSlab = SlabBytes / classSize;
        var live = new List<(IMemoryOwner<byte> Owner, int Index)>();
        var free = new List<IMemoryOwner<byte>>();
        for (int i = 0; i < Slabs * blocksPerSlab; i++)
        {
            IMemoryOwner<byte> owner = pool.Rent(size);
            owner.Memory.Span.Fill((byte)i);
            if (i % 7 == 3)
            {
                live.Add((owner, i));
            }
            else
            {
                free.Add(owner);
            }
        }

        free.ForEach(owner => owner.Dispose());
        pool.Trim();
        TierStatistics first = FragmentedLayout.TierOf(pool.GetStatistics(), classSize);
        AssertLiveBlocksIntact(live, "after the first trim");
        (long fragmented, long dropped) = Expected(classSize, blocksPerSlab, live);
        Assert.Equal(fragmented, first.BytesFragmented);
        Assert.Equal(dropped, first.BytesEvicted);
        Assert.Equal(0, first.BytesRetained);
        Assert.Equal(first.BytesAllocated, first.BytesInUse + first.BytesFragmented + first.BytesRetained + first.BytesEvicted);

        // The free blocks used again (every one written), returned and trimmed again: the same pages drop once more.
        var again = new List<IMemoryOwner<byte>>();
        for (int i = 0; i < free.Count; i++)
        {
            IMemoryOwner<byte> owner = pool.Rent(size);
            owner.Memory.Span.Fill(0xEE);
            again.Add(owner);
        }

        again.ForEach(owner => owner.Dispose());
        pool.Trim();
        pool.Trim();
        TierStatistics second = FragmentedLayout.TierOf(pool.GetStatistics(), classSize);
        AssertLiveBlocksIntact(live, "after the blocks beside them were used again and trimmed twice");
        Assert.Equal(2 * dropped, second.BytesEvicted);
        Assert.Equal(fragmented, second.BytesFragmented);
        live.ForEach(entry => entry.Owner.Dispose());
    }

    /// <summary>From the layout alone: the free bytes on pages with a live block, and the bytes of the other pages.</summary>
    private static (long Fragmented, long Dropped) Expected(int classSize, int blocksPerSlab, List<(IMemoryOwner<byte> Owner, int Index)> live)
    {
        int pageSize = Environment.SystemPageSize;
        long fragmented = 0;
        long dropped = 0;
        for (int slab = 0; slab < Slabs; slab++)
        {
            for (long start = 0; start < SlabBytes; start += pageSize)
            {
                long end = Math.Min(start + pageSize, SlabBytes);
                long liveBytes = 0;
                foreach ((_, int index) in live)
                {
                    long blockStart = (long)(index - (slab * blocksPerSlab)) * classSize;
                    if (index / blocksPerSlab == slab)
                    {
                        liveBytes += Math.Max(0, Math.Min(blockStart + classSize, end) - Math.Max(blockStart, start));
                    }
                }

                if (liveBytes > 0)
                {
                    fragmented += end - start - liveBytes;
                }
                else
                {
                    dropped += end - start;
                }
            }
        }

        return (fragmented, dropped);
    }

    private static void AssertLiveBlocksIntact(List<(IMemoryOwner<byte> Owner, int Index)> live, string when)
    {
        foreach ((IMemoryOwner<byte> owner, int index) in live)
        {
            int wrong = owner.Memory.Span.IndexOfAnyExcept((byte)index);
            Assert.True(wrong < 0, $"{when}: live block {index} ({SafetyCases.RangeOf(owner)}) lost its contents at byte {wrong}: a page under it was dropped");
        }
    }
}
