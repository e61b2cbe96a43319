using System;
using System.Diagnostics;
using System.Linq;
using System.Reflection;
using System.Threading;

namespace Zipora.Buffers.Tests;

/// <summary>
/// Statistics read while a trim hands the blocks parked by segmented buffers back to the medium tier, in a quiet pool
/// (every message written and let go of, each thread's last block parked): a parked block counts as returned and
/// cached, and once handed back it is a return the tier counted, so a read must see it one way or the other, never
/// both. Seen both ways, the medium tier's rents, returns and cache hits read higher than they are and fell back at the
/// next read, and a meter's counter floor kept the figure too high for good.
/// </summary>
public sealed class ParkedBlockTrimStatisticsRaceTests
{
    // Threads kept alive, each keeping a parked block between rounds; the test thread parks one too.
    private const int ParkingThreads = 4;

    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public void StatisticsReadWhileATrimTakesTheParkedBlocksBackCountEachBlockOnce(bool reuseOwners)
    {
        using var pool = new TieredMemoryPool(new TieredMemoryPoolOptions { ReuseOwners = reuseOwners, IdleReleaseDelay = Timeout.InfiniteTimeSpan, EnableHugepages = false });
        var options = new SegmentedBufferOptions { Pool = pool };
        using var threads = new KeptThreads(ParkingThreads);
        (RentActivity Medium, RentActivity Pool) before = default;
        (RentActivity Medium, RentActivity Pool) previous = default;
        byte stamp = 0;
        (string? wrong, int readsDuringATrim) = ReadsDuringTrims.Run(
            refill: () =>
            {
                // Every thread writes a one-block message and lets it go: its block is parked again (the trim took the last).
                stamp++;
                threads.RunOnEach(_ => ParkedBlocks.WriteMessage(options, stamp));
                ParkedBlocks.WriteMessage(options, stamp);
                before = ActivityOf(pool.GetStatistics());
                previous = before;
            },
            trim: pool.Trim,
            wrongRead: () =>
            {
                TieredMemoryPoolStatistics statistics = pool.GetStatistics();
                (RentActivity Medium, RentActivity Pool) now = ActivityOf(statistics);
                string? wrong = TrimStatisticsRaceTests.QuietTierThatDoesNotAddUp(statistics)
                    ?? Fell("medium", previous.Medium, now.Medium)
                    ?? Fell("pool", previous.Pool, now.Pool)
                    ?? Moved("medium", before.Medium, now.Medium)
                    ?? Moved("pool", before.Pool, now.Pool)
                    ?? MediumHistogramInUse(statistics);
                previous = now;
                return wrong;
            });

        Assert.True(wrong is null, $"read during a trim of a quiet pool with parked blocks: {wrong}");
        Assert.True(readsDuringATrim > 0, "no read met a trim, so the test proves nothing");
        TieredMemoryPoolStatistics after = pool.GetStatistics();
        Assert.Null(TrimStatisticsRaceTests.QuietTierThatDoesNotAddUp(after));
        Assert.Equal(before, ActivityOf(after));
    }

