using System;
using System.Buffers;
using System.Collections.Concurrent;
using System.Collections.Generic;
using System.Linq;
using System.Threading;
using Microsoft.Extensions.Time.Testing;

namespace Zipora.Buffers.Tests;

/// <summary>
/// The small tier's per-thread caches: blocks a live thread holds are still given back by trims and idle release,
/// a thread's exit hands its blocks on, and the statistics derived from the caches are exact once the pool is quiet,
/// wherever the blocks were returned.
/// </summary>
public sealed class SmallThreadCacheTests
{
    private const int SmallSize = 64;

    // Fewer than a 64-byte class's starting capacity (a quarter of 51), so every block stays in the thread's own stack.
    private const int BlocksPerThread = 8;

    public static TheoryData<bool> ByTrimOrByIdleRelease => new() { false, true };

    [Theory]
    [MemberData(nameof(ByTrimOrByIdleRelease))]
    public void SmallBlocksCachedByALiveThreadAreGivenBackAndTheirSlabUnmapped(bool byIdleRelease)
    {
        var time = new FakeTimeProvider();
        using var pool = new TieredMemoryPool(new TieredMemoryPoolOptions { TimeProvider = time, IdleReleaseDelay = SafetyCases.IdleDelay, EnableHugepages = false });
        using var cached = new ManualResetEventSlim();
        using var finish = new ManualResetEventSlim();
        Exception? failure = null;
        var holder = new Thread(() =>
        {
            try
            {
                RentAndReturn(pool, SmallSize, BlocksPerThread);
                cached.Set();
                finish.Wait();

                // The thread's cache works on after the trim took its blocks away.
                RentAndReturn(pool, SmallSize, BlocksPerThread);
            }
            catch (Exception error)
            {
                failure = error;
                cached.Set();
            }
        });
        holder.Start();
        cached.Wait();

        TieredMemoryPoolStatistics before = pool.GetStatistics();
        Assert.Equal(BlocksPerThread, SmallRows(before).Sum(static row => row.Cached));
        Assert.True(before.Small.BytesAllocated > 0);
        Assert.True(before.Small.BytesRetained >= BlocksPerThread * SmallSize, $"retained {before.Small.BytesRetained}");

        if (byIdleRelease)
        {
            // A quiet tier trims itself within 1.25 delays plus the tick that notices the quiet.
            SafetyCases.Advance(time, SafetyCases.IdleDelay * 2);
        }
        else
        {
            pool.Trim();
        }

        TieredMemoryPoolStatistics trimmed = pool.GetStatistics();
        Assert.Equal(0, SmallRows(trimmed).Sum(static row => row.Cached));
        Assert.Equal(0, trimmed.Small.BytesRetained);

        // The slab's pages were dropped at the trim; the slab itself is unmapped once its blocks' delay is over.
        SafetyCases.Advance(time, SafetyCases.IdleDelay * 3);
        TieredMemoryPoolStatistics released = pool.GetStatistics();
        Assert.True(released.Small.BytesEvicted >= released.Small.BytesAllocated, $"evicted {released.Small.BytesEvicted} of {released.Small.BytesAllocated} bytes mapped");
        Assert.True(released.MunmapCalls > before.MunmapCalls, "the small slab should have been unmapped");

        finish.Set();
        holder.Join();
        Assert.Null(failure);
        TierStatistics small = pool.GetStatistics().Small;
        Assert.Equal(2 * BlocksPerThread, small.Rents);
        Assert.Equal(2 * BlocksPerThread, small.Returns);
        Assert.Equal(0, small.BytesInUse);
    }

