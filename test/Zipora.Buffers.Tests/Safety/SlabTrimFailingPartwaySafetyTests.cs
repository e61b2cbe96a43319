using System;
using System.Buffers;
using System.Collections.Generic;
using Microsoft.Extensions.Time.Testing;

namespace Zipora.Buffers.Tests;

/// <summary>
/// A slab tier's trim works on the free blocks where its depots hold them (claimed, sorted in place) and hands back
/// what it kept when it ends. One that fails partway (here before each slab of its walk in turn, as an allocation at the
/// GC heap limit could: the sweeper's first tables, a depot grown for a block listed twice) must lose no block, give
/// none to two owners, count nothing twice and leave the depots' room exact; the next trim then lets go of everything.
/// </summary>
public sealed class SlabTrimFailingPartwaySafetyTests
{
    // Small blocks over three slabs and a partly carved fourth, medium blocks over three slabs, a few tiny ones.
    private static readonly (int Size, int Count)[] s_blocks = [(64, 3500), (4096, 40), (16, 100)];

    [Theory]
    [InlineData(OwnerMode.Default)]
    [InlineData(OwnerMode.ReuseOwners)]
    public void ATrimThatFailsBeforeAnyOfItsSlabsLosesNoBlockAndLeavesEveryFigureExact(OwnerMode mode)
    {
        int failed = 0;
        for (int slabsFirst = 0; ; slabsFirst++)
        {
            if (!TrimFailingAfter(mode, slabsFirst))
            {
                break;
            }

            failed++;
        }

        // Every slab of both tiers was a place to fail at, once.
        int slabs = 0;
        foreach ((int size, int count) in s_blocks)
        {
            int perSlab = (int)(LiveMappingsAllocator.MappedBytesOfOne(size) / size);
            slabs += (count + perSlab - 1) / perSlab;
        }

        Assert.True(failed == slabs, $"{mode}: the trim handled {failed} slabs of {slabs}");
    }

    /// <summary>One fresh pool whose trim fails before the slab after <paramref name="slabsFirst"/>; whether it failed.</summary>
    private static bool TrimFailingAfter(OwnerMode mode, int slabsFirst)
    {
        using var pool = new TieredMemoryPool(SafetyCases.Options(mode, new FakeTimeProvider()));
        List<IMemoryOwner<byte>> held = CacheAllButAFew(pool);
        TieredMemoryPoolStatistics before = pool.GetStatistics();
        string what = $"{mode}, the trim failing after {slabsFirst} slabs";

        SlabTrimFault.FailAfter(pool, slabsFirst);
        Exception? thrown;
        try
        {
            thrown = Record.Exception(pool.Trim);
        }
        finally
        {
            SlabTrimFault.Disarm(pool);
        }

        Assert.True(thrown is null || ReferenceEquals(thrown, SlabTrimFault.OutOfMemory), $"{what}: {thrown}");
        TieredMemoryPoolStatistics after = pool.GetStatistics();
        Assert.True(SafetyCases.NegativeFigures(after) is null, $"{what}: {SafetyCases.NegativeFigures(after)}\n{after}");
        Assert.True(after.BytesInUse == before.BytesInUse && after.Small.BuffersInUse == before.Small.BuffersInUse && after.Medium.BuffersInUse == before.Medium.BuffersInUse, $"{what}: in use before\n{before}\nafter\n{after}");
        DepotReservation.AssertMatches(pool, expectedExisting: null, what);

        // Every block cached or let go of is rented once at most: all of them again beside those held, disjoint.
        var owners = new List<IMemoryOwner<byte>>(held);
        foreach ((int size, int count) in s_blocks)
        {
            owners.AddRange(DepotReservation.Rent(pool, size, count));
        }

        SafetyCases.AssertDisjoint(owners, what);
        owners.ForEach(static owner => owner.Dispose());

        // And none was lost: with nothing rented, a trim lets go of every slab, and of the room of every block.
        DepotReservation.AssertATrimFreesEverySlabAndItsRoom(pool, what);
        return thrown is not null;
    }

    /// <summary>
    /// Rents <see cref="s_blocks"/> and returns all but one block in three of each class, half of them on another
    /// thread (whose cache the trim empties too); returns those held, which keep their slabs partly free.
    /// </summary>
    private static List<IMemoryOwner<byte>> CacheAllButAFew(TieredMemoryPool pool)
    {
        var held = new List<IMemoryOwner<byte>>();
        var elsewhere = new List<IMemoryOwner<byte>>();
        var here = new List<IMemoryOwner<byte>>();
        foreach ((int size, int count) in s_blocks)
        {
            List<IMemoryOwner<byte>> owners = DepotReservation.Rent(pool, size, count);
            for (int i = 0; i < owners.Count; i++)
            {
                (i % (count / 3) == 0 ? held : i % 2 == 0 ? elsewhere : here).Add(owners[i]);
            }
        }

        var thread = new System.Threading.Thread(() => elsewhere.ForEach(static owner => owner.Dispose()));
        thread.Start();
        thread.Join();
        here.ForEach(static owner => owner.Dispose());
        return held;
    }
}
