using System;
using System.Buffers;
using System.Collections.Generic;
using Microsoft.Extensions.Time.Testing;

namespace Zipora.Buffers.Tests;

/// <summary>
/// A <see cref="TieredMemoryPool"/> with <see cref="TieredMemoryPoolOptions.UsePinnedArrays"/> (what
/// <c>AddTieredMemoryPool</c> gives Kestrel) keeps its pages in arrays on the pinned object heap, inside the GC heap. In a
/// container the pressure watch trims it as the heap nears its hard limit, and a heap that grew past that between two
/// checks meets the trim at the limit itself: there the trim must give back the idle arrays of every tier, which are the
/// room the process needs, not run out of memory before it lets go of any.
/// </summary>
[Collection(HeapFiller.AtTheHeapLimit)]
public sealed class PinnedPoolTrimHeapLimitSafetyTests
{
    // One size per tier: small, medium, large (a region), huge (a region of the huge tier, under the pinned cap).
    private static readonly int[] s_sizes = [64, 4096, 100 * 1024, 3 * 1024 * 1024];

    [Fact]
    public void ATrimAtTheHeapLimitGivesBackEveryTiersIdlePinnedArrays()
    {
        if (IsolatedProcess.RunsElsewhereAtHeapLimit(typeof(PinnedPoolTrimHeapLimitSafetyTests), nameof(ATrimAtTheHeapLimitGivesBackEveryTiersIdlePinnedArrays)))
        {
            return;
        }

        var failures = new List<string>();
        var filler = new List<byte[]>(400_000);
        object[] crumbs = new object[2_000_000];
        long backgroundFailures = BackgroundFailures.Count;
        foreach (bool underPressure in new[] { false, true })
        {
            string what = underPressure ? "the pressure trim" : "Trim()";
            var time = new FakeTimeProvider();
            using var pool = new TieredMemoryPool(Options(time));

            // With room: the same trim of another pool (so nothing is compiled first at the limit), then the idle
            // memory cached by the thread that trims at the limit.
            Exception? thrown = PoolTrims.RunAtTheHeapLimit(
                pool,
                underPressure,
                () =>
                {
                    using (var warm = new TieredMemoryPool(Options(new FakeTimeProvider())))
                    {
                        CacheEveryTier(warm);
                        PoolTrims.Run(warm, underPressure);
                    }

                    CacheEveryTier(pool);
                },
                filler,
                crumbs);

            TieredMemoryPoolStatistics after = pool.GetStatistics();
            string figures = $"retained {after.BytesRetained} (small {after.Small.BytesRetained}, medium {after.Medium.BytesRetained}, large {after.Large.BytesRetained}, huge {after.Huge.BytesRetained}), awaiting release {after.BytesAwaitingRelease}, in use {after.BytesInUse}";
            if (thrown is not null)
            {
                failures.Add($"{what} threw at the heap limit, leaving {figures}: {thrown.GetType().Name} at {thrown.StackTrace}");
            }
            else if (after.BytesRetained != 0 || after.BytesInUse != 0 || (underPressure && after.BytesAwaitingRelease != 0))
            {
                failures.Add($"{what} at the heap limit left {figures}");
            }

            // Nothing lost or counted twice: with room, every mapping the pool made goes back once the delay has passed.
            pool.Trim();
            SafetyCases.Advance(time, SafetyCases.IdleDelay * 3);
            after = pool.GetStatistics();
            if (after.BytesInUse != 0 || after.MmapCalls != after.MunmapCalls)
            {
                failures.Add($"after {what}: {after.BytesInUse} bytes in use, {after.MmapCalls} mappings made and {after.MunmapCalls} unmapped with nothing rented and everything trimmed");
            }
        }

        // A collection at the limit may have made the pressure watcher's own read run out of memory (reported, skipped).
        BackgroundFailureWatch.ProvokedSince(backgroundFailures);
        Assert.True(failures.Count == 0, string.Join("\n", failures));
    }

    [Fact]
    public void TrimsOfAPinnedPoolAllocateNothing()
    {
        // What makes the trims safe at the limit, counted exactly: no managed allocation at all, so none can fail.
        var allocations = new List<string>();
        foreach (bool underPressure in new[] { false, true })
        {
            using (var warm = new TieredMemoryPool(Options(new FakeTimeProvider())))
            {
                CacheEveryTier(warm);
                PoolTrims.Run(warm, underPressure);
            }

            using var pool = new TieredMemoryPool(Options(new FakeTimeProvider()));
            CacheEveryTier(pool);
            long allocated = ThreadAllocations.During(() => PoolTrims.Run(pool, underPressure));
            long retained = pool.GetStatistics().BytesRetained;
            if (allocated != 0 || retained != 0)
            {
                allocations.Add($"{(underPressure ? "the pressure trim" : "Trim()")} allocated {allocated} bytes and left {retained} retained");
            }
        }

        Assert.True(allocations.Count == 0, string.Join("\n", allocations));
    }

    private static TieredMemoryPoolOptions Options(TimeProvider time) => new()
    {
        UsePinnedArrays = true,
        TimeProvider = time,
        IdleReleaseDelay = SafetyCases.IdleDelay,
    };

    /// <summary>Rents and returns a few buffers of each tier on the calling thread: its caches and slots, and the shared caches, hold them.</summary>
    private static void CacheEveryTier(TieredMemoryPool pool)
    {
        var owners = new List<IMemoryOwner<byte>>();
        foreach (int size in s_sizes)
        {
            for (int i = 0; i < 3; i++)
            {
                owners.Add(pool.Rent(size));
            }
        }

        owners.ForEach(static owner => owner.Dispose());
        TieredMemoryPoolStatistics statistics = pool.GetStatistics();
        Assert.True(statistics.Small.BytesRetained > 0 && statistics.Medium.BytesRetained > 0 && statistics.Large.BytesRetained > 0 && statistics.Huge.BytesRetained > 0, $"not every tier cached: {statistics}");
    }
}
