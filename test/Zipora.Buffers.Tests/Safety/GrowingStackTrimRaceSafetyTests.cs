using System;
using System.Buffers;
using System.Collections.Generic;
using System.Diagnostics;
using System.Linq;
using System.Threading;

namespace Zipora.Buffers.Tests;

/// <summary>
/// A thread's stack of a class grows on its rents, moving its blocks into longer slots, while trims take every
/// stack's blocks away and give grown slots back for short ones: no block may be lost or cached twice on the way.
/// </summary>
public sealed class GrowingStackTrimRaceSafetyTests
{
    public static TheoryData<bool> Adaptive => new() { false, true };

    [Theory]
    [MemberData(nameof(Adaptive))]
    public void TrimsRacingStacksThatGrowNeitherHandABlockToTwoOwnersNorLoseOne(bool adaptive)
    {
        // Bursts up to 4,000 blocks of a class whose stacks may hold 100,000: the slots start at 128 and grow several
        // times per burst, and every trim sends them back to 128.
        using var pool = new TieredMemoryPool(new TieredMemoryPoolOptions
        {
            ThreadCacheMaxBuffers = 100_000,
            ThreadCacheMaxBytes = int.MaxValue,
            AdaptiveCaches = adaptive,
            IdleReleaseDelay = Timeout.InfiniteTimeSpan,
        });
        const int Threads = 2;
        int[] sizes = [1024, 2048];
        using var stop = new CancellationTokenSource();
        string? failure = null;
        long[] bursts = new long[Threads];
        Thread[] workers = [.. Enumerable.Range(0, Threads).Select(t => new Thread(() =>
        {
            var random = new Random(t);
            var held = new List<(IMemoryOwner<byte> Owner, long Stamp)>();
            long stamp = (long)t << 40;
            try
            {
                while (!stop.IsCancellationRequested && failure is null)
                {
                    int burst = random.Next(1, 4_000);
                    for (int i = 0; i < burst; i++)
                    {
                        IMemoryOwner<byte> owner = pool.Rent(sizes[random.Next(sizes.Length)]);
                        SafetyCases.Stamp(owner, ++stamp, "a buffer just rented");
                        held.Add((owner, stamp));
                    }

                    SafetyCases.AssertDisjoint(held.Select(static pair => pair.Owner), $"thread {t}'s burst of {burst}");
                    foreach ((IMemoryOwner<byte> owner, long mine) in held)
                    {
                        if (!SafetyCases.HasStamp(owner, mine, "a held buffer"))
                        {
                            failure ??= $"a buffer held by thread {t} was written by someone else (two owners of one block)";
                        }

                        owner.Dispose();
                    }

                    held.Clear();
                    bursts[t]++;
                }
            }
            catch (Exception error)
            {
                failure ??= error.ToString();
            }
        }))];
        Array.ForEach(workers, static thread => thread.Start());
        int trims = 0;
        var watch = Stopwatch.StartNew();
        while (watch.Elapsed < TimeSpan.FromSeconds(3) && failure is null)
        {
            pool.Trim();
            trims++;
            DepotReservation.AssertNeverNegative(pool, $"during trim {trims}");
        }

        stop.Cancel();
        Array.ForEach(workers, static thread => thread.Join());
        Assert.True(failure is null, $"after {trims} trims and [{string.Join(", ", bursts)}] bursts: {failure}");

        // Every block came back once: nothing counted in use, and the last trim frees every slab and its room.
        TierStatistics medium = pool.GetStatistics().Medium;
        Assert.Equal(0, medium.BuffersInUse);
        DepotReservation.AssertATrimFreesEverySlabAndItsRoom(pool, $"after {trims} trims raced [{string.Join(", ", bursts)}] bursts");
    }
}
