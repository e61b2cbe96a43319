using System;
using System.Buffers;
using System.Collections.Generic;
using System.Reflection;
using System.Threading;

namespace Zipora.Buffers.Tests;

/// <summary>
/// A native pool caching a million small blocks holds about 85 MB of the managed heap in their managers, which a
/// pressure trim gives back. The trim itself allocated 28 bytes a cached block (28 MB) for its lists and tables, so at a
/// heap near its hard limit it ran out of managed memory and, as designed for a failed trim, kept every block: the trim
/// meant to relieve the heap relieved nothing (NativePoolManagedMetadataPressureTests had to double its heap limit for
/// it). It now allocates a constant (TrimAllocationBoundTests), and lets go of every slab with 2 MB of the heap free.
/// </summary>
[Collection(HeapFiller.AtTheHeapLimit)]
public sealed class SlabPressureTrimHeapLimitSafetyTests
{
    private const int Blocks = 1_000_000;

    // Far less than the old trim's tables (28 MB), far more than the trim now allocates (under 64 KB).
    private const int Headroom = 2 * 1024 * 1024;

    [Fact]
    public void APressureTrimAtTheHeapLimitLetsGoOfEverySlabOfAMillionCachedBlocks()
    {
        if (IsolatedProcess.RunsElsewhereAtHeapLimit(typeof(SlabPressureTrimHeapLimitSafetyTests), nameof(APressureTrimAtTheHeapLimitLetsGoOfEverySlabOfAMillionCachedBlocks)))
        {
            return;
        }

        var filler = new List<byte[]>(400_000);
        long backgroundFailures = BackgroundFailures.Count;
        using var pool = new TieredMemoryPool(new TieredMemoryPoolOptions { IdleReleaseDelay = TimeSpan.FromMinutes(10) });

        // With room: the trim's paths compiled and its lazy objects made by a first trim of a few blocks.
        CacheWrittenBlocks(pool, 10_000);
        ((IReclaimablePool)pool).TrimUnderPressure();
        CacheWrittenBlocks(pool, Blocks);
        TierStatistics before = pool.GetStatistics().Small;

        // The small tier's trim lock held through the fill: the watcher's own passes, which the fill's collections set
        // off, wait, so the trim measured is this one, at the limit (not one that ran early, with room to spare).
        object trimLock = SmallTierTrimLock(pool);
        Exception? thrown = null;
        long retainedAtTheLimit;
        Monitor.Enter(trimLock);
        try
        {
            HeapFiller.FillLeaving(filler, Headroom);
            try
            {
                ((IReclaimablePool)pool).TrimUnderPressure();
            }
            catch (OutOfMemoryException error)
            {
                thrown = error;
            }

            // Read without allocating, still at the limit and before the watcher's passes can trim.
            (retainedAtTheLimit, _) = pool.RetainedAndActivity();
        }
        finally
        {
            Monitor.Exit(trimLock);
        }

        // Aggressive: the heap the fill committed is given back, so what follows (a dispose of a pool that kept its
        // blocks makes a list of them) has room under the limit.
        filler.Clear();
        GC.Collect(2, GCCollectionMode.Aggressive, blocking: true, compacting: true);

        // The watcher's own passes at the limit (a collection there) may have run out of memory reading the heap: reported, skipped.
        BackgroundFailureWatch.ProvokedSince(backgroundFailures);
        TierStatistics after = pool.GetStatistics().Small;
        string what = $"{before.BytesRetained} bytes retained, {before.BytesEvicted} evicted before the trim; {retainedAtTheLimit} retained after it; {after.BytesEvicted} evicted once the heap was let go of";
        TestContext.Current.SendDiagnosticMessage(what);
        Assert.True(thrown is null, $"the pressure trim ran out of managed memory ({what}): {thrown}");
        Assert.True(retainedAtTheLimit == 0, $"the pressure trim kept cached blocks: {what}");
        Assert.True(after.BytesEvicted - before.BytesEvicted >= before.BytesRetained, $"the slabs' memory did not leave the process: {what}");
    }

    private static object SmallTierTrimLock(TieredMemoryPool pool)
    {
        object tier = typeof(TieredMemoryPool).GetField("_small", BindingFlags.NonPublic | BindingFlags.Instance)!.GetValue(pool)!;
        return tier.GetType().BaseType!.GetField("_trimLock", BindingFlags.NonPublic | BindingFlags.Instance)!.GetValue(tier)!;
    }

    /// <summary>Rents <paramref name="count"/> 64-byte blocks, writes each (its page resident), and returns them all.</summary>
    private static void CacheWrittenBlocks(TieredMemoryPool pool, int count)
    {
        var owners = new IMemoryOwner<byte>[count];
        for (int i = 0; i < count; i++)
        {
            owners[i] = pool.Rent(64);
            owners[i].Memory.Span.Fill(1);
        }

        foreach (IMemoryOwner<byte> owner in owners)
        {
            owner.Dispose();
        }
    }
}
