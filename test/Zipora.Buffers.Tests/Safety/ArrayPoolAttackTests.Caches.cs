using System;
using System.Collections.Concurrent;
using System.Collections.Generic;
using System.Runtime.CompilerServices;
using System.Threading;
using Microsoft.Extensions.Time.Testing;

namespace Zipora.Buffers.Tests;

/// <summary>The caches' bounds (stack depth, byte caps, pinning) and a dropped pool's arrays, wherever they sat.</summary>
public sealed partial class ArrayPoolAttackTests
{
    [Theory]
    [InlineData(0)]
    [InlineData(1000)]
    [InlineData(16 * 1024)]
    [InlineData(int.MaxValue)]
    public void PinnedThresholdDecidesWhichArraysComeFromThePinnedHeapPooledOrPastTheMaximum(int threshold)
    {
        var pool = new TieredArrayPool(new TieredArrayPoolOptions { PinnedThreshold = threshold, MaxArrayLength = 8192, IdleReleaseDelay = Timeout.InfiniteTimeSpan });
        foreach (int length in new[] { 16, 999, 1000, 1024, 8192, 8193, 20_000 })
        {
            byte[] array = pool.Rent(length);

            // Below the large object threshold only a pinned-heap array starts in the oldest generation.
            Assert.True(
                array.Length >= threshold == (GC.GetGeneration(array) == GC.MaxGeneration),
                $"Rent({length}) with PinnedThreshold {threshold}: an array of {array.Length} bytes in generation {GC.GetGeneration(array)}");
            pool.Return(array);
        }
    }

    [Fact]
    public void AThreadKeepsNoMoreThanThreadCacheMaxArraysAndTheDepotNoMoreThanItsCap()
    {
        var pool = new TieredArrayPool(new TieredArrayPoolOptions { ThreadCacheMaxArrays = 5, SharedCacheMaxBytes = 0, IdleReleaseDelay = Timeout.InfiniteTimeSpan });
        var held = new List<byte[]>();
        for (int i = 0; i < 12; i++)
        {
            held.Add(pool.Rent(2048));
        }

        held.ForEach(array => pool.Return(array));
        TierStatistics arrays = pool.GetStatistics().Arrays;
        Assert.InRange(arrays.BytesRetained, 2048, 5 * 2048);
        Assert.Equal(12 * 2048, arrays.BytesRetained + arrays.BytesEvicted);

        // The byte budget per class: 3 arrays of 1 MB at most, whatever the count allows.
        var large = new TieredArrayPool(new TieredArrayPoolOptions { ThreadCacheMaxBytesPerClass = 3 << 20, SharedCacheMaxBytes = 0, IdleReleaseDelay = Timeout.InfiniteTimeSpan });
        held.Clear();
        for (int i = 0; i < 8; i++)
        {
            held.Add(large.Rent(1 << 20));
        }

        held.ForEach(array => large.Return(array));
        Assert.InRange(large.GetStatistics().BytesRetained, 1 << 20, 3 << 20);
    }

    [Fact]
    public void SharedCacheMaxBytesBoundsTheDepotsWhileManyThreadsReturnAtOnce()
    {
        const int Length = 4096;
        const int Cap = 10 * Length;
        var pool = new TieredArrayPool(new TieredArrayPoolOptions { ThreadCacheMaxArrays = 0, SharedCacheMaxBytes = Cap, IdleReleaseDelay = Timeout.InfiniteTimeSpan });
        using var start = new Barrier(4);
        long mostRetained = 0;
        var threads = new Thread[4];
        for (int t = 0; t < threads.Length; t++)
        {
            threads[t] = new Thread(() =>
            {
                for (int round = 0; round < 50; round++)
                {
                    var held = new List<byte[]>();
                    for (int i = 0; i < 20; i++)
                    {
                        held.Add(pool.Rent(Length));
                    }

                    start.SignalAndWait();
                    held.ForEach(array => pool.Return(array));
                    long retained = pool.GetStatistics().BytesRetained;
                    long seen;
                    while (retained > (seen = Volatile.Read(ref mostRetained)) && Interlocked.CompareExchange(ref mostRetained, retained, seen) != seen)
                    {
                    }
                }
            });
            threads[t].Start();
        }

        foreach (Thread thread in threads)
        {
            thread.Join();
        }

        TierStatistics arrays = pool.GetStatistics().Arrays;
        Assert.True(mostRetained <= Cap, $"the depots held {mostRetained} bytes, over their cap of {Cap}");
        Assert.Equal(Cap, arrays.BytesRetained);
        Assert.Equal(arrays.BytesAllocated, arrays.BytesRetained + arrays.BytesEvicted);
        Assert.Equal(arrays.Rents, arrays.Returns);
    }

