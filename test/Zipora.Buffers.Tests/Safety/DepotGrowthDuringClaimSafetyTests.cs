using System;
using System.Buffers;
using System.Collections.Generic;
using System.Diagnostics;
using System.Threading;
using Microsoft.Extensions.Time.Testing;

namespace Zipora.Buffers.Tests;

/// <summary>
/// While a trim works on the blocks it claimed in a depot's array, other threads return blocks onto the top, rent
/// them back from above the claim, and a rent that must carve a new block grows the array (its room reserved before
/// the carve, which then waits for the trim's lock); more returns land in the grown array. Partway through a trim (before
/// each slab in turn), and with the trim failing there or going on: no block may be lost, listed twice or handed to two
/// owners, live blocks keep their contents, the figures and the depot's room stay exact.
/// </summary>
public sealed class DepotGrowthDuringClaimSafetyTests
{
    private const int Size = 64;

    // A power of two: the depot's array is then exactly full of reserved room, and the next carve grows it.
    private const int Blocks = 8192;

    [Theory]
    [InlineData(OwnerMode.Default, false)]
    [InlineData(OwnerMode.Default, true)]
    [InlineData(OwnerMode.ReuseOwners, false)]
    [InlineData(OwnerMode.ReuseOwners, true)]
    public void ReturnsRentsAndAGrowthDuringAClaimLoseNothingAndShareNothing(OwnerMode mode, bool fail)
    {
        int slabs = (int)((Blocks + (LiveMappingsAllocator.MappedBytesOfOne(Size) / Size) - 1) / (LiveMappingsAllocator.MappedBytesOfOne(Size) / Size));
        for (int slabsFirst = 0; slabsFirst < slabs; slabsFirst++)
        {
            MeetATrimBeforeSlab(mode, fail, slabsFirst);
        }
    }

    private static void MeetATrimBeforeSlab(OwnerMode mode, bool fail, int slabsFirst)
    {
        string what = $"{mode}, the trim {(fail ? "failing" : "going on")} after {slabsFirst} slabs";
        using var pool = new TieredMemoryPool(SafetyCases.Options(mode, new FakeTimeProvider()));
        var live = new List<(IMemoryOwner<byte> Owner, long Id)>();
        long nextId = 0;
        foreach (IMemoryOwner<byte> owner in DepotReservation.Rent(pool, Size, Blocks))
        {
            live.Add((owner, ++nextId));
            owner.Memory.Span.Fill((byte)nextId);
        }

        int length = DepotReservation.DepotArrayLength(pool, "_small", Size);
        Assert.True(DepotReservation.ReservedFor(pool, "_small", Size) == length, $"{what}: reserved {DepotReservation.ReservedFor(pool, "_small", Size)} of {length}");

        // Keep every third block live (each slab partly free), return the rest, half on another thread.
        var returned = new List<IMemoryOwner<byte>>();
        var kept = new List<(IMemoryOwner<byte> Owner, long Id)>();
        for (int i = 0; i < live.Count; i++)
        {
            (i % 3 == 0 ? kept : null)?.Add(live[i]);
            if (i % 3 != 0)
            {
                returned.Add(live[i].Owner);
            }
        }

        OnAnotherThread(() => returned.GetRange(0, returned.Count / 2).ForEach(static owner => owner.Dispose()));
        returned.GetRange(returned.Count / 2, returned.Count - (returned.Count / 2)).ForEach(static owner => owner.Dispose());
        live = kept;

        var rentedMeanwhile = new List<(IMemoryOwner<byte> Owner, long Id)>();
        Thread? carver = null;
        SlabTrimFault.RunBefore(pool, slabsFirst, () => carver = MeanwhileOnOtherThreads(pool, live, returned, rentedMeanwhile, length, what), fail);
        Exception? thrown;
        try
        {
            thrown = Record.Exception(pool.Trim);
        }
        finally
        {
            SlabTrimFault.Disarm(pool);
        }

        Assert.True(carver is not null, $"{what}: the trim never came to that slab");
        Assert.True(carver.Join(TimeSpan.FromSeconds(10)), $"{what}: the carving rent never ended");
        Assert.True(fail ? ReferenceEquals(thrown, SlabTrimFault.OutOfMemory) : thrown is null, $"{what}: {thrown}");
        live.AddRange(rentedMeanwhile);
        foreach ((IMemoryOwner<byte> owner, long id) in live)
        {
            Assert.True(owner.Memory.Span.IndexOfAnyExcept((byte)id) < 0, $"{what}: live owner {id} at {SafetyCases.RangeOf(owner)} lost its contents");
        }

        TieredMemoryPoolStatistics statistics = pool.GetStatistics();
        Assert.True(SafetyCases.NegativeFigures(statistics) is null, $"{what}: {SafetyCases.NegativeFigures(statistics)}\n{statistics}");
        Assert.True(statistics.Small.BuffersInUse == live.Count, $"{what}: {live.Count} live\n{statistics}");
        DepotReservation.AssertMatches(pool, expectedExisting: null, what);

        // Every block the depot holds, rented beside the live ones: all disjoint, none handed out twice.
        var owners = new List<IMemoryOwner<byte>>(DepotReservation.Rent(pool, Size, DepotReservation.HeldIn(pool, "_small", Size)));
        owners.AddRange(live.ConvertAll(static entry => entry.Owner));
        SafetyCases.AssertDisjoint(owners, what);
        owners.ForEach(static owner => owner.Dispose());
        DepotReservation.AssertATrimFreesEverySlabAndItsRoom(pool, what);
    }

