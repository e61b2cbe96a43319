using System;
using System.Collections.Generic;
using Microsoft.Extensions.Time.Testing;

namespace Zipora.Buffers.Tests;

/// <summary>
/// A new slab or region may take a mapping let go of within its idle delay (<see cref="TieredMemoryPoolStatistics.MappingsReused"/>),
/// which a stale <c>Span</c> of its old holder may still write to. When the process then runs out of managed memory
/// for the slab's or region's objects (<c>SlabHeap.MapSlab</c>, <c>RegionTier.MapRegion</c>), the mapping goes back on
/// the waiting list: stamped as returned now, it waits out a delay; stamped as never used, it would be unmapped at
/// once under that stale <c>Span</c>. Each round is a fresh pool whose one block or region was let go of by a trim, then
/// a rent of its size with the heap filled but for 0 to 1 KB, in a child process at the GC heap limit.
/// </summary>
[Collection(HeapFiller.AtTheHeapLimit)]
public sealed class TakenWaitingMappingHeapLimitSafetyTests
{
    private const int MaxHeadroom = 1024;
    private const int Step = 16;
    private const int MaxSweeps = 16;

    [Fact]
    public void ASlabThatRunsOutOfManagedMemoryAfterTakingAWaitingMappingLeavesItMappedForItsDelay()
    {
        if (IsolatedProcess.RunsElsewhereAtHeapLimit(typeof(TakenWaitingMappingHeapLimitSafetyTests), nameof(ASlabThatRunsOutOfManagedMemoryAfterTakingAWaitingMappingLeavesItMappedForItsDelay)))
        {
            return;
        }

        // A small block and a medium one, each on a slab of its own.
        SweepOnAThreadOfItsOwn([64, 4096]);
    }

    [Fact]
    public void ARegionThatRunsOutOfManagedMemoryAfterTakingAWaitingMappingLeavesItMappedForItsDelay()
    {
        if (IsolatedProcess.RunsElsewhereAtHeapLimit(typeof(TakenWaitingMappingHeapLimitSafetyTests), nameof(ARegionThatRunsOutOfManagedMemoryAfterTakingAWaitingMappingLeavesItMappedForItsDelay)))
        {
            return;
        }

        // A large region and a huge one.
        SweepOnAThreadOfItsOwn([100_000, 3 * 1024 * 1024]);
    }

    private static void SweepOnAThreadOfItsOwn(int[] sizes)
    {
        var filler = new List<byte[]>(400_000);
        long backgroundFailures = BackgroundFailures.Count;
        var failures = new List<string>();
        var taken = new int[sizes.Length];
        Exception? unexpected = FreshThread.Run(() =>
        {
            for (int i = 0; i < sizes.Length; i++)
            {
                // Every path compiled while there is room, on a pool of its own.
                _ = Round(filler, sizes[i], headroom: -1, failures);

                // Where the heap runs out within a rent moves from run to run: a sweep that never ran out after the
                // take (the huge region, once on a CI run) is swept again, offset by a few bytes, up to MaxSweeps.
                for (int sweep = 0; sweep < MaxSweeps && taken[i] == 0; sweep++)
                {
                    for (int headroom = sweep * (Step / MaxSweeps); headroom <= MaxHeadroom; headroom += Step)
                    {
                        taken[i] += Round(filler, sizes[i], headroom, failures) ? 1 : 0;
                    }
                }
            }
        });

        // The pools' own background work (the pressure watcher's reads) runs out of memory at the limit too, and says so.
        BackgroundFailureWatch.ProvokedSince(backgroundFailures);
        Assert.True(unexpected is null, $"{unexpected}");
        Assert.True(failures.Count == 0, string.Join("\n", failures));
        for (int i = 0; i < sizes.Length; i++)
        {
            // Else the sweep never reached the path under test: a rent that took the mapping and then ran out of memory.
            Assert.True(taken[i] > 0, $"{sizes[i]} B: no round of {MaxSweeps} sweeps ran out of managed memory after taking the waiting mapping");
        }
    }

