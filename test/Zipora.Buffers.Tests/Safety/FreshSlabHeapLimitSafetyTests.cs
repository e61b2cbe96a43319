using System;
using System.Buffers;
using System.Collections.Generic;
using Microsoft.Extensions.Time.Testing;

namespace Zipora.Buffers.Tests;

/// <summary>
/// A slab mapped for a rent is listed with its first block cut, under the heap's lock. When the process runs out of
/// managed memory for the slab's objects or that block's manager, the slab is neither listed nor counted, its mapping
/// goes back, and the rent takes nothing: in the default owner mode (the owner made before the block). Each round is a
/// fresh pool's first rent of a class with the heap filled but for 0 to 512 bytes, in a child process at the GC heap
/// limit.
/// </summary>
[Collection(HeapFiller.AtTheHeapLimit)]
public sealed class FreshSlabHeapLimitSafetyTests
{
    private const int MaxHeadroom = 512;
    private const int Step = 32;
    private const int MostSweeps = 16;
    private static readonly int[] s_sizes = [64, 4096];

    // The default mode only: reused owners' fresh slabs at the limit are TakenWaitingMappingHeapLimitSafetyTests' too.
    private static readonly bool[] s_reuseOwners = [false];

    [Fact]
    public void AFreshSlabsRentThatRunsOutOfManagedMemoryCountsNothingAndLeavesNothingMapped()
    {
        if (IsolatedProcess.RunsElsewhereAtHeapLimit(typeof(FreshSlabHeapLimitSafetyTests), nameof(AFreshSlabsRentThatRunsOutOfManagedMemoryCountsNothingAndLeavesNothingMapped)))
        {
            return;
        }

        var filler = new List<byte[]>(400_000);
        long backgroundFailures = BackgroundFailures.Count;
        var failures = new List<string>();
        int afterMapping = 0;
        Exception? unexpected = FreshThread.Run(() =>
        {
            foreach (int size in s_sizes)
            {
                foreach (bool reuseOwners in s_reuseOwners)
                {
                    _ = Round(filler, size, reuseOwners, headroom: -1, failures);

                    // Where in the rent the heap runs out moves from run to run (what else the runtime allocated
                    // meanwhile): a sweep that never ran out after the mapping is repeated, offset by a few bytes,
                    // and the four offsets again while none did (one CI run on a loaded host missed in all four).
                    int afterMappingBefore = afterMapping;
                    for (int sweep = 0; sweep < MostSweeps && afterMapping == afterMappingBefore; sweep++)
                    {
                        for (int headroom = sweep % 4 * (Step / 4); headroom <= MaxHeadroom; headroom += Step)
                        {
                            afterMapping += Round(filler, size, reuseOwners, headroom, failures) ? 1 : 0;
                        }
                    }
                }
            }
        });

        BackgroundFailureWatch.ProvokedSince(backgroundFailures);
        Assert.True(unexpected is null, $"{unexpected}");
        Assert.True(failures.Count == 0, string.Join("\n", failures));
        Assert.True(afterMapping > 0, $"no round ran out of managed memory after its slab was mapped, in {MostSweeps} sweeps: the path under test was never taken");
    }

    /// <summary>One round on a fresh pool; whether its rent ran out of managed memory after mapping its slab.</summary>
    private static bool Round(List<byte[]> filler, int size, bool reuseOwners, int headroom, List<string> failures)
    {
        var time = new FakeTimeProvider();
        var mappings = new LiveMappingsAllocator(mostLive: 64);
        var pool = new TieredMemoryPool(new TieredMemoryPoolOptions { PageAllocator = mappings, TimeProvider = time, IdleReleaseDelay = SafetyCases.IdleDelay, ReuseOwners = reuseOwners });
        string what = $"{size} B (reuse owners {reuseOwners}), headroom {headroom}";
        try
        {
            // The thread's caches made by a rent of another class of the tier, so the rent at the limit allocates little
            // but the slab, its first block's manager and the owner.
            pool.Rent(size < 1024 ? 512 : 2048).Dispose();
            long mapsBefore = pool.GetStatistics().MmapCalls;
            TierStatistics before = size < 1024 ? pool.GetStatistics().Small : pool.GetStatistics().Medium;
            if (headroom >= 0)
            {
                HeapFiller.FillLeaving(filler, headroom);
            }

            OutOfMemoryException? thrown = null;
            IMemoryOwner<byte>? owner = null;
            try
            {
                owner = pool.Rent(size);
            }
            catch (OutOfMemoryException error)
            {
                thrown = error;
            }

            filler.Clear();
            GC.Collect();
            TieredMemoryPoolStatistics after = pool.GetStatistics();
            TierStatistics tier = size < 1024 ? after.Small : after.Medium;
            if (thrown is not null && (tier.BytesInUse != 0 || tier.BytesUncarved != before.BytesUncarved || tier.BytesAllocated != before.BytesAllocated || tier.Rents != before.Rents))
            {
                failures.Add($"{what}: a rent that ran out of managed memory left {tier.BytesInUse} B in use, {tier.BytesUncarved} B uncarved, {tier.BytesAllocated} B allocated, {tier.Rents} rents counted; thrown: {thrown.Message}\n{after}");
            }

            owner?.Dispose();
            SafetyCases.CollectEverything();
            SafetyCases.Advance(time, SafetyCases.IdleDelay * 3);
            pool.Trim();
            SafetyCases.Advance(time, SafetyCases.IdleDelay * 3);
            TieredMemoryPoolStatistics end = pool.GetStatistics();
            if (mappings.Live().Length != 0 || end.BytesAwaitingRelease != 0 || end.BytesInUse != 0 || end.LeaksReclaimed != 0 || end.BytesQuarantined != 0)
            {
                failures.Add($"{what}: {mappings.Live().Length} mappings live, {end.BytesAwaitingRelease} B awaiting release, {end.BytesInUse} B in use, {end.LeaksReclaimed} leaks reclaimed; thrown: {thrown?.Message}\n{end}");
            }

            return thrown is not null && after.MmapCalls > mapsBefore;
        }
        finally
        {
            pool.Dispose();
        }
    }
}
