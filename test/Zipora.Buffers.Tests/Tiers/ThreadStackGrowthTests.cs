using System;
using System.Buffers;
using System.Collections.Generic;
using System.Threading;
using Microsoft.Extensions.Time.Testing;

namespace Zipora.Buffers.Tests;

/// <summary>
/// The slab tiers' thread stacks start with short slots and grow with the thread's rents: a thread's first rent costs
/// the same few kilobytes whatever the cache limits, and a thread that fills a large cache still gets all of it.
/// </summary>
public sealed class ThreadStackGrowthTests
{
    // A thread's first rents of a small, a medium and a large buffer: both slab tiers' caches and a region slot.
    private static readonly int[] s_firstSizes = [64, 4096, 64 * 1024];

    [Fact]
    public void AThreadsFirstRentsAllocateAFewKilobytesEvenWithTheThreadCacheLimitsAtTheirMaximum()
    {
        // In a process of its own: in the suite, a fresh thread's first rents allocated 170-360 KB more (what the tests
        // running beside it do, not found), under either options and by different amounts for each.
        if (IsolatedProcess.RunsElsewhere(typeof(ThreadStackGrowthTests), nameof(AThreadsFirstRentsAllocateAFewKilobytesEvenWithTheThreadCacheLimitsAtTheirMaximum)))
        {
            return;
        }

        long byDefault = FirstRentsOnAFreshThread(new TieredMemoryPoolOptions { IdleReleaseDelay = Timeout.InfiniteTimeSpan });
        long atMaximum = FirstRentsOnAFreshThread(new TieredMemoryPoolOptions
        {
            ThreadCacheMaxBuffers = int.MaxValue,
            ThreadCacheMaxBytes = int.MaxValue,
            IdleReleaseDelay = Timeout.InfiniteTimeSpan,
        });

        // Every stack starts with at most 128 slots (1 KB), the default limit: the five medium classes of the default
        // mmap threshold hold 640 at most, against 434 with the default limits. The slots of every class at its limit
        // came to 6.5 MB.
        Assert.True(atMaximum <= byDefault + (5 * 1024), $"a fresh thread's first rents allocated {atMaximum} bytes with the thread cache limits at int.MaxValue, {byDefault} with the defaults");
        Assert.True(atMaximum < 32 * 1024, $"a fresh thread's first rents allocated {atMaximum} bytes with the thread cache limits at int.MaxValue");
    }

    [Fact]
    public void AThreadThatFillsALargeCacheKeepsEveryBlockReusesThemWithoutMappingAndATrimTakesThemAll()
    {
        const int Size = 1024;
        const int Blocks = 20_000;
        using TieredMemoryPool pool = PoolWithALargeFixedCache();

        for (int round = 0; round < 2; round++)
        {
            // Every block comes back into this thread's stack, grown by the rents to hold them: none reaches the depot.
            BurstKeepsEveryBlockOnTheThread(pool, Size, Blocks, $"round {round + 1}");
            long maps = pool.GetStatistics().MmapCalls;
            BurstKeepsEveryBlockOnTheThread(pool, Size, Blocks, $"round {round + 1}, reused");
            TieredMemoryPoolStatistics reused = pool.GetStatistics();
            Assert.Equal(maps, reused.MmapCalls);

            // The trim takes every block from the live thread's stack and frees every slab; the stack grows again after.
            DepotReservation.AssertATrimFreesEverySlabAndItsRoom(pool, $"round {round + 1}: a trim after {Blocks} blocks filled a thread's stack");
            Assert.Equal(0, pool.GetStatistics().Medium.BuffersInUse);
        }
    }