    [Fact]
    public void AReadThatCountedTheParkedBlocksBeforeATrimTookThemBackDoesNotCountThemAgainAsReturns()
    {
        using var pool = new TieredMemoryPool(new TieredMemoryPoolOptions { IdleReleaseDelay = Timeout.InfiniteTimeSpan, EnableHugepages = false });
        var options = new SegmentedBufferOptions { Pool = pool };
        using var threads = new KeptThreads(ParkingThreads);
        threads.RunOnEach(_ => ParkedBlocks.WriteMessage(options, 1));

        // The trimming thread has a medium cache of its own first: the blocks it takes back are returned into it without
        // the lock the test holds, so the hand-back ends before the trim waits for that lock.
        using var cacheMade = new SemaphoreSlim(0);
        using var trimNow = new SemaphoreSlim(0);
        int trimming = 0;
        Thread trimmer = SegmentedBuffers.Started(() =>
        {
            pool.Rent(ParkedBlocks.Message).Dispose();
            cacheMade.Release();
            trimNow.Wait();
            Volatile.Write(ref trimming, 1);
            pool.Trim();
        });
        cacheMade.Wait();
        TieredMemoryPoolStatistics before = pool.GetStatistics();
        Assert.True(before.SizeHistogram.Single(static row => row is { Tier: "medium", ClassSize: 4096 }).Cached >= ParkingThreads, "every thread parked its block");

        // The read waits for the medium tier's caches while the trim takes the parked blocks back.
        TieredMemoryPoolStatistics? read = null;
        Thread reader;
        lock (MediumCachesLock(pool))
        {
            reader = SegmentedBuffers.Started(() => read = pool.GetStatistics());
            WaitUntilBlocked(reader);
            trimNow.Release();
            SpinWait.SpinUntil(() => Volatile.Read(ref trimming) == 1);
            WaitUntilBlocked(trimmer);
        }

        Assert.True(reader.Join(TimeSpan.FromSeconds(10)) && trimmer.Join(TimeSpan.FromSeconds(10)), "the read or the trim did not end");
        Assert.Equal(RentActivity.Of(before.Medium), RentActivity.Of(read!.Medium));
        Assert.Null(TrimStatisticsRaceTests.QuietTierThatDoesNotAddUp(read));
        Assert.Null(MediumHistogramInUse(read));
        Assert.Equal(RentActivity.Of(before.Medium), RentActivity.Of(pool.GetStatistics().Medium));
    }

    /// <summary>The lock the medium tier's statistics take to read its thread caches (and its trim to empty them).</summary>
    private static object MediumCachesLock(TieredMemoryPool pool)
    {
        const BindingFlags Private = BindingFlags.NonPublic | BindingFlags.Instance;
        object medium = typeof(TieredMemoryPool).GetField("_medium", Private)!.GetValue(pool)!;
        var registry = (ThreadCacheRegistry<ThreadCache>)medium.GetType().BaseType!.GetField("_registry", Private)!.GetValue(medium)!;
        return registry.Lock;
    }

    /// <summary>Waits until <paramref name="thread"/> blocks (on a lock here: nothing else it runs waits).</summary>
    private static void WaitUntilBlocked(Thread thread)
    {
        var watch = Stopwatch.StartNew();
        while ((thread.ThreadState & System.Threading.ThreadState.WaitSleepJoin) == 0)
        {
            Assert.True(watch.Elapsed < TimeSpan.FromSeconds(10), $"{thread.ManagedThreadId} never blocked: {thread.ThreadState}");
            Thread.Sleep(1);
        }
    }

    /// <summary>The rents, returns, cache hits and misses of the medium tier, and of the four tiers together.</summary>
    private static (RentActivity Medium, RentActivity Pool) ActivityOf(TieredMemoryPoolStatistics statistics)
    {
        RentActivity medium = RentActivity.Of(statistics.Medium);
        return (medium, RentActivity.Of(statistics.Small) + medium + RentActivity.Of(statistics.Large) + RentActivity.Of(statistics.Huge));
    }

    private static string? Moved(string what, RentActivity before, RentActivity now) =>
        now == before ? null : $"{what}: {now} during the trim, {before} before it";

    private static string? Fell(string what, RentActivity previous, RentActivity now) =>
        now.FellFrom(previous)
            ? $"{what}: fell from {previous} to {now} between two reads"
            : null;

    private static string? MediumHistogramInUse(TieredMemoryPoolStatistics statistics) =>
        statistics.SizeHistogram.FirstOrDefault(static row => row.Tier == "medium" && row.BuffersInUse != 0) is { } row
            ? $"medium class {row.ClassSize}: {row.BuffersInUse} buffers in use ({row.Rents} rents)"
            : null;
}
