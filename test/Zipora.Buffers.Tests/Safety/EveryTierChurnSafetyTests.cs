using System;
using System.Buffers;
using System.Collections.Concurrent;
using System.Collections.Generic;
using System.Threading;
using Microsoft.Extensions.Time.Testing;

namespace Zipora.Buffers.Tests;

/// <summary>
/// Attacks on the region slots that park a buffer and its class, the slab stacks' newest block beside the count, and
/// idle release a tick sooner: short-lived threads rent and return every tier (two classes per region tier, so a
/// parked region of another class is in the way), hand owners to each other, while a chaos thread trims, ticks the
/// idle releaser a quarter delay at a time and reads the statistics. Every live owner is stamped at both ends and the
/// middle, checked before dispose, and no two live owners may share a byte; once quiet, the counts must add up and a
/// trim must account for every byte.
/// </summary>
[Collection(nameof(HugepageTests))]
public sealed class EveryTierChurnSafetyTests
{
    private static readonly int[] s_regionSizes = [20_000, 40_000, 100_000, 200_000, 1_000_000, 2_500_000, 5_000_000];

    public static TheoryData<int, bool, bool> Configurations()
    {
        var data = new TheoryData<int, bool, bool>();
        foreach (int maxBuffers in new[] { 1, 2, 3 })
        {
            foreach (bool adaptive in new[] { false, true })
            {
                foreach (bool reuse in new[] { false, true })
                {
                    data.Add(maxBuffers, adaptive, reuse);
                }
            }
        }

        return data;
    }

    private static TieredMemoryPoolOptions Options(FakeTimeProvider time, int maxBuffers, bool adaptive, bool reuse) => new()
    {
        TimeProvider = time,
        IdleReleaseDelay = SafetyCases.IdleDelay,
        ThreadCacheMaxBuffers = maxBuffers,
        AdaptiveCaches = adaptive,
        ReuseOwners = reuse,
        RegionCacheMaxCount = 2,
        HugeRegionCacheMaxCount = 1,
    };

    internal static int RandomSize(Random random) => random.Next(100) switch
    {
        < 30 => random.Next(1, 1025),
        < 55 => random.Next(1025, (16 * 1024) + 1),
        < 97 => s_regionSizes[random.Next(s_regionSizes.Length)] - random.Next(0, 64),
        _ => random.Next((2 * 1024 * 1024) + 1, 6_000_000),
    };

    [Theory]
    [MemberData(nameof(Configurations))]
    public void DyingThreadsRentingEveryTierWhileTrimsTicksAndStatisticsRaceNeverShareOrLoseAByte(int maxBuffers, bool adaptive, bool reuse)
    {
        var time = new FakeTimeProvider();
        using var pool = new TieredMemoryPool(Options(time, maxBuffers, adaptive, reuse));
        var storm = new EveryTierChurnStorm(pool, time);
        storm.Run(TimeSpan.FromMilliseconds(700), workers: 2);
        Assert.True(storm.Failures.IsEmpty, string.Join(Environment.NewLine, storm.Failures));
        Assert.True(storm.Rents > 2_000, $"only {storm.Rents} rents");
        Assert.True(storm.Chaos > 20, $"only {storm.Chaos} chaos rounds");

        AssertQuietAndAccounted(pool, time);
    }

    [Fact]
    public void DisposingThePoolWhileDyingThreadsRentAndReturnNeverCrashesAndDrains()
    {
        for (int round = 0; round < 25; round++)
        {
            var time = new FakeTimeProvider();
            var pool = new TieredMemoryPool(Options(time, 1 + (round % 3), round % 2 == 0, round % 4 < 2));
            var stop = new ManualResetEventSlim();
            var failures = new ConcurrentQueue<string>();
            var threads = new List<Thread>();
            for (int w = 0; w < 3; w++)
            {
                int seed = (round * 10) + w;
                var thread = new Thread(() =>
                {
                    var random = new Random(seed);
                    var held = new List<(IMemoryOwner<byte> Owner, long Stamp)>();
                    try
                    {
                        while (!stop.IsSet)
                        {
                            if (held.Count < 4 && random.Next(2) == 0)
                            {
                                IMemoryOwner<byte> owner;
                                try
                                {
                                    owner = pool.Rent(RandomSize(random));
                                }
                                catch (ObjectDisposedException)
                                {
                                    break;
                                }

                                long stamp = random.NextInt64(1, long.MaxValue);
                                SafetyCases.Stamp(owner, stamp, "dispose race");
                                held.Add((owner, stamp));
                            }
                            else if (held.Count > 0)
                            {
                                int index = random.Next(held.Count);
                                if (!SafetyCases.HasStamp(held[index].Owner, held[index].Stamp, "dispose race"))
                                {
                                    failures.Enqueue("a live owner lost its stamp");
                                }

                                held[index].Owner.Dispose();
                                held.RemoveAt(index);
                            }
                        }

                        // After the pool's dispose: the memory of owners still held stays theirs until they dispose.
                        foreach ((IMemoryOwner<byte> owner, long stamp) in held)
                        {
                            if (!SafetyCases.HasStamp(owner, stamp, "after dispose"))
                            {
                                failures.Enqueue("an owner held across the pool's dispose lost its stamp");
                            }

                            owner.Memory.Span.Fill(0x77);
                            owner.Dispose();
                        }
                    }
                    catch (Exception error)
                    {
                        failures.Enqueue(error.ToString());
                    }
                })
                { IsBackground = true };
                threads.Add(thread);
                thread.Start();
            }

            Thread.Sleep(20 + (round % 5 * 7));
            pool.Trim();
            SafetyCases.Advance(time, SafetyCases.IdleDelay / 4);
            pool.Dispose();
            stop.Set();
            threads.ForEach(t => t.Join());
            Assert.True(failures.IsEmpty, string.Join(Environment.NewLine, failures));
            SafetyCases.AssertDrainedThreeDelaysLater(pool, time);
        }
    }