    /// <summary>
    /// Run by the trim partway, its heap's lock held: disposes again the owners returned before it (ignored), returns
    /// some live blocks (onto the top of the claimed depot), rents them back (from above the claim), then starts a rent
    /// that must carve, which grows the depot's array and waits for the trim; once grown, returns more blocks into the
    /// grown array. Returns the carving rent's thread.
    /// </summary>
    private static Thread MeanwhileOnOtherThreads(TieredMemoryPool pool, List<(IMemoryOwner<byte> Owner, long Id)> live, List<IMemoryOwner<byte>> returned, List<(IMemoryOwner<byte> Owner, long Id)> rentedMeanwhile, int length, string what)
    {
        // A caller's bug, in either mode ignored: a second dispose of the owners returned before the trim, whose blocks
        // it claimed (or let go of with their slabs) and nobody rented since.
        OnAnotherThread(() => returned.ForEach(static owner => owner.Dispose()));
        List<(IMemoryOwner<byte> Owner, long Id)> first = live.GetRange(live.Count - 64, 64);
        live.RemoveRange(live.Count - 64, 64);
        OnAnotherThread(() => first.ForEach(static entry => entry.Owner.Dispose()));
        OnAnotherThread(() =>
        {
            for (int i = 0; i < 32; i++)
            {
                IMemoryOwner<byte> owner = pool.Rent(Size);
                owner.Memory.Span.Fill((byte)(0x80 + i));
                rentedMeanwhile.Add((owner, 0x80 + i));
            }
        });

        var carver = new Thread(() =>
        {
            // 32 blocks still above the claim, then one carved: its room grows the array.
            for (int i = 0; i < 33; i++)
            {
                IMemoryOwner<byte> owner = pool.Rent(Size);
                owner.Memory.Span.Fill((byte)(0xC0 + i));
                lock (rentedMeanwhile)
                {
                    rentedMeanwhile.Add((owner, 0xC0 + i));
                }
            }
        });
        carver.Start();
        var watch = Stopwatch.StartNew();
        while (DepotReservation.DepotArrayLength(pool, "_small", Size) == length)
        {
            Assert.True(watch.Elapsed < TimeSpan.FromSeconds(10), $"{what}: the carving rent never grew the depot");
            Thread.Sleep(1);
        }

        List<(IMemoryOwner<byte> Owner, long Id)> second = live.GetRange(live.Count - 64, 64);
        live.RemoveRange(live.Count - 64, 64);
        OnAnotherThread(() => second.ForEach(static entry => entry.Owner.Dispose()));
        return carver;
    }

    private static void OnAnotherThread(Action action)
    {
        var thread = new Thread(() => action());
        thread.Start();
        Assert.True(thread.Join(TimeSpan.FromSeconds(10)), "the other thread never ended");
    }
}
