using System;
using System.Buffers;
using System.Collections.Generic;
using System.Linq;
using System.Text.RegularExpressions;
using System.Threading;
using System.Threading.Tasks;

namespace Zipora.Buffers.Tests;

public sealed class StatisticsTests
{
    [Fact]
    public void CountersAreExactlyWhatAKnownSequenceImplies()
    {
        using var pool = new TieredMemoryPool(new TieredMemoryPoolOptions { EnableHugepages = false });
        foreach (int size in new[] { 100, 4096, 100_000, 3 * 1024 * 1024 })
        {
            IMemoryOwner<byte> first = pool.Rent(size);   // miss: nothing cached yet
            IMemoryOwner<byte> second = pool.Rent(size);  // miss
            first.Dispose();
            IMemoryOwner<byte> third = pool.Rent(size);   // hit: takes first's block
            third.Dispose();
            second.Dispose();
            pool.Rent(size).Dispose();                    // hit
        }

        TieredMemoryPoolStatistics statistics = pool.GetStatistics();
        foreach (TierStatistics tier in new[] { statistics.Small, statistics.Medium, statistics.Large, statistics.Huge })
        {
            Assert.Equal(4, tier.Rents);
            Assert.Equal(4, tier.Returns);
            Assert.Equal(2, tier.CacheHits);
            Assert.Equal(2, tier.CacheMisses);
            Assert.Equal(0, tier.BytesInUse);
            Assert.Equal(0, tier.BuffersInUse);
            Assert.Equal(0.5, tier.HitRatio);
        }

        // Regions are mapped one per miss and all four stay cached; slabs are mapped once per class, two blocks are
        // cut from each, and the rest of the slab is uncarved, not retained.
        Assert.Equal(2 * 114_688, statistics.Large.BytesRetained);
        Assert.Equal(2 * 3 * 1024 * 1024, statistics.Huge.BytesRetained);
        Assert.Equal(2 * 112, statistics.Small.BytesRetained);
        Assert.Equal((64 * 1024) - (2 * 112), statistics.Small.BytesUncarved);
        Assert.Equal(2 * 4096, statistics.Medium.BytesRetained);
        Assert.Equal((64 * 1024) - (2 * 4096), statistics.Medium.BytesUncarved);
        Assert.Equal(6, statistics.MmapCalls);
        Assert.Equal(0, statistics.MunmapCalls);
        Assert.Equal(0, statistics.FallbackAllocations);
        Assert.Equal(0, statistics.HugepageBytes);
    }

    [Fact]
    public async Task MediumCountsStayExactWhenTrimsRaceRentsAndReturnsOnOtherThreads()
    {
        // The medium fast path counts no hit: hits are derived from returns, moves to and from the depot, blocks
        // trims took and the blocks cached. Trims here drain the caches while two threads rent and return through
        // the fast path, the closed caches' bypass and the depot; once all is quiet every figure must add up exactly.
        using var pool = new TieredMemoryPool(new TieredMemoryPoolOptions { IdleReleaseDelay = Timeout.InfiniteTimeSpan });
        const int RentsPerThread = 20_000;
        int[] sizes = [1500, 4096, 9000];
        using var stop = new CancellationTokenSource();
        Task trimmer = Task.Run(() =>
        {
            while (!stop.IsCancellationRequested)
            {
                pool.Trim();
            }
        });
        Task[] renters = [.. Enumerable.Range(0, 2).Select(seed => Task.Run(() =>
        {
            var random = new Random(seed);
            var held = new List<IMemoryOwner<byte>>();
            for (int i = 0; i < RentsPerThread; i++)
            {
                held.Add(pool.Rent(sizes[random.Next(sizes.Length)]));
                if (held.Count > random.Next(1, 40))
                {
                    held.ForEach(owner => owner.Dispose());
                    held.Clear();
                }
            }

            held.ForEach(owner => owner.Dispose());
        }))];
        await Task.WhenAll(renters);
        await stop.CancelAsync();
        await trimmer;

        TierStatistics medium = pool.GetStatistics().Medium;
        Assert.Equal(2 * RentsPerThread, medium.Rents);
        Assert.Equal(2 * RentsPerThread, medium.Returns);
        Assert.Equal(medium.Rents, medium.CacheHits + medium.CacheMisses);
        Assert.InRange(medium.CacheHits, 1, medium.Rents);
        Assert.Equal(0, medium.BuffersInUse);
        Assert.Equal(0, medium.BytesInUse);
        long cached = pool.GetStatistics().SizeHistogram.Where(row => row.Tier == "medium").Sum(row => row.Cached);
        Assert.InRange(cached, 0, medium.CacheMisses);
    }