    [Fact]
    public void IdleReleaseTakesTheQuietClassFromAParkedThreadAndTheDepotButNeverTheClassABusyThreadUses()
    {
        var time = new FakeTimeProvider();
        TimeSpan delay = TimeSpan.FromSeconds(1);
        var pool = new TieredArrayPool(new TieredArrayPoolOptions { ThreadCacheMaxArrays = 4, IdleReleaseDelay = delay, TimeProvider = time });
        using var park = new ManualResetEventSlim();
        using var quietFilled = new ManualResetEventSlim();
        long busyRounds = 0;
        long overwritten = 0;
        int stop = 0;

        // The quiet class: eight 8 KB arrays on a thread that then parks (four in its stack, the rest in the depot).
        var quiet = new Thread(() =>
        {
            var held = new List<byte[]>();
            for (int i = 0; i < 8; i++)
            {
                held.Add(pool.Rent(8192));
            }

            held.ForEach(array => pool.Return(array));
            quietFilled.Set();
            park.Wait();
        });

        // The busy class: rented and returned in bursts of three, at full speed, on another thread.
        var busy = new Thread(() =>
        {
            var random = new Random(3);
            while (Volatile.Read(ref stop) == 0)
            {
                byte[] first = pool.Rent(1024);
                byte[] second = pool.Rent(1024);
                byte[] third = pool.Rent(1024);
                long stamp = random.NextInt64();
                Stamp(first, stamp);
                Stamp(second, stamp + 1);
                Stamp(third, stamp + 2);
                if (!HasStamp(first, stamp) || !HasStamp(second, stamp + 1) || !HasStamp(third, stamp + 2))
                {
                    Interlocked.Increment(ref overwritten);
                }

                pool.Return(third);
                pool.Return(second);
                pool.Return(first);
                Interlocked.Increment(ref busyRounds);
            }
        });
        quiet.IsBackground = true;
        busy.IsBackground = true;
        quiet.Start();
        quietFilled.Wait();
        busy.Start();

        // A tick only once the busy thread has moved since the last one: its class is never quiet for a delay.
        for (int tick = 0; tick < 24; tick++)
        {
            long seen = Volatile.Read(ref busyRounds);
            Assert.True(SpinWait.SpinUntil(() => Volatile.Read(ref busyRounds) > seen + 1, TimeSpan.FromSeconds(30)), "the busy thread stopped");
            time.Advance(delay / 4);
        }

        Volatile.Write(ref stop, 1);
        busy.Join();
        TieredArrayPoolStatistics statistics = pool.GetStatistics();
        park.Set();
        quiet.Join();

        Assert.Equal(0, Interlocked.Read(ref overwritten));
        Assert.Equal(3 * 1024, statistics.BytesRetained);
        Assert.Equal(8 + 3, statistics.Arrays.CacheMisses);
        Assert.Equal(8 * 8192, statistics.Arrays.BytesEvicted);
    }

    [Fact]
    public void APoolDroppedWithArraysInAParkedThreadsCacheTheDepotAndAnExitedThreadsCacheLeavesNothingReachable()
    {
        using var park = new ManualResetEventSlim();
        using var work = new BlockingCollection<Action>();
        Thread parked = StartParkedThread(work, park);
        List<WeakReference> left = UseAPoolOnThreeThreadsAndDropIt(work);

        // Collected within a second, not at the first collections: what lists every live pool while it runs (the
        // memory-pressure watcher's pass, the meter's snapshots, on other tests' threads) holds this one too until it
        // is done, and one fresh-clone run found all 9 alive after four collections in 182 ms. A pool kept by anything
        // of its own (a thread's cache, the depot, the registry) stays alive for good and still fails.
        int alive = left.Count;
        for (int round = 0; round < 20 && alive > 0; round++)
        {
            if (round > 0)
            {
                Thread.Sleep(50);
            }

            for (int i = 0; i < 3; i++)
            {
                GC.Collect();
                GC.WaitForPendingFinalizers();
            }

            GC.Collect();
            alive = left.FindAll(weak => weak.IsAlive).Count;
        }

        park.Set();
        parked.Join();
        Assert.True(alive == 0, $"{alive} of {left.Count} (the pool, then its arrays) still reachable after the pool was dropped");
    }

    /// <summary>A thread that runs one piece of work, then parks: its own frames never hold what the work used.</summary>
    private static Thread StartParkedThread(BlockingCollection<Action> work, ManualResetEventSlim park)
    {
        var thread = new Thread(() =>
        {
            RunOne(work);
            park.Wait();
        })
        {
            IsBackground = true,
        };
        thread.Start();
        return thread;
    }

    [MethodImpl(MethodImplOptions.NoInlining)]
    private static void RunOne(BlockingCollection<Action> work) => work.Take()();

    [MethodImpl(MethodImplOptions.NoInlining)]
    private static List<WeakReference> UseAPoolOnThreeThreadsAndDropIt(BlockingCollection<Action> parkedThreadWork)
    {
        var pool = new TieredArrayPool(new TieredArrayPoolOptions { ThreadCacheMaxArrays = 2, TimeProvider = new FakeTimeProvider() });
        var left = new List<WeakReference> { new(pool) };

        // This thread rents; the parked thread returns (its stack keeps two, the rest spill to the depot) and stays.
        var rented = new List<byte[]>();
        for (int i = 0; i < 6; i++)
        {
            rented.Add(pool.Rent(3000));
        }

        left.AddRange(rented.ConvertAll(array => new WeakReference(array)));
        using (var returned = new ManualResetEventSlim())
        {
            parkedThreadWork.Add(() =>
            {
                rented.ForEach(array => pool.Return(array));
                returned.Set();
            });
            returned.Wait();
        }

        // A thread that caches arrays and exits: its cache is retired into the depot by the next look at the registry.
        var exited = new Thread(() =>
        {
            byte[] first = pool.Rent(70_000);
            byte[] second = pool.Rent(70_000);
            lock (left)
            {
                left.Add(new WeakReference(first));
                left.Add(new WeakReference(second));
            }

            pool.Return(first);
            pool.Return(second);
        });
        exited.Start();
        exited.Join();
        Assert.Equal((6 * 4096) + (2 * 81_920), pool.GetStatistics().BytesRetained);
        return left;
    }
}