    [Fact]
    public void StatisticsAreExactAfterSmallBlocksAreReturnedOnAnotherThread()
    {
        using var pool = new TieredMemoryPool(new TieredMemoryPoolOptions { EnableHugepages = false });
        int[] sizes = [1, 16, 64, 100, 129, 500, 1023];
        const int Rounds = 3;
        const int PerSize = 30;
        var handedOver = new BlockingCollection<IMemoryOwner<byte>>();
        long requested = 0, rented = 0;
        var renter = new Thread(() =>
        {
            for (int round = 0; round < Rounds; round++)
            {
                foreach (int size in sizes)
                {
                    for (int i = 0; i < PerSize; i++)
                    {
                        IMemoryOwner<byte> owner = pool.Rent(size);
                        requested += size;
                        rented += owner.Memory.Length;
                        handedOver.Add(owner);
                    }
                }
            }

            handedOver.CompleteAdding();
        });
        var returner = new Thread(() =>
        {
            foreach (IMemoryOwner<byte> owner in handedOver.GetConsumingEnumerable())
            {
                owner.Dispose();
            }
        });
        renter.Start();
        returner.Start();
        renter.Join();
        returner.Join();

        long rents = Rounds * sizes.Length * PerSize;
        TieredMemoryPoolStatistics statistics = pool.GetStatistics();
        TierStatistics small = statistics.Small;
        Assert.Equal(rents, small.Rents);
        Assert.Equal(rents, small.CacheHits + small.CacheMisses);
        Assert.Equal(rents, small.Returns);
        Assert.Equal(requested, small.BytesRequested);
        Assert.Equal(rented, small.BytesRented);
        Assert.Equal(0, small.BytesInUse);

        // Every block ever carved (a miss) is back, in the returner's cache or the depot.
        List<SizeClassStatistics> rows = SmallRows(statistics);
        Assert.Equal(rents, rows.Sum(static row => row.Rents));
        Assert.All(rows, static row => Assert.Equal(0, row.BuffersInUse));
        Assert.Equal(small.CacheMisses, rows.Sum(static row => row.Cached));
    }

    [Fact]
    public void AThreadThatExitsHandsItsCachedSmallBlocksToTheThreadsAfterIt()
    {
        using var pool = new TieredMemoryPool(new TieredMemoryPoolOptions { EnableHugepages = false });
        var first = new Thread(() => RentAndReturn(pool, SmallSize, BlocksPerThread));
        first.Start();
        first.Join();

        // The next thread's first rent registers its cache, which retires the exited thread's into the depot.
        var second = new Thread(() => RentAndReturn(pool, SmallSize, BlocksPerThread));
        second.Start();
        second.Join();

        TierStatistics small = pool.GetStatistics().Small;
        Assert.Equal(2 * BlocksPerThread, small.Rents);
        Assert.Equal(BlocksPerThread, small.CacheMisses);
        Assert.Equal(BlocksPerThread, small.CacheHits);
        Assert.Equal(2 * BlocksPerThread, small.Returns);
    }

    [Fact]
    public void SmallAndMediumRentsTakingTurnsOnOneThreadBothHitTheirCaches()
    {
        using var pool = new TieredMemoryPool(new TieredMemoryPoolOptions { EnableHugepages = false });
        for (int turn = 0; turn < 10; turn++)
        {
            pool.Rent(SmallSize).Dispose();
            pool.Rent(4096).Dispose();
        }

        TieredMemoryPoolStatistics statistics = pool.GetStatistics();
        Assert.Equal(9, statistics.Small.CacheHits);
        Assert.Equal(1, statistics.Small.CacheMisses);
        Assert.Equal(9, statistics.Medium.CacheHits);
        Assert.Equal(1, statistics.Medium.CacheMisses);
    }

    private static void RentAndReturn(TieredMemoryPool pool, int size, int count)
    {
        var owners = new List<IMemoryOwner<byte>>();
        for (int i = 0; i < count; i++)
        {
            IMemoryOwner<byte> owner = pool.Rent(size);
            owner.Memory.Span.Fill(0x5A);
            owners.Add(owner);
        }

        owners.ForEach(static owner => owner.Dispose());
    }

    private static List<SizeClassStatistics> SmallRows(TieredMemoryPoolStatistics statistics) =>
        [.. statistics.SizeHistogram.Where(static row => row.Tier == "small")];

    [Theory]
    [InlineData(100)]
    [InlineData(1000)]
    public void ASmallClassKeepsEightBuffersPerThreadWhateverTheByteBudgetLeavesIt(int size)
    {
        // 1 KB over all the small classes leaves none of them a whole buffer; the documented floor is 8, so the
        // eight buffers this thread returns stay in its cache and another thread's rent finds none of them.
        using var pool = new TieredMemoryPool(new TieredMemoryPoolOptions { AdaptiveCaches = false, ThreadCacheMaxBytes = 1024, IdleReleaseDelay = Timeout.InfiniteTimeSpan });
        var held = new List<IMemoryOwner<byte>>();
        for (int i = 0; i < 8; i++)
        {
            held.Add(pool.Rent(size));
        }

        held.ForEach(owner => owner.Dispose());
        var other = new Thread(() => pool.Rent(size).Dispose());
        other.Start();
        other.Join();

        TierStatistics small = pool.GetStatistics().Small;
        Assert.True(small.CacheMisses == 9 && small.CacheHits == 0, $"8 buffers of {size} B returned on one thread under a 1 KB budget, then a rent on another: {small.CacheHits} hits, {small.CacheMisses} misses (the 8 should have stayed in the first thread's cache)");
    }
}