    [Theory]
    [InlineData(100)]
    [InlineData(4096)]
    public void AThreadsCacheHitsStayCountedAfterTheThreadExits(int size)
    {
        using var pool = new TieredMemoryPool(new TieredMemoryPoolOptions { EnableHugepages = false, IdleReleaseDelay = Timeout.InfiniteTimeSpan });
        IMemoryOwner<byte>? kept = null;
        var thread = new Thread(() =>
        {
            for (int i = 0; i < 9; i++)
            {
                pool.Rent(size).Dispose();
            }

            kept = pool.Rent(size);
        });
        thread.Start();
        thread.Join();

        // The exited thread's cache is retired when the statistics are read: its counts are folded into the tier's.
        // One buffer is still out, so the returns alone cannot account for every rent.
        TierStatistics tier = size < 1024 ? pool.GetStatistics().Small : pool.GetStatistics().Medium;
        Assert.True(
            tier.Rents == 10 && tier.CacheHits == 9 && tier.CacheMisses == 1 && tier.Returns == 9 && tier.BuffersInUse == 1,
            $"10 rents of {size} B, 9 returned, on a thread that exited: {tier.Rents} rents, {tier.CacheHits} hits, {tier.CacheMisses} misses, {tier.Returns} returns, {tier.BuffersInUse} in use");
        kept!.Dispose();
    }

    [Fact]
    public void BytesInUseFollowTheLiveBuffers()
    {
        using var pool = new TieredMemoryPool();
        IMemoryOwner<byte> small = pool.Rent(100);
        IMemoryOwner<byte> medium = pool.Rent(3000);
        IMemoryOwner<byte> large = pool.Rent(20_000);
        TieredMemoryPoolStatistics statistics = pool.GetStatistics();
        Assert.Equal(112, statistics.Small.BytesInUse);
        Assert.Equal(4096, statistics.Medium.BytesInUse);
        Assert.Equal(20_480, statistics.Large.BytesInUse);
        Assert.Equal(112 + 4096 + 20_480, statistics.BytesInUse);
        small.Dispose();
        medium.Dispose();
        large.Dispose();
        Assert.Equal(0, pool.GetStatistics().BytesInUse);
    }

    [Fact]
    public void TheSnapshotPrintsEveryTier()
    {
        using var pool = new TieredMemoryPool();
        pool.Rent(10).Dispose();
        string text = pool.GetStatistics().ToString();
        foreach (string name in new[] { "small", "medium", "large", "huge", "mmap" })
        {
            Assert.Contains(name, text, System.StringComparison.Ordinal);
        }
    }

    [Fact]
    public void TheTextIsATableWhoseValuesSitUnderTheirHeadersWithUnits()
    {
        using var pool = new TieredMemoryPool();
        IMemoryOwner<byte> held = pool.Rent(4096);
        pool.Rent(100).Dispose();
        string[] lines = pool.GetStatistics().ToString().Split(Environment.NewLine);

        // Columns are two spaces apart at least, values hold at most one: a split on two spaces finds every value
        // in its column, and each column's values end where its header ends (right-aligned).
        string[] header = Regex.Split(lines[0].Trim(), " {2,}");
        Assert.Equal(["tier", "rents", "returns", "hits", "misses", "in use", "retained", "fragmented", "uncarved", "rounding"], header);
        foreach (string line in lines[1..5])
        {
            string[] values = Regex.Split(line.Trim(), " {2,}");
            Assert.Equal(header.Length, values.Length);
            for (int column = 1; column < header.Length; column++)
            {
                int end = lines[0].IndexOf(header[column], StringComparison.Ordinal) + header[column].Length;
                Assert.Equal(end, line.IndexOf(values[column], lines[0].IndexOf(header[column - 1], StringComparison.Ordinal) + header[column - 1].Length, StringComparison.Ordinal) + values[column].Length);
            }

            foreach (string bytes in values[5..9])
            {
                Assert.Matches(@"^-?[0-9.]+ (B|KB|MB|GB)$", bytes);
            }
        }

        Assert.StartsWith("medium", lines[2], StringComparison.Ordinal);
        Assert.Contains("4 KB", lines[2], StringComparison.Ordinal);
        held.Dispose();
    }

    [Fact]
    public void PinnedArrayModeCountsArraysNotMmapCalls()
    {
        using var pool = new TieredMemoryPool(new TieredMemoryPoolOptions { UsePinnedArrays = true });
        pool.Rent(100_000).Dispose();
        string text = pool.GetStatistics().ToString();
        Assert.Contains("pinned arrays allocated", text, StringComparison.Ordinal);
        Assert.DoesNotContain("mmap", text, StringComparison.Ordinal);
    }

    [Fact]
    public void EachTierCountsTheBytesAskedForSoItsRoundingShows()
    {
        using var pool = new TieredMemoryPool();
        pool.Rent(100).Dispose();
        pool.Rent(3000).Dispose();
        pool.Rent(3000).Dispose();
        pool.Rent(17_000).Dispose();
        pool.Rent(2_200_000).Dispose();

        TieredMemoryPoolStatistics statistics = pool.GetStatistics();
        Assert.Equal(100, statistics.Small.BytesRequested);
        Assert.Equal(6000, statistics.Medium.BytesRequested);
        Assert.Equal(2 * 4096, statistics.Medium.BytesRented);
        Assert.Equal(8192.0 / 6000, statistics.Medium.RoundingRatio, 6);
        Assert.Equal(17_000, statistics.Large.BytesRequested);
        Assert.Equal(20_480.0 / 17_000, statistics.Large.RoundingRatio, 6);
        Assert.Equal(2_200_000, statistics.Huge.BytesRequested);
    }
}