    [Fact]
    public void SlotsThatGrowWhileTheStackHoldsBlocksKeepEveryBlock()
    {
        const int Size = 1024;
        using TieredMemoryPool pool = PoolWithALargeFixedCache();
        using var other = new TieredMemoryPool(new TieredMemoryPoolOptions { IdleReleaseDelay = Timeout.InfiniteTimeSpan });

        // 128 blocks fill the stack's first slots exactly. A rent from another pool makes the next rent of this one
        // take the slow path with the stack full: the thread's 129th block grows the slots, the 128 moving across.
        DepotReservation.Rent(pool, Size, 128).ForEach(static owner => owner.Dispose());
        other.Rent(Size).Dispose();
        long maps = pool.GetStatistics().MmapCalls;
        List<IMemoryOwner<byte>> again = DepotReservation.Rent(pool, Size, 128);
        SafetyCases.AssertDisjoint(again, "the blocks rented back after the slots grew");

        TierStatistics medium = pool.GetStatistics().Medium;
        Assert.Equal(128, medium.CacheHits);
        Assert.Equal(maps, pool.GetStatistics().MmapCalls);
        again.ForEach(static owner => owner.Dispose());
        Assert.Equal(0, DepotReservation.HeldIn(pool, "_medium", Size));
        DepotReservation.AssertATrimFreesEverySlabAndItsRoom(pool, "after the slots grew under 128 blocks");
    }

    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public void AGrownStackIsHandedOnWholeWhenItsThreadExitsAndGivenBackWholeWhenItGoesIdle(bool threadExits)
    {
        const int Size = 1024;
        const int Blocks = 5_000;
        var time = new FakeTimeProvider();
        using var pool = new TieredMemoryPool(new TieredMemoryPoolOptions
        {
            ThreadCacheMaxBuffers = 100_000,
            ThreadCacheMaxBytes = int.MaxValue,
            TimeProvider = time,
            IdleReleaseDelay = SafetyCases.IdleDelay,
        });
        using var filled = new ManualResetEventSlim();
        using var finish = new ManualResetEventSlim();
        Exception? failure = null;
        var holder = new Thread(() =>
        {
            try
            {
                BurstKeepsEveryBlockOnTheThread(pool, Size, Blocks, "the holder's burst");
                filled.Set();
                if (!threadExits)
                {
                    // The stack works on, and grows again, after the idle release took its blocks and its slots.
                    finish.Wait();
                    BurstKeepsEveryBlockOnTheThread(pool, Size, Blocks, "the holder's burst after the idle release");
                }
            }
            catch (Exception error)
            {
                failure = error;
                filled.Set();
            }
        });
        holder.Start();
        filled.Wait();
        long maps = pool.GetStatistics().MmapCalls;
        if (threadExits)
        {
            // The exited thread's blocks go to the depot: this thread rents every one back without a mapping.
            holder.Join();
            List<IMemoryOwner<byte>> again = DepotReservation.Rent(pool, Size, Blocks);
            Assert.Equal(maps, pool.GetStatistics().MmapCalls);
            Assert.Equal(Blocks, pool.GetStatistics().Medium.CacheHits);
            again.ForEach(static owner => owner.Dispose());
        }
        else
        {
            // A quiet tier trims itself within 1.25 delays plus the tick that notices the quiet.
            SafetyCases.Advance(time, SafetyCases.IdleDelay * 2);
            Assert.Equal(0, pool.GetStatistics().Medium.BytesRetained);
            finish.Set();
            holder.Join();
        }

        Assert.Null(failure);
        Assert.Equal(0, pool.GetStatistics().Medium.BuffersInUse);
        DepotReservation.AssertATrimFreesEverySlabAndItsRoom(pool, threadExits ? "after the thread exited" : "after the idle release and a second burst");
    }

    /// <summary>Rents <paramref name="blocks"/> buffers at once, returns them, and checks that the depot took none.</summary>
    private static void BurstKeepsEveryBlockOnTheThread(TieredMemoryPool pool, int size, int blocks, string when)
    {
        List<IMemoryOwner<byte>> owners = DepotReservation.Rent(pool, size, blocks);
        SafetyCases.AssertDisjoint(owners, when);
        owners.ForEach(static owner => owner.Dispose());
        Assert.Equal(0, DepotReservation.HeldIn(pool, "_medium", size));
        Assert.Equal(blocks, pool.GetStatistics().Medium.BytesRetained / size);
    }

    /// <summary>A pool whose threads may keep 100,000 blocks of a class, at a fixed capacity (not adaptive), never released idle.</summary>
    private static TieredMemoryPool PoolWithALargeFixedCache() => new(new TieredMemoryPoolOptions
    {
        ThreadCacheMaxBuffers = 100_000,
        ThreadCacheMaxBytes = int.MaxValue,
        AdaptiveCaches = false,
        IdleReleaseDelay = Timeout.InfiniteTimeSpan,
    });

    /// <summary>The managed bytes a fresh thread's first rent and dispose of each of <see cref="s_firstSizes"/> allocate.</summary>
    private static long FirstRentsOnAFreshThread(TieredMemoryPoolOptions options)
    {
        using var pool = new TieredMemoryPool(options);

        // Once on another fresh thread first, so the paths are compiled and the counts are of the thread's first rents
        // alone; then the least of three fresh threads, so one thread's share of what other tests do meanwhile is left out.
        _ = ThreadAllocations.OnAFreshThread(() => RentAndDisposeEach(pool));
        long least = long.MaxValue;
        for (int thread = 0; thread < 3; thread++)
        {
            least = Math.Min(least, ThreadAllocations.OnAFreshThread(() => RentAndDisposeEach(pool)));
        }

        return least;
    }

    private static void RentAndDisposeEach(TieredMemoryPool pool)
    {
        foreach (int size in s_firstSizes)
        {
            pool.Rent(size).Dispose();
        }
    }
}
