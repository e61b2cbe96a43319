using System;
using System.Buffers;
using System.Collections.Generic;
using System.Reflection;
using System.Threading;
using Microsoft.Extensions.Time.Testing;

namespace Zipora.Buffers.Tests;

/// <summary>
/// Letting regions go at a child process's GC heap limit (attack round 13, on commit c8e4785, whose trims and rents
/// run out of managed memory partway): the paths that commit left,
/// the region tiers' trims, evictions and idle release, and the idle ticker's timer. Each round is a fresh
/// pool, which has never given a mapping back, so its waiting list (<see cref="DeferredUnmaps"/>) has no room yet:
/// the first region let go of is the first to need it (an array of four mappings), and at the heap limit that
/// allocation throws after the region was taken out of the cache and its manager marked released.
/// </summary>
[Collection(HeapFiller.AtTheHeapLimit)]
public sealed partial class RegionReleaseHeapLimitSafetyTests
{
    private const int RegionSize = 100_000;

    // Regions returned each round: the waiting list grows at the 1st, 5th, 9th, 17th and 33rd that is let go of.
    private const int CachedRegions = 40;

    /// <summary>The large tier's own trim at the heap limit: every region it let go of or failed to must end unmapped.</summary>
    [Fact]
    public void RegionTrimThatRunsOutOfManagedMemoryLosesNoRegion()
    {
        if (IsolatedProcess.RunsElsewhereAtHeapLimit(typeof(RegionReleaseHeapLimitSafetyTests), nameof(RegionTrimThatRunsOutOfManagedMemoryLosesNoRegion)))
        {
            return;
        }

        // Steps of 16 bytes: every managed object is at least 24, so each allocation of the trim is still the one that
        // fails in some round (steps of 8 ran each twice, at 90 s).
        SweepFreshPools(static (pool, _) => LargeTier(pool).Trim(), maxHeadroom: 2048, step: 16);
    }

    /// <summary>The large tier of <paramref name="pool"/>.</summary>
    internal static BufferTier LargeTier(TieredMemoryPool pool) =>
        (BufferTier)typeof(TieredMemoryPool).GetField("_large", BindingFlags.NonPublic | BindingFlags.Instance)!.GetValue(pool)!;

    /// <summary>
    /// Rounds on fresh pools, on a thread of its own that fills the heap: forty regions returned (one parked in the
    /// thread's slot, the others cached), the heap filled but for 0 to <paramref name="maxHeadroom"/> bytes, then
    /// <paramref name="atTheLimit"/>; then, with the heap freed, a trim and three delays, after which every mapping
    /// made must have been unmapped and nothing may wait.
    /// </summary>
    private static void SweepFreshPools(Action<TieredMemoryPool, FakeTimeProvider> atTheLimit, int maxHeadroom, int step)
    {
        var filler = new List<byte[]>(400_000);
        long backgroundFailures = BackgroundFailures.Count;
        var sweep = new FreshPoolSweep();
        var worker = new Thread(() =>
        {
            try
            {
                // Every path compiled while there is room, on a pool of its own.
                Round(filler, -1, atTheLimit, sweep);
                for (int headroom = 0; headroom <= maxHeadroom; headroom += step, sweep.Rounds++)
                {
                    Round(filler, headroom, atTheLimit, sweep);
                }
            }
            catch (Exception error)
            {
                sweep.Unexpected = error;
            }
        });
        worker.Start();
        worker.Join();
        BackgroundFailureWatch.ProvokedSince(backgroundFailures);
        string what = $"{sweep.Rounds} rounds, {sweep.Failed} out of memory at the limit, {sweep.Done} done";
        TestContext.Current.TestOutputHelper?.WriteLine(what);
        Assert.True(sweep.Unexpected is null, $"{what}: {sweep.Unexpected}");
        Assert.True(sweep.Failed > 0 && sweep.Done > 0, $"{what}: the sweep did not cross from failing to finishing");
        Assert.True(sweep.Leaks.Count == 0, $"{what}; {sweep.Leaks.Count} rounds lost mappings for good or miscounted the cache:\n{string.Join("\n", sweep.Leaks)}");
    }

    private static void Round(List<byte[]> filler, int headroom, Action<TieredMemoryPool, FakeTimeProvider> atTheLimit, FreshPoolSweep sweep)
    {
        var time = new FakeTimeProvider();
        var pool = new TieredMemoryPool(new TieredMemoryPoolOptions { TimeProvider = time, IdleReleaseDelay = SafetyCases.IdleDelay });
        try
        {
            List<IMemoryOwner<byte>> owners = DepotReservation.Rent(pool, RegionSize, CachedRegions);
            owners.ForEach(static owner => owner.Dispose());
            owners.Clear();
            if (headroom >= 0)
            {
                HeapFiller.FillLeaving(filler, headroom);
            }

            // Failed: thrown here, or in background work it ran (a tick reports what it threw and goes on).
            long failuresBefore = BackgroundFailures.Count;
            bool failed = false;
            try
            {
                atTheLimit(pool, time);
            }
            catch (OutOfMemoryException)
            {
                failed = true;
            }

            if (failed || BackgroundFailures.Count != failuresBefore)
            {
                sweep.Failed++;
            }
            else
            {
                sweep.Done++;
            }

            filler.Clear();
            GC.Collect();

            // The tier in use again: regions rented and returned to the cache after the failure must be let go of too.
            owners = DepotReservation.Rent(pool, RegionSize, 10);
            owners.ForEach(static owner => owner.Dispose());
            pool.Trim();
            SafetyCases.Advance(time, SafetyCases.IdleDelay * 3);
            pool.Trim();
            SafetyCases.Advance(time, SafetyCases.IdleDelay * 3);
            TieredMemoryPoolStatistics statistics = pool.GetStatistics();
            if (statistics.MmapCalls != statistics.MunmapCalls || statistics.BytesAwaitingRelease != 0 || statistics.Large.BytesRetained != 0)
            {
                sweep.Leaks.Add($"headroom {headroom}: {statistics.MmapCalls} mapped, {statistics.MunmapCalls} unmapped, {statistics.BytesAwaitingRelease} awaiting release; large tier: {statistics.Large}");
            }
        }
        finally
        {
            pool.Dispose();
        }
    }

    private sealed class FreshPoolSweep
    {
        public readonly List<string> Leaks = new(1000);
        public int Rounds;
        public int Done;
        public int Failed;
        public Exception? Unexpected;
    }
}
