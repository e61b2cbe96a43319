using System;
using System.Collections.Generic;
using System.Threading;
using Microsoft.Extensions.Time.Testing;

namespace Zipora.Buffers.Tests;

public sealed class ArrayPoolReclaimTests
{
    private static readonly TimeSpan s_delay = TimeSpan.FromSeconds(10);

    [Fact]
    public void AfterABurstAndThirtySecondsIdleThePoolKeepsUnderATenthOfItsPeak()
    {
        var time = new FakeTimeProvider();
        var pool = new TieredArrayPool(new TieredArrayPoolOptions { TimeProvider = time, IdleReleaseDelay = s_delay });
        Burst(pool, [100, 1000, 4096, 20_000, 300_000, 3_000_000], depth: 50);
        long peak = pool.GetStatistics().BytesRetained;
        Assert.True(peak > 150_000_000, $"peak {peak}");

        for (int second = 0; second < 30; second++)
        {
            time.Advance(TimeSpan.FromSeconds(1));
        }

        TieredArrayPoolStatistics statistics = pool.GetStatistics();
        Assert.True(statistics.BytesRetained <= peak / 10, statistics.ToString());
        Assert.Equal(peak, statistics.Arrays.BytesEvicted);
    }

    [Fact]
    public void OnlyTheClassesThatWentQuietAreDropped()
    {
        var time = new FakeTimeProvider();
        var pool = new TieredArrayPool(new TieredArrayPoolOptions { TimeProvider = time, IdleReleaseDelay = s_delay });
        Burst(pool, [4096, 65_536], depth: 20);

        for (int tick = 0; tick < 12; tick++)
        {
            Burst(pool, [4096], depth: 20);
            time.Advance(s_delay / 4);
        }

        // The busy 4 KB class kept its 20 arrays and needed no new one; the idle 64 KB class is gone.
        TieredArrayPoolStatistics statistics = pool.GetStatistics();
        Assert.Equal(20 * 4096, statistics.BytesRetained);
        Assert.Equal(40, statistics.Arrays.CacheMisses);
    }

    [Fact]
    public void NothingIsDroppedBeforeTheDelay()
    {
        var time = new FakeTimeProvider();
        var pool = new TieredArrayPool(new TieredArrayPoolOptions { TimeProvider = time, IdleReleaseDelay = s_delay });
        Burst(pool, [2048], depth: 10);

        time.Advance(s_delay * 0.7);
        Assert.Equal(10 * 2048, pool.GetStatistics().BytesRetained);
    }

    [Fact]
    public void IdleArraysInTheCacheOfAnIdleThreadAreDroppedToo()
    {
        var time = new FakeTimeProvider();
        var pool = new TieredArrayPool(new TieredArrayPoolOptions { TimeProvider = time, IdleReleaseDelay = s_delay });
        using var parked = new ManualResetEventSlim();
        using var filled = new ManualResetEventSlim();
        var worker = new Thread(() =>
        {
            Burst(pool, [8192], depth: 30);
            filled.Set();
            parked.Wait();
        });
        worker.Start();
        filled.Wait();

        for (int tick = 0; tick < 8; tick++)
        {
            time.Advance(s_delay / 4);
        }

        Assert.Equal(0, pool.GetStatistics().BytesRetained);
        parked.Set();
        worker.Join();
    }

    [Fact]
    public void TrimDropsEveryCachedArrayAndThePoolGoesOn()
    {
        var pool = new TieredArrayPool();
        Burst(pool, [16, 1024, 70_000, 2_000_000], depth: 10);
        byte[] held = pool.Rent(1024);
        Assert.True(pool.GetStatistics().BytesRetained > 0);

        pool.Trim();

        TieredArrayPoolStatistics statistics = pool.GetStatistics();
        Assert.Equal(0, statistics.BytesRetained);
        Assert.Equal(1024, statistics.BytesInUse);
        pool.Return(held);
        Assert.Same(held, pool.Rent(1024));
    }

    [Fact]
    public void TrimWhileOtherThreadsRentAndReturnLosesNoArraySharesNoArrayAndBreaksNoCount()
    {
        // Trims abandon the stacks of threads in the middle of rents and returns, with no handshake: the racing
        // operations must still hand each array to one holder at a time, and the counts must still add up.
        var pool = new TieredArrayPool();
        using var stop = new CancellationTokenSource();
        int shared = 0;
        var workers = new Thread[2];
        for (int w = 0; w < workers.Length; w++)
        {
            byte stamp = (byte)(w + 1);
            workers[w] = new Thread(() =>
            {
                var held = new List<byte[]>();
                while (!stop.IsCancellationRequested)
                {
                    foreach (int length in (int[])[512, 4096, 30_000])
                    {
                        for (int i = 0; i < 16; i++)
                        {
                            byte[] array = pool.Rent(length);
                            array.AsSpan().Fill(stamp);
                            held.Add(array);
                        }
                    }

                    foreach (byte[] array in held)
                    {
                        if (array.AsSpan().IndexOfAnyExcept(stamp) >= 0)
                        {
                            Interlocked.Increment(ref shared);
                        }

                        pool.Return(array);
                    }

                    held.Clear();
                }
            });
            workers[w].Start();
        }

        var elapsed = System.Diagnostics.Stopwatch.StartNew();
        while (elapsed.ElapsedMilliseconds < 300)
        {
            pool.Trim();
            Thread.Yield();
        }

        stop.Cancel();
        foreach (Thread worker in workers)
        {
            worker.Join();
        }

        Assert.Equal(0, shared);
        TieredArrayPoolStatistics statistics = pool.GetStatistics();
        Assert.True(statistics.Arrays.BytesEvicted > 0 && statistics.Arrays.CacheHits > 1000, $"{statistics.Arrays}");
        Assert.Equal(statistics.Arrays.Rents, statistics.Arrays.Returns);
        Assert.Equal(statistics.Arrays.Rents, statistics.Arrays.CacheHits + statistics.Arrays.CacheMisses);
        Assert.Equal(0, statistics.BytesInUse);
        Assert.Equal(statistics.Arrays.BytesAllocated, statistics.BytesRetained + statistics.Arrays.BytesEvicted);
    }

    private static void Burst(TieredArrayPool pool, int[] lengths, int depth)
    {
        var held = new List<byte[]>();
        foreach (int length in lengths)
        {
            for (int i = 0; i < depth; i++)
            {
                held.Add(pool.Rent(length));
            }
        }

        foreach (byte[] array in held)
        {
            pool.Return(array);
        }
    }
}
