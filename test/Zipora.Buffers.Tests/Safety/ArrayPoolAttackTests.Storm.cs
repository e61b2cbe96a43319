using System;
using System.Collections.Concurrent;
using System.Collections.Generic;
using System.Diagnostics;
using System.Runtime.InteropServices;
using System.Threading;
using Microsoft.Extensions.Time.Testing;

namespace Zipora.Buffers.Tests;

/// <summary>
/// Storms: renters stamp each array whole with a pattern of their own, hold it, and check it before giving it back
/// (on their thread or another's), while trims, pressure trims, idle-release ticks and short-lived threads race
/// them. A stamp found broken means two renters held one array at once.
/// </summary>
public sealed partial class ArrayPoolAttackTests
{
    private static readonly int[] s_stormLengths = [1, 16, 17, 100, 1024, 4096, 4097, 6000, 8192, 16_383, 16_384, 40_000, 100_000];

    [Theory]
    [InlineData(128, 1L << 30)]
    [InlineData(2, 1L << 30)]
    [InlineData(1, 64 * 1024)]
    [InlineData(0, 1L << 30)]
    public void TrimsIdleTicksAndThreadChurnRacingRentsAndReturnsNeverHandOneArrayToTwoRenters(int threadCacheMaxArrays, long sharedCacheMaxBytes)
    {
        var time = new FakeTimeProvider();
        var pool = new TieredArrayPool(new TieredArrayPoolOptions
        {
            ThreadCacheMaxArrays = threadCacheMaxArrays,
            SharedCacheMaxBytes = sharedCacheMaxBytes,
            IdleReleaseDelay = TimeSpan.FromSeconds(1),
            TimeProvider = time,
        });
        var failures = new ConcurrentQueue<string>();
        var handOff = new ConcurrentQueue<(byte[] Array, long Stamp)>();
        var watch = Stopwatch.StartNew();
        const int Milliseconds = 1500;
        long nextStamp = 0;
        int churned = 0;

        void RentHoldCheck(Random random, int rounds, bool handSomeOff)
        {
            var held = new List<(byte[] Array, long Stamp)>();
            for (int round = 0; round < rounds && failures.IsEmpty; round++)
            {
                int burst = random.Next(1, 24);
                for (int i = 0; i < burst; i++)
                {
                    byte[] array = pool.Rent(s_stormLengths[random.Next(s_stormLengths.Length)]);
                    long stamp = Interlocked.Increment(ref nextStamp);
                    Stamp(array, stamp);
                    held.Add((array, stamp));
                }

                foreach ((byte[] array, long stamp) in held)
                {
                    if (!HasStamp(array, stamp))
                    {
                        failures.Enqueue($"an array of {array.Length} bytes stamped {stamp} was overwritten while held");
                    }

                    if (handSomeOff && random.Next(3) == 0)
                    {
                        handOff.Enqueue((array, stamp));
                    }
                    else
                    {
                        pool.Return(array, clearArray: random.Next(8) == 0);
                    }
                }

                held.Clear();
                while (random.Next(2) == 0 && handOff.TryDequeue(out (byte[] Array, long Stamp) other))
                {
                    if (!HasStamp(other.Array, other.Stamp))
                    {
                        failures.Enqueue($"an array of {other.Array.Length} bytes stamped {other.Stamp} was overwritten while handed off");
                    }

                    pool.Return(other.Array);
                }
            }
        }

        var threads = new List<Thread>();
        for (int w = 0; w < 2; w++)
        {
            int seed = w;
            threads.Add(new Thread(() => Guarded(failures, () =>
            {
                var random = new Random(seed);
                while (watch.ElapsedMilliseconds < Milliseconds && failures.IsEmpty)
                {
                    RentHoldCheck(random, 50, handSomeOff: true);
                }
            })));
        }

        // Short-lived threads: rent, return, exit, their caches retired while trims run.
        threads.Add(new Thread(() => Guarded(failures, () =>
        {
            var random = new Random(7);
            while (watch.ElapsedMilliseconds < Milliseconds && failures.IsEmpty)
            {
                int seed = random.Next();
                var shortLived = new Thread(() => Guarded(failures, () => RentHoldCheck(new Random(seed), 3, handSomeOff: true)));
                shortLived.Start();
                shortLived.Join();
                churned++;
            }
        })));

        // Trims, pressure trims, statistics, and the idle clock advancing a quarter delay at a time.
        threads.Add(new Thread(() => Guarded(failures, () =>
        {
            int step = 0;
            while (watch.ElapsedMilliseconds < Milliseconds && failures.IsEmpty)
            {
                switch (step++ % 4)
                {
                    case 0:
                        pool.Trim();
                        break;
                    case 1:
                        ((IReclaimablePool)pool).TrimUnderPressure();
                        break;
                    case 2:
                        AssertNoNegativeFigure(pool.GetStatistics());
                        break;
                    default:
                        time.Advance(TimeSpan.FromMilliseconds(250));
                        break;
                }

                Thread.Sleep(step % 3);
            }
        })));

        foreach (Thread thread in threads)
        {
            thread.Start();
        }

        foreach (Thread thread in threads)
        {
            thread.Join();
        }

        while (handOff.TryDequeue(out (byte[] Array, long Stamp) left))
        {
            Assert.True(HasStamp(left.Array, left.Stamp), "an array handed off was overwritten");
            pool.Return(left.Array);
        }

        Assert.True(failures.IsEmpty, string.Join(Environment.NewLine, failures));
        Assert.True(churned > 0, "no short-lived thread ran");

        // Quiet: exact, and a trim leaves nothing retained.
        TieredArrayPoolStatistics statistics = pool.GetStatistics();
        AssertNoNegativeFigure(statistics);
        Assert.Equal(statistics.Arrays.Rents, statistics.Arrays.Returns);
        Assert.Equal(statistics.Arrays.Rents, statistics.Arrays.CacheHits + statistics.Arrays.CacheMisses);
        Assert.Equal(0, statistics.BytesInUse);
        Assert.Equal(statistics.Arrays.BytesAllocated, statistics.BytesRetained + statistics.Arrays.BytesEvicted);
    }

