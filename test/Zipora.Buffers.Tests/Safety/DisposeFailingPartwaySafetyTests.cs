using System;
using System.Buffers;
using System.Collections.Generic;
using Microsoft.Extensions.Time.Testing;
using Zipora.Buffers.Native;

namespace Zipora.Buffers.Tests;

/// <summary>
/// A pool's dispose allocates nothing (<see cref="DisposeAtTheHeapLimitSafetyTests"/>) but for one case: a free block
/// that a caller's racing second dispose listed twice takes a place in its depot that no block reserved, and moving
/// the thread caches into a depot full to its room grows its array, which at the GC heap limit throws. Such a dispose
/// loses nothing: the tiers after it are disposed all the same, the block still rented keeps its slab, and the
/// caller's next <c>Dispose</c>, or the pool's timer at its next tick, finishes it; every mapping then goes once the
/// rented block comes back.
/// </summary>
[Collection(HeapFiller.AtTheHeapLimit)]
public sealed class DisposeFailingPartwaySafetyTests
{
    // The tier's first class: the dispose empties it first, before it lets go of the slots of any other, which would
    // be garbage a failed allocation's collection finds room in.
    private const int BlockSize = 16;
    // Enough that the depot's growth is far larger than what a full heap still finds room for (a dispose's lists of
    // about 8 KB each fitted with up to ~40 KB of headroom left): the depot grows from 32,768 places, 256 KB, to twice that.
    private const int BlocksRented = 20_000;
    private const int Attempts = 5;

    [Fact]
    public void ADisposeThatRunsOutOfMemoryPartwayIsFinishedByTheCallersRetry()
    {
        if (IsolatedProcess.RunsElsewhereAtHeapLimit(typeof(DisposeFailingPartwaySafetyTests), nameof(ADisposeThatRunsOutOfMemoryPartwayIsFinishedByTheCallersRetry)))
        {
            return;
        }

        FailPartwayThenFinish(static (pool, _) => pool.Dispose());
    }

    [Fact]
    public void ADisposeThatRunsOutOfMemoryPartwayIsFinishedByThePoolsTimer()
    {
        if (IsolatedProcess.RunsElsewhereAtHeapLimit(typeof(DisposeFailingPartwaySafetyTests), nameof(ADisposeThatRunsOutOfMemoryPartwayIsFinishedByThePoolsTimer)))
        {
            return;
        }

        FailPartwayThenFinish(static (_, time) => SafetyCases.Advance(time, SafetyCases.IdleDelay));
    }

    [Fact]
    public void ADisposeWithOnlyTheSmallObjectHeapFullThrowsNothingButOutOfMemoryAndIsFinished()
    {
        if (IsolatedProcess.RunsElsewhereAtHeapLimit(typeof(DisposeFailingPartwaySafetyTests), nameof(ADisposeWithOnlyTheSmallObjectHeapFullThrowsNothingButOutOfMemoryAndIsFinished)))
        {
            return;
        }

        // The large object heap's free space lets the depot's growth through at times, while the small one is full:
        // what the dispose reads first there (a type's statics, first read by a dispose at the limit: the thread
        // caches' empty slots failed their type for good in 6 of 8 runs) must not break it.
        Skip.Unless(ProcessMappings.CanRead, "needs Linux's /proc/self/maps");
        for (int round = 0; round < Attempts; round++)
        {
            _ = DisposeFailedPartwayAndWasFinished(static (pool, _) => pool.Dispose(), largeObjectsToo: false);
        }
    }

    private static void FailPartwayThenFinish(Action<TieredMemoryPool, FakeTimeProvider> finish)
    {
        Skip.Unless(ProcessMappings.CanRead, "needs Linux's /proc/self/maps");

        // A full heap may still find room for a large allocation: a pool whose dispose finished is checked as one and
        // the next is tried.
        for (int attempt = 1; ; attempt++)
        {
            if (DisposeFailedPartwayAndWasFinished(finish, largeObjectsToo: true))
            {
                return;
            }

            Assert.True(attempt < Attempts, $"in {Attempts} attempts the dispose never ran out of memory growing a depot with the heap full");
        }
    }