    /// <summary>
    /// One thread, random sequences over two small, two medium and two region classes, with trims, idle ticks and a
    /// helper thread that disposes some owners and dies (its stack retired): live owners never share a byte and keep
    /// their stamps; the counts add up after every step; quiet at the end, a trim gives everything back.
    /// </summary>
    [Fact]
    public void RandomSequencesWithTrimsTicksAndRetiredThreadsKeepEveryBlockAccountedFor()
    {
        int[] sizes = [64, 1000, 4096, 9000, 100_000, 200_000, 3_000_000];
        for (int seed = 0; seed < 60; seed++)
        {
            var random = new Random(seed);
            var time = new FakeTimeProvider();
            using var pool = new TieredMemoryPool(Options(time, 1 + random.Next(3), random.Next(2) == 0, random.Next(2) == 0));
            var live = new List<(IMemoryOwner<byte> Owner, byte Stamp)>();
            for (int step = 0; step < 300; step++)
            {
                int action = random.Next(100);
                if (action < 45 || live.Count == 0)
                {
                    IMemoryOwner<byte> owner = pool.Rent(sizes[random.Next(sizes.Length)]);
                    byte stamp = (byte)random.Next(1, 256);
                    Span<byte> span = owner.Memory.Span;
                    span[..Math.Min(span.Length, 4096)].Fill(stamp);
                    span[^Math.Min(span.Length, 4096)..].Fill(stamp);
                    live.Add((owner, stamp));
                }
                else if (action < 80)
                {
                    int index = random.Next(live.Count);
                    live[index].Owner.Dispose();
                    live.RemoveAt(index);
                }
                else if (action < 86)
                {
                    pool.Trim();
                }
                else if (action < 93)
                {
                    SafetyCases.Advance(time, SafetyCases.IdleDelay / 4);
                }
                else
                {
                    // A helper disposes some of ours (they land in its stacks and slot), rents and returns, and dies.
                    var given = new List<IMemoryOwner<byte>>();
                    for (int i = live.Count - 1; i >= 0 && given.Count < 3; i--)
                    {
                        if (random.Next(2) == 0)
                        {
                            given.Add(live[i].Owner);
                            live.RemoveAt(i);
                        }
                    }

                    int helperSize = sizes[random.Next(sizes.Length)];
                    var helper = new Thread(() =>
                    {
                        foreach (IMemoryOwner<byte> owner in given)
                        {
                            owner.Dispose();
                        }

                        pool.Rent(helperSize).Dispose();
                    });
                    helper.Start();
                    helper.Join();
                }

                var seen = new List<OwnerRange>();
                foreach ((IMemoryOwner<byte> owner, byte stamp) in live)
                {
                    Span<byte> span = owner.Memory.Span;
                    Assert.True(span[..Math.Min(span.Length, 4096)].IndexOfAnyExcept(stamp) < 0, $"seed {seed} step {step}: a live owner lost its stamp");
                    Assert.True(span[^Math.Min(span.Length, 4096)..].IndexOfAnyExcept(stamp) < 0, $"seed {seed} step {step}: a live owner lost its stamp");
                    seen.Add(SafetyCases.RangeOf(owner));
                }

                SafetyCases.AssertDisjoint(seen, $"seed {seed} step {step}");
                TieredMemoryPoolStatistics statistics = pool.GetStatistics();
                foreach (TierStatistics tier in new[] { statistics.Small, statistics.Medium, statistics.Large, statistics.Huge })
                {
                    Assert.True(tier.Rents == tier.CacheHits + tier.CacheMisses, $"seed {seed} step {step}: {tier.Name} rents {tier.Rents} != hits {tier.CacheHits} + misses {tier.CacheMisses}");
                    Assert.True(tier.Rents - tier.Returns >= 0, $"seed {seed} step {step}: {tier.Name} returns above rents");
                }

                long liveCount = live.Count;
                long inUse = statistics.Small.Rents - statistics.Small.Returns + statistics.Medium.Rents - statistics.Medium.Returns
                    + statistics.Large.Rents - statistics.Large.Returns + statistics.Huge.Rents - statistics.Huge.Returns;
                Assert.True(inUse == liveCount, $"seed {seed} step {step}: {inUse} in use by the counts, {liveCount} live");
            }

            foreach ((IMemoryOwner<byte> owner, _) in live)
            {
                owner.Dispose();
            }

            AssertQuietAndAccounted(pool, time);
        }
    }