    [Fact]
    public void ReturnsOnThreadsThatNeverRentedFeedTheRentersAndNeverDuplicateAnArray()
    {
        var pool = new TieredArrayPool(new TieredArrayPoolOptions { ThreadCacheMaxArrays = 8, IdleReleaseDelay = Timeout.InfiniteTimeSpan });
        var failures = new ConcurrentQueue<string>();
        using var toReturn = new BlockingCollection<(byte[] Array, long Stamp)>(boundedCapacity: 64);
        long nextStamp = 0;
        var renter = new Thread(() => Guarded(failures, () =>
        {
            for (int i = 0; i < 30_000 && failures.IsEmpty; i++)
            {
                byte[] array = pool.Rent(i % 3 == 0 ? 700 : 9000);
                long stamp = Interlocked.Increment(ref nextStamp);
                Stamp(array, stamp);
                toReturn.Add((array, stamp));
                if (i % 5000 == 0)
                {
                    pool.Trim();
                }
            }

            toReturn.CompleteAdding();
        }));
        var returners = new Thread[2];
        for (int r = 0; r < returners.Length; r++)
        {
            returners[r] = new Thread(() => Guarded(failures, () =>
            {
                foreach ((byte[] array, long stamp) in toReturn.GetConsumingEnumerable())
                {
                    if (!HasStamp(array, stamp))
                    {
                        failures.Enqueue($"an array stamped {stamp} was overwritten before its return");
                    }

                    pool.Return(array);
                }
            }));
        }

        renter.Start();
        foreach (Thread returner in returners)
        {
            returner.Start();
        }

        renter.Join();
        foreach (Thread returner in returners)
        {
            returner.Join();
        }

        Assert.True(failures.IsEmpty, string.Join(Environment.NewLine, failures));
        TieredArrayPoolStatistics statistics = pool.GetStatistics();
        Assert.Equal(30_000, statistics.Arrays.Rents);
        Assert.Equal(30_000, statistics.Arrays.Returns);
        Assert.Equal(0, statistics.BytesInUse);
        Assert.True(statistics.Arrays.CacheHits > 20_000, $"returns on other threads were not reused: {statistics}");
        Assert.Equal(statistics.Arrays.BytesAllocated, statistics.BytesRetained + statistics.Arrays.BytesEvicted);
    }

    private static void Stamp(byte[] array, long stamp)
    {
        // Two bytes of the stamp over every pair of bytes, and the first over an odd length's last byte.
        MemoryMarshal.Cast<byte, ushort>(array.AsSpan()).Fill(Pattern(stamp));
        if ((array.Length & 1) != 0)
        {
            array[^1] = (byte)stamp;
        }
    }

    private static bool HasStamp(byte[] array, long stamp) =>
        MemoryMarshal.Cast<byte, ushort>(array).IndexOfAnyExcept(Pattern(stamp)) < 0 && ((array.Length & 1) == 0 || array[^1] == (byte)stamp);

    private static ushort Pattern(long stamp) => (ushort)(((stamp >> 8) | 1) << 8 | (stamp & 0xFF));

    private static void Guarded(ConcurrentQueue<string> failures, Action work)
    {
        try
        {
            work();
        }
        catch (Exception exception)
        {
            failures.Enqueue(exception.ToString());
        }
    }
}
