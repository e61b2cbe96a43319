using System;
using System.Buffers;
using System.Collections.Generic;
using System.Linq;

namespace Zipora.Buffers.Tests;

/// <summary>
/// A rent that throws takes nothing: in the default owner mode each rent makes an owner object, and at the GC heap
/// limit that allocation fails. Made after the block was taken, it left the block counted in use, held by nobody, until
/// a collection found the block unreachable and its finalizer gave it to the leak quarantine, counted as a leak the
/// caller never made. The owner is made before the block is taken, in every tier; in diagnostic mode, where the owner
/// and its stack trace come after, the block goes back when they cannot be made.
/// </summary>
[Collection(HeapFiller.AtTheHeapLimit)]
public sealed class OwnerAllocationHeapLimitSafetyTests
{
    // One size per tier, and the default size (-1) and 0, which take other paths to their tier.
    private const int Attempts = 1000;

    private static readonly int[] s_sizes = [100, 4096, -1, 0, 100_000, 3 * 1024 * 1024];

    [Fact]
    public void ARentThatRunsOutOfManagedMemoryForItsOwnerTakesNoBlockAndCountsNoLeak()
    {
        if (IsolatedProcess.RunsElsewhereAtHeapLimit(typeof(OwnerAllocationHeapLimitSafetyTests), nameof(ARentThatRunsOutOfManagedMemoryForItsOwnerTakesNoBlockAndCountsNoLeak)))
        {
            return;
        }

        var crumbs = new List<object>(1 << 20);
        foreach ((int size, DiagnosticLevel diagnostics) in s_sizes.SelectMany(static size => new[] { (size, DiagnosticLevel.Off), (size, DiagnosticLevel.All) }))
        {
            using var pool = new TieredMemoryPool(new TieredMemoryPoolOptions { Diagnostics = diagnostics });

            // The block cached on this thread and every path compiled while there is room, so the rent at the limit
            // allocates nothing but its owner.
            for (int i = 0; i < 2; i++)
            {
                pool.Rent(size).Dispose();
            }

            long failures = BackgroundFailures.Count;
            var owners = new List<IMemoryOwner<byte>>(Attempts);
            OutOfMemoryException? thrown = HeapFiller.OutOfMemoryFrom(() =>
            {
                // The filler's smallest arrays leave gaps, and a failed allocation's collection may find room: filled
                // with the smallest objects there are, again after each rent that still found room for its owner.
                while (owners.Count < Attempts)
                {
                    FillWithObjects(crumbs);
                    owners.Add(pool.Rent(size));
                }
            });
            crumbs.Clear();
            BackgroundFailureWatch.ProvokedSince(failures);
            int rentsWithRoom = owners.Count;
            owners.ForEach(static owner => owner.Dispose());
            owners.Clear();
            Assert.True(thrown is not null, $"{Attempts} rents of {size} bytes (diagnostics {diagnostics}) with the heap full never ran out of memory: the case tests nothing");

            // Whatever the collections found, nothing was taken: nothing in use, nothing for the leak reclaim.
            SafetyCases.CollectEverything();
            TieredMemoryPoolStatistics after = pool.GetStatistics();
            string what = $"after a rent of {size} bytes (diagnostics {diagnostics}) that ran out of managed memory ({thrown!.Message}), {rentsWithRoom} before it with room";
            Assert.True(after.BytesInUse == 0, $"{what}: {after.BytesInUse} bytes counted in use, held by nobody\n{after}");
            Assert.True(after.LeaksReclaimed == 0 && after.BytesQuarantined == 0, $"{what}: the block the rent took was reclaimed as a leak\n{after}");

            // And the cached block is still there for the next rent.
            using IMemoryOwner<byte> next = pool.Rent(size);
            TieredMemoryPoolStatistics reused = pool.GetStatistics();
            Assert.True(reused.MmapCalls == after.MmapCalls, $"{what}: the next rent mapped new memory instead of the cached block\n{reused}");
        }
    }

    private static void FillWithObjects(List<object> crumbs)
    {
        try
        {
            while (crumbs.Count < crumbs.Capacity)
            {
                crumbs.Add(new object());
            }
        }
        catch (OutOfMemoryException)
        {
            // Full: not even the smallest object fits.
        }
    }
}