    /// <summary>
    /// A pool with a block listed past its depot's room, disposed with the heap full, then finished by
    /// <paramref name="finish"/>; false when the dispose found room and finished at once (checked all the same).
    /// </summary>
    private static bool DisposeFailedPartwayAndWasFinished(Action<TieredMemoryPool, FakeTimeProvider> finish, bool largeObjectsToo)
    {
        var allocator = new LiveMappingsAllocator();
        var time = new FakeTimeProvider();
        var pool = new TieredMemoryPool(allocator.PoolOptions(OwnerMode.Default, time));

        // Blocks of one class, all free but one; one free block listed as often as it takes to pass the depot's room.
        List<IMemoryOwner<byte>> owners = DepotReservation.Rent(pool, BlockSize, BlocksRented);
        IMemoryOwner<byte> rented = owners[0];
        SafetyCases.Stamp(rented, 1, "the block kept rented");
        NativeMemoryManager twice = DepotReservation.BlockOf(owners[1]);
        owners.GetRange(1, BlocksRented - 1).ForEach(static owner => owner.Dispose());
        int room = DepotReservation.DepotArrayLength(pool, "_small", BlockSize);
        int free = DepotReservation.ReservedFor(pool, "_small", BlockSize) - 1;
        int copies = room - free + 1;
        DepotReservation.ListAgain(pool, "_small", twice, copies);
        Assert.True(DepotReservation.DepotArrayLength(pool, "_small", BlockSize) == room, "listing the copies grew the depot: the dispose would find it room");

        OutOfMemoryException? thrown = DisposeWithTheHeapFull(pool, largeObjectsToo);
        bool failed = thrown is not null;
        if (failed)
        {
            Assert.True(DepotReservation.DepotArrayLength(pool, "_small", BlockSize) == room, $"the dispose threw, but not for the depot's growth: {thrown}");
            TestContext.Current.SendDiagnosticMessage($"the dispose ran out of memory growing a depot of {room} places for {free} free blocks and {copies} copies");
        }

        // Halfway: nothing more is handed out, and the rented block keeps its slab.
        foreach (int size in SafetyCases.OneSizePerTier)
        {
            Exception? refused = Record.Exception(() => pool.Rent(size));
            Assert.True(refused is ObjectDisposedException, $"a {size}-byte rent on the pool whose dispose {(failed ? "stopped partway" : "finished")} gave {refused?.ToString() ?? "a buffer"}: {pool.GetStatistics()}");
        }

        OwnerRange range = SafetyCases.RangeOf(rented);
        Assert.True(ProcessMappings.IsWritable(range.Start, range.Length), $"the rented block lost its slab to a dispose that stopped partway: {ProcessMappings.Describe(range.Start, range.Length)}");
        Assert.True(SafetyCases.HasStamp(rented, 1, "the block kept rented"), "the rented block's bytes changed");

        finish(pool, time);
        rented.Dispose();
        SafetyCases.AssertDrainedThreeDelaysLater(pool, time);
        allocator.AssertNoneLive("a dispose that stopped partway, finished, and its rented block back");
        TieredMemoryPoolStatistics drained = pool.GetStatistics();
        Assert.True(drained.MmapCalls == drained.MunmapCalls && drained.BytesInUse == 0 && drained.BytesAwaitingRelease == 0, $"everything given back: {drained}");
        return failed;
    }

    /// <summary>
    /// Disposes the pool on a thread of its own with the heap full (arrays of 1 MB down to 24 bytes, or with
    /// <paramref name="largeObjectsToo"/> false of 4 KB down, which leaves the large object heap's free space); what
    /// that threw.
    /// </summary>
    private static OutOfMemoryException? DisposeWithTheHeapFull(TieredMemoryPool pool, bool largeObjectsToo)
    {
        long backgroundFailures = BackgroundFailures.Count;

        // Made with room, and the dispose's call marked: out of memory before the dispose (a filler list made at the
        // limit, once in a CI run) looked like a dispose that stopped partway.
        var filler = new List<byte[]>(400_000);
        bool disposeCalled = false;
        Exception? thrown = HeapFiller.ThrownOnAFreshThread(
            withRoom: null,
            atTheLimit: () =>
            {
                disposeCalled = true;
                pool.Dispose();
            },
            filler,
            largest: largeObjectsToo ? 1 << 20 : 4096);
        filler.Clear();
        GC.Collect();

        // Whatever else ran out of memory meanwhile (the memory pressure read, a timer) was this test's doing.
        BackgroundFailureWatch.ProvokedSince(backgroundFailures);
        Assert.True(disposeCalled, $"the heap's fill threw before the dispose was called: {thrown}");
        Assert.True(thrown is null or OutOfMemoryException, $"the dispose at the limit threw {thrown}");
        return thrown as OutOfMemoryException;
    }
}
