using System;
using System.Buffers;
using System.Collections.Concurrent;
using System.Collections.Generic;
using System.Diagnostics;
using System.Threading;

namespace Zipora.Buffers.Tests;

/// <summary>
/// A caller's double return: the README says, as for <see cref="ArrayPool{T}.Shared"/>, that it corrupts whoever rents
/// the array next. The pool must not make it worse: one double return is at most two holders of the array at once,
/// whatever the depot, the other threads and the trims do with the copies, and a trim ends it.
/// </summary>
public sealed partial class ArrayPoolAttackTests
{
    private const int DoubleReturnLength = 2 * 1024 * 1024;

    [Fact]
    public void ADoubleReturnOnOneThreadHandsTheArrayToExactlyTwoRentersAsSharedDoes()
    {
        var pool = new TieredArrayPool(new TieredArrayPoolOptions { IdleReleaseDelay = Timeout.InfiniteTimeSpan });
        int ours = HoldersAfterADoubleReturn(pool);

        // Shared, compared on a dedicated thread and a length nothing else here rents.
        int shared = 0;
        var thread = new Thread(() => shared = HoldersAfterADoubleReturn(ArrayPool<byte>.Shared));
        thread.Start();
        thread.Join();

        Assert.Equal(2, ours);
        Assert.Equal(2, shared);
    }

    [Theory]
    [InlineData(128, 16)]
    [InlineData(1, 16)]
    [InlineData(0, 16)]
    [InlineData(4, 5120)]
    [InlineData(128, 4096)]
    public void ADoubleReturnNeverGivesTheArrayToMoreThanTwoHoldersAtOnceWhateverTheDepotThreadsAndTrimsDo(int threadCacheMaxArrays, int length)
    {
        var pool = new TieredArrayPool(new TieredArrayPoolOptions { ThreadCacheMaxArrays = threadCacheMaxArrays, IdleReleaseDelay = Timeout.InfiniteTimeSpan });
        byte[] doubled = pool.Rent(length);

        // The first thread returns it twice, then threads rent bursts, hand half of them to another thread to return (so copies travel through the depot),
        // and count how many hold the doubled array at once. Trims come only in the second half.
        int holders = 0;
        int mostHolders = 0;
        int seen = 0;
        int trimming = 0;
        var handOff = new ConcurrentQueue<byte[]>();
        var failures = new ConcurrentQueue<string>();
        var watch = Stopwatch.StartNew();
        var threads = new List<Thread>();
        for (int t = 0; t < 3; t++)
        {
            bool first = t == 0;
            threads.Add(new Thread(() =>
            {
                try
                {
                    if (first)
                    {
                        pool.Return(doubled);
                        pool.Return(doubled);
                    }

                    var held = new List<byte[]>();
                    var random = new Random(Environment.CurrentManagedThreadId);
                    while (watch.ElapsedMilliseconds < 600)
                    {
                        int burst = random.Next(1, 40);
                        for (int i = 0; i < burst; i++)
                        {
                            byte[] array = pool.Rent(length);
                            if (ReferenceEquals(array, doubled))
                            {
                                int now = Interlocked.Increment(ref holders);
                                Interlocked.Increment(ref seen);
                                InterlockedMax(ref mostHolders, now);
                            }

                            held.Add(array);
                        }

                        foreach (byte[] array in held)
                        {
                            if (ReferenceEquals(array, doubled))
                            {
                                Interlocked.Decrement(ref holders);
                            }

                            if (random.Next(2) == 0)
                            {
                                handOff.Enqueue(array);
                            }
                            else
                            {
                                pool.Return(array);
                            }
                        }

                        held.Clear();
                        while (handOff.TryDequeue(out byte[]? other))
                        {
                            pool.Return(other);
                        }

                        if (watch.ElapsedMilliseconds > 300 && Interlocked.Exchange(ref trimming, 1) == 0)
                        {
                            pool.Trim();
                            Volatile.Write(ref trimming, 0);
                        }
                    }
                }
                catch (Exception exception)
                {
                    failures.Enqueue(exception.ToString());
                }
            }));
        }

        foreach (Thread thread in threads)
        {
            thread.Start();
        }

        foreach (Thread thread in threads)
        {
            thread.Join();
        }

        Assert.True(failures.IsEmpty, string.Join(Environment.NewLine, failures));
        Assert.True(seen > 0, "the doubled array was never rented again");
        Assert.True(mostHolders <= 2, $"one double return put the array in {mostHolders} hands at once");
    }