    /// <summary>
    /// The clock jumps irregularly (late ticks that catch up, ticks that do not count), classes go quiet one by one,
    /// trims come now and then: memory returned less than a delay ago (by the fake clock) is always still mapped.
    /// </summary>
    [Fact]
    public void WithIrregularTicksMemoryReturnedLessThanADelayAgoStaysMapped()
    {
        Skip.Unless(ProcessMappings.CanRead, "reads /proc/self/maps, which only Linux has");
        int[] sizes = [64, 700, 4096, 12_000, 100_000, 1_000_000, 3_000_000];
        TimeSpan period = SafetyCases.IdleDelay / 4;
        long checks = 0;
        for (int seed = 0; seed < 400; seed++)
        {
            var random = new Random(seed);
            var time = new FakeTimeProvider();
            using var pool = new TieredMemoryPool(Options(time, 1 + random.Next(3), random.Next(2) == 0, random.Next(2) == 0));
            var live = new List<IMemoryOwner<byte>>();
            var stale = new List<(OwnerRange Range, DateTimeOffset ReturnedAt)>();
            for (int step = 0; step < 120; step++)
            {
                int action = random.Next(100);
                if (action < 30 && live.Count < 12)
                {
                    IMemoryOwner<byte> owner = pool.Rent(sizes[random.Next(sizes.Length)]);
                    owner.Memory.Span[0] = 1;
                    owner.Memory.Span[^1] = 1;
                    live.Add(owner);
                }
                else if (action < 60 && live.Count > 0)
                {
                    int index = random.Next(live.Count);
                    stale.Add((SafetyCases.RangeOf(live[index]), time.GetUtcNow()));
                    live[index].Dispose();
                    live.RemoveAt(index);
                }
                else if (action < 66)
                {
                    pool.Trim();
                }
                else
                {
                    time.Advance(period * (0.05 + (random.NextDouble() * 1.75)));
                }

                DateTimeOffset now = time.GetUtcNow();
                stale.RemoveAll(entry => now - entry.ReturnedAt >= SafetyCases.IdleDelay);
                foreach ((OwnerRange range, DateTimeOffset returnedAt) in stale)
                {
                    checks++;
                    Assert.True(
                        ProcessMappings.IsMappedNow(range.Start, range.Length),
                        $"seed {seed} step {step}: {range}, returned {(now - returnedAt).TotalSeconds:F2} s ago (delay {SafetyCases.IdleDelay.TotalSeconds} s), is no longer mapped");
                }
            }

            live.ForEach(owner => owner.Dispose());
        }

        Assert.True(checks > 1_000, $"only {checks} checks");
    }

    /// <summary>Quiet: every tier's counts add up, nothing is in use, and a trim then three delays give everything back.</summary>
    private static void AssertQuietAndAccounted(TieredMemoryPool pool, FakeTimeProvider time)
    {
        TieredMemoryPoolStatistics quiet = pool.GetStatistics();
        foreach (TierStatistics tier in new[] { quiet.Small, quiet.Medium, quiet.Large, quiet.Huge })
        {
            Assert.True(tier.Rents == tier.Returns, $"{tier.Name}: rents {tier.Rents} != returns {tier.Returns}\n{quiet}");
            Assert.True(tier.Rents == tier.CacheHits + tier.CacheMisses, $"{tier.Name}: rents {tier.Rents} != hits {tier.CacheHits} + misses {tier.CacheMisses}\n{quiet}");
            Assert.True(tier.BytesInUse == 0, $"{tier.Name}: {tier.BytesInUse} bytes in use\n{quiet}");
        }

        foreach (SizeClassStatistics row in quiet.SizeHistogram)
        {
            Assert.True(row.BuffersInUse == 0, $"{row.Tier} {row.ClassSize}: {row.BuffersInUse} in use");
        }

        pool.Trim();
        TieredMemoryPoolStatistics trimmed = pool.GetStatistics();
        Assert.True(trimmed.BytesRetained == 0, $"after a quiet trim {trimmed.BytesRetained} bytes retained\n{trimmed}");
        Assert.True(trimmed.BytesInUse == 0, $"after a quiet trim {trimmed.BytesInUse} bytes in use\n{trimmed}");
        SafetyCases.Advance(time, SafetyCases.IdleDelay * 3);
        TieredMemoryPoolStatistics later = pool.GetStatistics();
        Assert.True(later.BytesAwaitingRelease == 0, $"{later.BytesAwaitingRelease} bytes still awaiting release\n{later}");
        Assert.True(later.MmapCalls - later.FallbackAllocations == later.MunmapCalls, $"{later.MmapCalls} mmaps ({later.FallbackAllocations} fallbacks), {later.MunmapCalls} munmaps\n{later}");
        pool.Dispose();
        SafetyCases.AssertDrainedThreeDelaysLater(pool, time);
    }
}
