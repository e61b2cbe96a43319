using System;
using System.Buffers;
using System.Collections.Concurrent;
using System.Collections.Generic;
using System.Linq;
using System.Threading;
using Microsoft.Extensions.Time.Testing;

namespace Zipora.Buffers.Tests;

/// <summary>
/// The small and medium tiers count no hit on their fast paths: hits are derived from each thread cache's returns,
/// moves to and from the depot, blocks trims took and blocks left. Here many short-lived threads rent, fill, check and
/// return buffers of one tier (a share of them disposed by later threads), their caches are retired as they exit, while another
/// thread trims, reads the statistics (which retires exited caches) and ticks the idle clock (adaptive per-class trims):
/// no block is ever held by two live owners, no pattern is lost, and once quiet the figures are exact: the rents,
/// bytes requested and bytes rented are those the test made, every rent is a hit or a miss, every one came back.
/// </summary>
public sealed class SlabThreadChurnSafetyTests
{
    private const int Batches = 24;
    private const int ThreadsPerBatch = 6;
    private const int OperationsPerThread = 150;

    private static readonly int[] s_smallSizes = [1, 16, 17, 64, 100, 128, 129, 300, 512, 700, 1000, 1023];
    private static readonly int[] s_mediumSizes = [1024, 1025, 1500, 2048, 3000, 4096, 5000, 8192, 12000, 16384];

    public static TheoryData<string, bool, bool> TierOwnerReuseAndAdaptiveCaches => new()
    {
        { "small", false, true },
        { "small", true, true },
        { "small", false, false },
        { "small", true, false },
        { "medium", false, true },
        { "medium", true, true },
        { "medium", false, false },
        { "medium", true, false },
    };