    [Fact]
    public void ATrimEndsTheDuplicateThatADoubleReturnLeftInTheCaches()
    {
        var pool = new TieredArrayPool(new TieredArrayPoolOptions { IdleReleaseDelay = Timeout.InfiniteTimeSpan });
        byte[] doubled = pool.Rent(1000);
        pool.Return(doubled);
        pool.Return(doubled);

        // Without a trim the duplicate lasts: both holders give it back and the pool holds it twice again, as Shared.
        for (int round = 0; round < 3; round++)
        {
            byte[] first = pool.Rent(1000);
            byte[] second = pool.Rent(1000);
            Assert.Same(first, second);
            pool.Return(first);
            pool.Return(second);
        }

        pool.Trim();
        var held = new List<byte[]>();
        for (int i = 0; i < 10; i++)
        {
            held.Add(pool.Rent(1000));
        }

        Assert.Equal(held.Count, new HashSet<byte[]>(held, ReferenceEqualityComparer.Instance).Count);
        Assert.DoesNotContain(held, array => ReferenceEquals(array, doubled));
    }

    [Fact]
    public void ADoubleReturnLeavesNoNegativeFigureAndTheCountsBalanceWhenTheHoldersReturnIt()
    {
        var pool = new TieredArrayPool(new TieredArrayPoolOptions { IdleReleaseDelay = Timeout.InfiniteTimeSpan });
        byte[] doubled = pool.Rent(300);
        pool.Return(doubled);
        pool.Return(doubled);
        AssertNoNegativeFigure(pool.GetStatistics());

        byte[] first = pool.Rent(300);
        byte[] second = pool.Rent(300);
        TieredArrayPoolStatistics statistics = pool.GetStatistics();
        AssertNoNegativeFigure(statistics);
        // Three rents and two returns counted: one array's worth in use, though two callers hold the one array.
        Assert.Equal(512, statistics.BytesInUse);
        pool.Return(first);
        pool.Return(second);
        statistics = pool.GetStatistics();
        Assert.Equal(statistics.Arrays.Rents, statistics.Arrays.Returns);
        Assert.Equal(0, statistics.BytesInUse);
    }

    private static int HoldersAfterADoubleReturn(ArrayPool<byte> pool)
    {
        byte[] doubled = pool.Rent(DoubleReturnLength);
        pool.Return(doubled);
        pool.Return(doubled);
        var held = new List<byte[]>();
        for (int i = 0; i < 8; i++)
        {
            held.Add(pool.Rent(DoubleReturnLength));
        }

        int holders = held.FindAll(array => ReferenceEquals(array, doubled)).Count;
        foreach (byte[] array in held)
        {
            if (!ReferenceEquals(array, doubled))
            {
                pool.Return(array);
            }
        }

        return holders;
    }

    private static void InterlockedMax(ref int target, int value)
    {
        int current = Volatile.Read(ref target);
        while (value > current)
        {
            int seen = Interlocked.CompareExchange(ref target, value, current);
            if (seen == current)
            {
                return;
            }

            current = seen;
        }
    }

    private static void AssertNoNegativeFigure(TieredArrayPoolStatistics statistics)
    {
        TierStatistics arrays = statistics.Arrays;
        Assert.True(
            arrays.Rents >= 0 && arrays.Returns >= 0 && arrays.CacheHits >= 0 && arrays.CacheMisses >= 0 && arrays.BytesInUse >= 0
            && arrays.BytesRetained >= 0 && arrays.BytesRented >= 0 && arrays.BytesAllocated >= 0 && arrays.BytesEvicted >= 0
            && statistics.UnpooledRents >= 0 && arrays.Rents >= arrays.Returns,
            $"a negative figure: {statistics}");
    }
}
