using System;
using System.Buffers;
using System.Collections.Generic;
using System.Linq;
using System.Threading;
using Microsoft.Extensions.Time.Testing;

namespace Zipora.Buffers.Tests;

/// <summary>
/// A trim runs where managed memory runs short: memory pressure is what asks for it, and in a container at its GC heap
/// limit an allocation of the trim can throw. A slab tier's trim allocates no table of its free blocks any more (it
/// sorts them in the depots: TrimAllocationBoundTests), so what still can (a sweeper's first tables, a depot grown for
/// a block listed twice) is stood in for by a failure injected before one slab of the walk, a different one each round
/// (<see cref="SlabTrimFault"/>). A trim that throws partway gives back every block it had not let go of with its slab,
/// and a rent that throws after it mapped memory unmaps it: nothing lost, nothing leaked, wherever it failed. While the heap is full every unmap, hint and protection throws too, as any call
/// of the runtime can there (its first calls and tiering steps allocate): a mapping whose unmap never happened stays
/// listed and is unmapped at a later tick.
/// </summary>
[Collection(HeapFiller.AtTheHeapLimit)]
public sealed class FailedTrimSafetyTests
{
    // How far the sweep goes: from a heap with no room at all to one where every trim of the round's state fits. The
    // two owner modes take every other step each (the default mode from 0, ReuseOwners from one step in), so together
    // they still meet every headroom, in half the time (the sweep fills the heap once a round).
    private const int MostHeadroom = 512 * 1024;
    private const int HeadroomStep = 4096;
    private const int RegionSize = 100_000;
    private const int RegionRentedAtTheLimit = 1_000_000;

    // Free small blocks a round caches (two slabs' worth), and the slabs of the walk the rounds fail before in turn:
    // more than a round's trim walks (about two dozen), so some rounds' trims run to their end.
    private const int SmallBlocks = 1_624;
    private const int SlabsToFailBefore = 32;

    [Fact]
    public void TrimsAndRentsThatRunOutOfManagedMemoryPartwayLoseNoBlockAndLeakNoMapping()
    {
        if (IsolatedProcess.RunsElsewhereAtHeapLimit(typeof(FailedTrimSafetyTests), nameof(TrimsAndRentsThatRunOutOfManagedMemoryPartwayLoseNoBlockAndLeakNoMapping)))
        {
            return;
        }

        var filler = new List<byte[]>(400_000);
        long backgroundFailures = BackgroundFailures.Count;
        foreach (bool reuseOwners in new[] { false, true })
        {
            var time = new FakeTimeProvider();
            var mappings = new LiveMappingsAllocator();
            using var pool = new TieredMemoryPool(new TieredMemoryPoolOptions { ReuseOwners = reuseOwners, TimeProvider = time, IdleReleaseDelay = SafetyCases.IdleDelay, PageAllocator = mappings });
            Sweep sweep = SweepTheHeadroom(pool, time, filler, mappings, firstHeadroom: reuseOwners ? HeadroomStep : 0);

            // Whatever else ran out of memory meanwhile (the pools' ticks and pressure trims) was this test's doing.
            BackgroundFailureWatch.ProvokedSince(backgroundFailures);
            backgroundFailures = BackgroundFailures.Count;
            Assert.True(sweep.Unexpected is null, $"ReuseOwners {reuseOwners}: {sweep.Unexpected}");

            // Every block that went out must come back (a rent whose owner could not be made takes none:
            // OwnerAllocationHeapLimitSafetyTests). Aggressive: the heap the sweep filled again and again is given
            // back, so what follows has room under the limit.
            GC.Collect(2, GCCollectionMode.Aggressive, blocking: true, compacting: true);
            GC.WaitForPendingFinalizers();
            SafetyCases.Advance(time, SafetyCases.IdleDelay * 3);
            pool.Trim();
            SafetyCases.Advance(time, SafetyCases.IdleDelay * 3);
            TieredMemoryPoolStatistics statistics = pool.GetStatistics();
            string what = $"ReuseOwners {reuseOwners}, after {sweep.Rounds} rounds ({sweep.TrimsFailed} trims and {sweep.RentsFailed} rents out of memory, {sweep.TrimsDone} trims done)";
            TestContext.Current.TestOutputHelper?.WriteLine($"{what}; events lost for want of memory so far: {EventsOffTheCaller.Lost}");
            Assert.True(sweep.TrimsFailed > 0 && sweep.TrimsDone > 0, $"{what}: the sweep did not cross from failing trims to finished ones");
            Assert.True(statistics.BytesInUse == 0, $"{what}: {statistics.BytesInUse} bytes still counted in use with every owner disposed: a failed trim or rent lost blocks\n{statistics}");
            DepotReservation.AssertATrimFreesEverySlabAndItsRoom(pool, what);
            SafetyCases.Advance(time, SafetyCases.IdleDelay * 3);
            statistics = pool.GetStatistics();
            (nint Address, nuint Length, long MappedAt, int Tag)[] live = mappings.Live();
            Assert.True(live.Length == 0, $"{what}: {live.Length} mappings still mapped with nothing rented and everything trimmed: {string.Join(", ", live.Select(m => $"0x{m.Address:x} ({m.Length} bytes, map {m.MappedAt}, round {m.Tag}: {sweep.Outcome(m.Tag)})"))}\n{statistics}");
            Assert.True(statistics.MmapCalls == statistics.MunmapCalls, $"{what}: {statistics.MmapCalls} mappings made and {statistics.MunmapCalls} unmapped with nothing rented and everything trimmed: a mapping leaked\n{statistics}");

            // And no block was left in two places: everything rented now is disjoint.
            var owners = new List<IMemoryOwner<byte>>();
            foreach (int size in new[] { 64, 4096, 16384, RegionSize })
            {
                owners.AddRange(DepotReservation.Rent(pool, size, 200));
            }

            SafetyCases.AssertDisjoint(owners, what);
            owners.ForEach(static owner => owner.Dispose());
        }
    }