    [Theory]
    [MemberData(nameof(TierOwnerReuseAndAdaptiveCaches))]
    public void ShortLivedThreadsRentingAndReturningAcrossThreadsWhileTrimmedKeepBlocksApartAndTheDerivedCountsExact(string tier, bool reuseOwners, bool adaptive)
    {
        int[] sizes = tier == "small" ? s_smallSizes : s_mediumSizes;
        TierStatistics TierOf(TieredMemoryPoolStatistics statistics) => tier == "small" ? statistics.Small : statistics.Medium;

        var time = new FakeTimeProvider();
        TieredMemoryPoolOptions options = SafetyCases.Options(reuseOwners ? OwnerMode.ReuseOwners : OwnerMode.Default, time);
        options.AdaptiveCaches = adaptive;
        using var pool = new TieredMemoryPool(options);

        var failures = new ConcurrentQueue<string>();
        var live = new ConcurrentDictionary<nint, long>();
        var handedOver = new ConcurrentQueue<(IMemoryOwner<byte> Owner, long Stamp)>();
        long rents = 0, requested = 0, rented = 0, nextStamp = 0, crossThread = 0, trims = 0;
        bool stop = false;

        void Check(IMemoryOwner<byte> owner, long stamp, string when)
        {
            int wrong = PageDropStormSafetyTests.PatternStorm.FirstWrongByte(owner.Memory.Span, stamp);
            if (wrong >= 0)
            {
                failures.Enqueue($"{when}: the block at {SafetyCases.RangeOf(owner)} lost its pattern at byte {wrong}");
            }
        }

        void Release(IMemoryOwner<byte> owner, long stamp, string when)
        {
            Check(owner, stamp, when);
            if (!live.TryRemove(OwnerAddress.Of(owner), out long holder) || holder != stamp)
            {
                failures.Enqueue($"{when}: the block at {SafetyCases.RangeOf(owner)} was not held by this owner when it was disposed");
            }

            owner.Dispose();
        }

        void Work(int seed)
        {
            var random = new Random(seed);
            var held = new List<(IMemoryOwner<byte> Owner, long Stamp)>();
            for (int op = 0; op < OperationsPerThread && failures.IsEmpty; op++)
            {
                if (held.Count < 12 && (held.Count == 0 || random.Next(2) == 0))
                {
                    int size = sizes[random.Next(sizes.Length)];
                    IMemoryOwner<byte> owner = pool.Rent(size);
                    long stamp = Interlocked.Increment(ref nextStamp) | (1L << 41);
                    if (!live.TryAdd(OwnerAddress.Of(owner), stamp))
                    {
                        failures.Enqueue($"the block at {SafetyCases.RangeOf(owner)} was handed to a second live owner");
                        return;
                    }

                    PageDropStormSafetyTests.PatternStorm.Fill(owner.Memory.Span, stamp);
                    Interlocked.Increment(ref rents);
                    Interlocked.Add(ref requested, size);
                    Interlocked.Add(ref rented, owner.Memory.Length);
                    held.Add((owner, stamp));
                    continue;
                }

                (IMemoryOwner<byte> Owner, long Stamp) entry = held[^1];
                held.RemoveAt(held.Count - 1);
                if (random.Next(3) == 0)
                {
                    Check(entry.Owner, entry.Stamp, "before the hand-over");
                    handedOver.Enqueue(entry);
                }
                else
                {
                    Release(entry.Owner, entry.Stamp, "on the renting thread");
                }

                if (handedOver.TryDequeue(out (IMemoryOwner<byte> Owner, long Stamp) other))
                {
                    Release(other.Owner, other.Stamp, "on another thread");
                    Interlocked.Increment(ref crossThread);
                }
            }

            // Half of what is left outlives the thread, to be disposed by threads to come.
            foreach ((IMemoryOwner<byte> owner, long stamp) in held)
            {
                if (random.Next(2) == 0)
                {
                    handedOver.Enqueue((owner, stamp));
                }
                else
                {
                    Release(owner, stamp, "as the thread ends");
                }
            }
        }

        var trimmer = new Thread(() =>
        {
            try
            {
                for (int round = 0; !Volatile.Read(ref stop); round++)
                {
                    pool.Trim();
                    Interlocked.Increment(ref trims);
                    TierStatistics counted = TierOf(pool.GetStatistics());
                    if (counted.CacheHits < 0 || counted.CacheMisses < 0)
                    {
                        failures.Enqueue($"mid-storm: hits {counted.CacheHits}, misses {counted.CacheMisses}");
                    }

                    if (round % 3 == 0)
                    {
                        time.Advance(SafetyCases.IdleDelay / 4);
                    }

                    Thread.Yield();
                }
            }
            catch (Exception error)
            {
                failures.Enqueue($"the trimmer threw {error}");
            }
        });
        trimmer.Start();

        for (int batch = 0; batch < Batches && failures.IsEmpty; batch++)
        {
            var threads = new List<Thread>();
            for (int i = 0; i < ThreadsPerBatch; i++)
            {
                int seed = (batch * ThreadsPerBatch) + i + 1;
                threads.Add(new Thread(() =>
                {
                    try
                    {
                        Work(seed);
                    }
                    catch (Exception error)
                    {
                        failures.Enqueue($"worker {seed} threw {error}");
                    }
                }));
            }

            threads.ForEach(static thread => thread.Start());
            threads.ForEach(static thread => thread.Join());
        }

        Volatile.Write(ref stop, true);
        trimmer.Join();
        while (handedOver.TryDequeue(out (IMemoryOwner<byte> Owner, long Stamp) left))
        {
            Release(left.Owner, left.Stamp, "at the end");
        }

        Assert.True(failures.IsEmpty, string.Join(Environment.NewLine, failures));
        Assert.True(crossThread > 100, $"only {crossThread} owners were disposed on another thread");
        Assert.True(trims > 5, $"only {trims} trims ran");

        // Quiet: the derived figures are exact, before a trim and after one.
        for (int pass = 0; pass < 2; pass++)
        {
            TierStatistics counted = TierOf(pool.GetStatistics());
            Assert.Equal(rents, counted.Rents);
            Assert.Equal(counted.Rents, counted.CacheHits + counted.CacheMisses);
            Assert.Equal(rents, counted.Returns);
            Assert.Equal(requested, counted.BytesRequested);
            Assert.Equal(rented, counted.BytesRented);
            Assert.Equal(0, counted.BytesInUse);
            List<SizeClassStatistics> classes = [.. pool.GetStatistics().SizeHistogram.Where(row => row.Tier == tier)];
            Assert.Equal(rents, classes.Sum(static row => row.Rents));
            Assert.All(classes, static row => Assert.Equal(0, row.BuffersInUse));
            pool.Trim();
        }
    }
}