    /// <summary>One round on a fresh pool; whether its rent ran out of managed memory after taking the waiting mapping.</summary>
    private static bool Round(List<byte[]> filler, int size, int headroom, List<string> failures)
    {
        var time = new FakeTimeProvider();
        var mappings = new LiveMappingsAllocator(mostLive: 64);
        // Owners reused: a fresh owner object is made after the block is taken, and at the limit its allocation can be
        // the one that fails, leaving the block rented with no owner until its finalizer (seen once in these sweeps, and
        // left for another test): this one is about the mapping, not the owner.
        var pool = new TieredMemoryPool(new TieredMemoryPoolOptions { PageAllocator = mappings, TimeProvider = time, IdleReleaseDelay = SafetyCases.IdleDelay, ReuseOwners = true });
        try
        {
            // The clock well past a delay, so a mapping stamped as long returned is unmapped at once.
            SafetyCases.Advance(time, SafetyCases.IdleDelay * 3);
            pool.Rent(size).Dispose();

            // Let go of within its delay: pages dropped, the mapping waits (and may be taken by the next rent of its size).
            pool.Trim();
            TieredMemoryPoolStatistics before = pool.GetStatistics();
            if (before.BytesAwaitingRelease == 0)
            {
                failures.Add($"{size} B: the trim left nothing waiting out its delay\n{before}");
                return false;
            }

            if (headroom >= 0)
            {
                HeapFiller.FillLeaving(filler, headroom);
            }

            // Rented and returned apart: a return must never throw, out of managed memory or not.
            OutOfMemoryException? thrown = null;
            System.Buffers.IMemoryOwner<byte>? owner = null;
            try
            {
                owner = pool.Rent(size);
            }
            catch (OutOfMemoryException error)
            {
                thrown = error;
            }

            Exception? returnThrew = null;
            try
            {
                owner?.Dispose();
            }
            catch (OutOfMemoryException error)
            {
                returnThrew = error;
            }

            filler.Clear();
            GC.Collect();
            TieredMemoryPoolStatistics after = pool.GetStatistics();
            if (returnThrew is not null)
            {
                failures.Add($"{size} B, headroom {headroom}: the return threw {returnThrew}");
            }

            // Taken and then given back (or, wrongly, unmapped): the rent ran out of memory before the slab or region was made.
            bool reused = after.MappingsReused > before.MappingsReused;
            bool unmapped = after.MunmapCalls != before.MunmapCalls;
            bool took = thrown is not null && reused && (unmapped || after.BytesAwaitingRelease == before.BytesAwaitingRelease);
            if (unmapped)
            {
                failures.Add($"{size} B, headroom {headroom}: a rent that ran out of managed memory unmapped memory let go of within its delay ({before.MunmapCalls} unmaps before, {after.MunmapCalls} after; {before.BytesAwaitingRelease} bytes waiting before, {after.BytesAwaitingRelease} after): a stale write would fault; thrown: {thrown}");
            }

            // Everything goes in the end: nothing lost, nothing left counted.
            SafetyCases.Advance(time, SafetyCases.IdleDelay * 3);
            pool.Trim();
            SafetyCases.Advance(time, SafetyCases.IdleDelay * 3);
            TieredMemoryPoolStatistics end = pool.GetStatistics();
            if (mappings.Live().Length != 0 || end.BytesAwaitingRelease != 0 || end.BytesInUse != 0)
            {
                failures.Add($"{size} B, headroom {headroom}: {end.MmapCalls} mapped, {end.MunmapCalls} unmapped, {end.BytesAwaitingRelease} awaiting release, {end.BytesInUse} in use; {mappings.Live().Length} mappings live; thrown: {thrown}\n{end}");
            }

            return took;
        }
        finally
        {
            pool.Dispose();
        }
    }
}