    /// <summary>
    /// On a thread of its own, which fills the heap (so its own allocation context is spent too): rounds of cached
    /// blocks in three slab classes and a region, each trimmed and rented from with a little more of the heap free
    /// than the round before.
    /// </summary>
    private static Sweep SweepTheHeadroom(TieredMemoryPool pool, FakeTimeProvider time, List<byte[]> filler, LiveMappingsAllocator mappings, int firstHeadroom)
    {
        var sweep = new Sweep();
        var worker = new Thread(() =>
        {
            try
            {
                // Every path compiled and every lazy object made while there is room.
                FillTheCaches(pool, out List<IMemoryOwner<byte>> warm);
                pool.Trim();
                warm.ForEach(static owner => owner.Dispose());
                pool.Trim();

                for (int headroom = firstHeadroom; headroom <= MostHeadroom; headroom += 2 * HeadroomStep, sweep.Rounds++)
                {
                    mappings.Tag = sweep.Rounds;
                    // The round's state, then a heap filled but for `headroom` bytes in one place: the reserve is
                    // allocated before the filler, in pieces the small object heap takes, and let go of after it;
                    // the round's garbage is collected before, so the headroom is all the room there is.
                    FillTheCaches(pool, out List<IMemoryOwner<byte>> held);

                    // Armed with room (it reflects on the pool): the round's trim fails before its n-th slab, or, past
                    // the slabs there are, runs to its end.
                    SlabTrimFault.FailAfter(pool, sweep.Rounds % SlabsToFailBefore);
                    HeapFiller.FillLeaving(filler, headroom);
                    mappings.CallsRunOutOfMemory = true;

                    // Rents that must map (the round before trimmed everything): a region, and a slab of a class.
                    IMemoryOwner<byte>? region = TryRent(pool, RegionRentedAtTheLimit, sweep);
                    IMemoryOwner<byte>? small = TryRent(pool, 300, sweep);
                    sweep.Outcomes[sweep.Rounds] = (region is null ? 1 : 0) | (small is null ? 2 : 0);
                    try
                    {
                        pool.Trim();
                        sweep.TrimsDone++;
                    }
                    catch (OutOfMemoryException)
                    {
                        sweep.TrimsFailed++;
                        sweep.Outcomes[sweep.Rounds] |= 4;
                    }

                    // Let go of in place: a method this long runs unoptimized for a while, where a local stays alive
                    // to the method's end; the list itself is kept for the next round.
                    mappings.CallsRunOutOfMemory = false;
                    filler.Clear();
                    GC.Collect();
                    SlabTrimFault.Disarm(pool);
                    held.ForEach(static owner => owner.Dispose());
                    region?.Dispose();
                    small?.Dispose();
                    pool.Trim();

                    // A delay a round, so the slabs and regions each round lets go of are unmapped as they would be.
                    SafetyCases.Advance(time, SafetyCases.IdleDelay);
                }
            }
            catch (Exception error)
            {
                mappings.CallsRunOutOfMemory = false;
                sweep.Unexpected = error;
            }
        });
        worker.Start();
        worker.Join();
        return sweep;
    }

    /// <summary>
    /// Rents and returns blocks of three slab classes and a region, keeping one of each slab class rented (its slab
    /// stays, partly free).
    /// </summary>
    private static void FillTheCaches(TieredMemoryPool pool, out List<IMemoryOwner<byte>> held)
    {
        held = [pool.Rent(64), pool.Rent(4096), pool.Rent(16384)];
        foreach ((int size, int count) in new[] { (64, SmallBlocks), (4096, 300), (16384, 60), (RegionSize, 2) })
        {
            List<IMemoryOwner<byte>> burst = DepotReservation.Rent(pool, size, count);
            burst.ForEach(static owner => owner.Dispose());
        }
    }

    private static IMemoryOwner<byte>? TryRent(TieredMemoryPool pool, int size, Sweep sweep)
    {
        try
        {
            return pool.Rent(size);
        }
        catch (OutOfMemoryException)
        {
            sweep.RentsFailed++;
            return null;
        }
    }

    private sealed class Sweep
    {
        public int Rounds;
        public int TrimsDone;
        public int TrimsFailed;
        public int RentsFailed;
        public Exception? Unexpected;

        // What went out of memory in each round: 1 the region's rent, 2 the small rent, 4 the trim.
        public readonly int[] Outcomes = new int[(MostHeadroom / HeadroomStep) + 2];

        public string Outcome(int round) => round < Outcomes.Length ? $"region {((Outcomes[round] & 1) != 0 ? "refused" : "rented")}, small {((Outcomes[round] & 2) != 0 ? "refused" : "rented")}, trim {((Outcomes[round] & 4) != 0 ? "failed" : "done")}" : "warm-up";
    }
}
