using System.Collections.Concurrent;
using System.Collections.Generic;
using System.Threading;

namespace Zipora.Buffers.Tests;

public sealed class ArrayPoolCachingTests
{
    [Theory]
    [InlineData(1024, 8)]
    [InlineData(4096, 32)]
    [InlineData(16_384, 100)]
    public void RepeatedBurstsAreServedFromTheThreadsCacheAfterTheFirst(int length, int depth)
    {
        var pool = new TieredArrayPool();
        var burst = new byte[depth][];
        for (int round = 0; round < 50; round++)
        {
            for (int i = 0; i < depth; i++)
            {
                burst[i] = pool.Rent(length);
            }

            for (int i = 0; i < depth; i++)
            {
                pool.Return(burst[i]);
            }
        }

        TierStatistics arrays = pool.GetStatistics().Arrays;
        Assert.Equal(depth, arrays.CacheMisses);
        Assert.Equal(49L * depth, arrays.CacheHits);
    }

    [Fact]
    public void ArraysReturnedOnAnotherThreadAreReusedByTheRentingThread()
    {
        var pool = new TieredArrayPool();
        using var handOff = new BlockingCollection<byte[]>(boundedCapacity: 16);
        var returner = new Thread(() =>
        {
            foreach (byte[] array in handOff.GetConsumingEnumerable())
            {
                pool.Return(array);
            }
        });
        returner.Start();

        const int Rents = 20_000;
        for (int i = 0; i < Rents; i++)
        {
            handOff.Add(pool.Rent(4096));
        }

        handOff.CompleteAdding();
        returner.Join();

        // The returning thread keeps at most one stack's worth (128) before it hands the cold half on, and the
        // hand-off queue holds 16 more: everything else must be reuse.
        TieredArrayPoolStatistics statistics = pool.GetStatistics();
        Assert.True(statistics.Arrays.CacheMisses < 128 + 16 + 64, statistics.ToString());
        Assert.Equal(Rents, statistics.Arrays.Returns);
    }

    [Fact]
    public void TheArraysOfAThreadThatExitedGoToTheOtherThreads()
    {
        var pool = new TieredArrayPool();
        var worker = new Thread(() =>
        {
            var held = new List<byte[]>();
            for (int i = 0; i < 40; i++)
            {
                held.Add(pool.Rent(8192));
            }

            held.ForEach(array => pool.Return(array));
        });
        worker.Start();
        worker.Join();

        Assert.Equal(40L * 8192, pool.GetStatistics().BytesRetained);
        for (int i = 0; i < 40; i++)
        {
            _ = pool.Rent(8192);
        }

        TierStatistics arrays = pool.GetStatistics().Arrays;
        Assert.Equal(40, arrays.CacheHits);
        Assert.Equal(40, arrays.CacheMisses);
    }

    [Fact]
    public void AFullThreadCacheSpillsToTheDepotAndPastItsCapDropsArrays()
    {
        var pool = new TieredArrayPool(new TieredArrayPoolOptions { ThreadCacheMaxArrays = 8, SharedCacheMaxBytes = 8 * 1024 });
        var held = new List<byte[]>();
        for (int i = 0; i < 40; i++)
        {
            held.Add(pool.Rent(1024));
        }

        held.ForEach(array => pool.Return(array));

        // 8 in the thread's stack at most, 8 KB (8 arrays) in the depot at most; the rest are left to the GC.
        TierStatistics arrays = pool.GetStatistics().Arrays;
        Assert.InRange(arrays.BytesRetained, 8 * 1024, 16 * 1024);
        Assert.Equal((40 * 1024) - arrays.BytesRetained, arrays.BytesEvicted);
        Assert.Equal(0, arrays.BytesInUse);
    }

    [Fact]
    public void WithoutThreadCachesEveryArrayGoesThroughTheDepot()
    {
        var pool = new TieredArrayPool(new TieredArrayPoolOptions { ThreadCacheMaxArrays = 0 });
        byte[] array = pool.Rent(2048);
        pool.Return(array);
        Assert.Same(array, pool.Rent(2048));
        Assert.Equal(1, pool.GetStatistics().Arrays.CacheHits);
    }

    [Fact]
    public void ClassesLongerThanTheThreadBudgetKeepOneArrayPerThread()
    {
        var pool = new TieredArrayPool(new TieredArrayPoolOptions { ThreadCacheMaxBytesPerClass = 64 * 1024 });
        byte[] first = pool.Rent(100_000);
        byte[] second = pool.Rent(100_000);
        pool.Return(first);
        pool.Return(second);

        // The thread keeps the last one returned, the other went on to the shared depot: both come back, newest first.
        Assert.Same(second, pool.Rent(100_000));
        Assert.Same(first, pool.Rent(100_000));
        Assert.Equal(2, pool.GetStatistics().Arrays.CacheHits);
    }

    [Fact]
    public void AZeroThreadBudgetSendsEveryClassToTheSharedDepot()
    {
        var pool = new TieredArrayPool(new TieredArrayPoolOptions { ThreadCacheMaxBytesPerClass = 0 });
        byte[] array = pool.Rent(100_000);
        var other = new Thread(() => pool.Return(array));
        other.Start();
        other.Join();

        // Returned on a thread that has since exited, yet found at once: it went straight to the shared depot.
        Assert.Same(array, pool.Rent(100_000));
    }

    [Fact]
    public void TwoPoolsOnOneThreadKeepTheirArraysApart()
    {
        var first = new TieredArrayPool();
        var second = new TieredArrayPool();
        byte[] fromFirst = first.Rent(512);
        first.Return(fromFirst);
        byte[] fromSecond = second.Rent(512);
        second.Return(fromSecond);

        Assert.Same(fromFirst, first.Rent(512));
        Assert.Same(fromSecond, second.Rent(512));
    }

    [Fact]
    public void ARentAfterAnotherPoolWasUsedTakesFromTheThreadsStackThoughTheDepotHoldsArrays()
    {
        var pool = new TieredArrayPool(new TieredArrayPoolOptions { ThreadCacheMaxArrays = 4 });
        var other = new TieredArrayPool();

        // Another thread leaves arrays in the depot, past its own stack of 4.
        var filler = new Thread(() => Burst(pool, 1024, depth: 12));
        filler.Start();
        filler.Join();

        // This thread returns 3 arrays (more than the half a refill brings) while the other pool is its last used, so
        // its next rent of the pool misses the fast path with a stack that is not empty.
        var held = new List<byte[]>();
        for (int i = 0; i < 3; i++)
        {
            held.Add(pool.Rent(1024));
        }

        foreach (byte[] array in held)
        {
            other.Return(other.Rent(16));
            pool.Return(array);
        }

        other.Return(other.Rent(16));
        Assert.Same(held[^1], pool.Rent(1024));
        TierStatistics arrays = pool.GetStatistics().Arrays;
        Assert.Equal(12, arrays.CacheMisses);
        Assert.Equal(4, arrays.CacheHits);
        Assert.Equal(1024, arrays.BytesInUse);
    }

    private static void Burst(TieredArrayPool pool, int length, int depth)
    {
        var held = new byte[depth][];
        for (int i = 0; i < depth; i++)
        {
            held[i] = pool.Rent(length);
        }

        foreach (byte[] array in held)
        {
            pool.Return(array);
        }
    }
}
