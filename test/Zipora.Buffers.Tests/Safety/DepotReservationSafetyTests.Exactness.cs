using System;
using System.Buffers;
using System.Collections.Generic;
using System.Linq;
using System.Threading;
using Microsoft.Extensions.Time.Testing;

namespace Zipora.Buffers.Tests;

/// <summary>The reservation stays exact, and no block goes to two owners, whatever makes and frees blocks.</summary>
public sealed partial class DepotReservationSafetyTests
{
    [Fact]
    public void ManyThreadsCarvingAtOnceHandOutDistinctBlocksAndReserveExactlyThoseMade()
    {
        using var pool = new TieredMemoryPool(new TieredMemoryPoolOptions { IdleReleaseDelay = Timeout.InfiniteTimeSpan });
        const int Threads = 8;
        const int PerThread = 600;
        int[] sizes = [16, 48, 200, 1000, 1024, 3000, 8192, 16384];
        var rented = new List<IMemoryOwner<byte>>[Threads];
        using var start = new Barrier(Threads);
        Thread[] threads = [.. Enumerable.Range(0, Threads).Select(t => new Thread(() =>
        {
            var mine = new List<IMemoryOwner<byte>>(PerThread);
            start.SignalAndWait();
            for (int i = 0; i < PerThread; i++)
            {
                mine.Add(pool.Rent(sizes[(i + t) % sizes.Length]));
            }

            rented[t] = mine;
        }))];
        Array.ForEach(threads, static thread => thread.Start());
        Array.ForEach(threads, static thread => thread.Join());

        List<IMemoryOwner<byte>> all = [.. rented.SelectMany(static list => list)];
        SafetyCases.AssertDisjoint(all, "buffers rented by eight threads carving at once");

        // A fresh pool with nothing returned: every block rented was carved, and reserved once.
        DepotReservation.AssertMatches(pool, expectedExisting: all.Count, "after eight threads carved");

        // Returned on other threads than their renters', which then exit: their caches go to the depots.
        Thread[] returners = [.. Enumerable.Range(0, Threads).Select(t => new Thread(() =>
        {
            foreach (IMemoryOwner<byte> owner in rented[(t + 1) % Threads])
            {
                owner.Dispose();
            }
        }))];
        Array.ForEach(returners, static thread => thread.Start());
        Array.ForEach(returners, static thread => thread.Join());
        DepotReservation.AssertMatches(pool, expectedExisting: all.Count, "after the returns");

        DepotReservation.AssertATrimFreesEverySlabAndItsRoom(pool, "after a trim freed every slab");
    }

    [Fact]
    public void RentsRefusedAtTheByteCapLeaveTheReservationAtTheBlocksMade()
    {
        using var pool = new TieredMemoryPool(new TieredMemoryPoolOptions { MaxBytesInUse = 1024 * 1024, IdleReleaseDelay = Timeout.InfiniteTimeSpan });
        var owners = new List<IMemoryOwner<byte>>();
        int refused = 0;
        for (int i = 0; i < 2_000 && refused < 500; i++)
        {
            try
            {
                owners.Add(pool.Rent(4096));
            }
            catch (InsufficientMemoryException)
            {
                refused++;
            }
        }

        Assert.True(refused > 0, $"the 1 MB cap never refused a rent ({owners.Count} rented)");
        DepotReservation.AssertMatches(pool, expectedExisting: owners.Count, $"after {refused} refused rents");
        int longestBefore = DepotReservation.DepotArrayLength(pool, "_medium", 4096);

        // More refusals: each reserves then gives back, and must not grow the depot either.
        for (int i = 0; i < 1_000; i++)
        {
            try
            {
                owners.Add(pool.Rent(4096));
            }
            catch (InsufficientMemoryException)
            {
                refused++;
            }
        }

        DepotReservation.AssertMatches(pool, expectedExisting: owners.Count, $"after {refused} refused rents");
        Assert.Equal(longestBefore, DepotReservation.DepotArrayLength(pool, "_medium", 4096));
        owners.ForEach(static owner => owner.Dispose());
        pool.Trim();
        DepotReservation.AssertMatches(pool, expectedExisting: 0, "after a trim freed every slab");
    }

    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public void ReturnsAfterThePoolWasDisposedBringTheReservationToZeroAndNeverBelow(bool reuseOwners)
    {
        var pool = new TieredMemoryPool(new TieredMemoryPoolOptions { ReuseOwners = reuseOwners, IdleReleaseDelay = Timeout.InfiniteTimeSpan });
        List<IMemoryOwner<byte>> small = DepotReservation.Rent(pool, 64, 2_000);
        List<IMemoryOwner<byte>> medium = DepotReservation.Rent(pool, 4096, 500);

        // Half back before the disposal, on this thread and on another that then exits.
        small.GetRange(0, 500).ForEach(static owner => owner.Dispose());
        var other = new Thread(() => small.GetRange(500, 500).ForEach(static owner => owner.Dispose()));
        other.Start();
        other.Join();
        medium.GetRange(0, 250).ForEach(static owner => owner.Dispose());
        int existing = 2_500;
        DepotReservation.AssertMatches(pool, expectedExisting: existing, "before the disposal");

        pool.Dispose();
        DepotReservation.AssertNeverNegative(pool, "right after the disposal");

        // The rest come back late, one slab emptying at a time; a second dispose of each is a no-op.
        foreach (IMemoryOwner<byte> owner in small.GetRange(1_000, 1_000).Concat(medium.GetRange(250, 250)))
        {
            owner.Dispose();
            owner.Dispose();
            DepotReservation.AssertNeverNegative(pool, "during the late returns");
        }

        DepotReservation.AssertMatches(pool, expectedExisting: 0, "once every block came back to the disposed pool");
    }

    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public void BlocksReclaimedThroughTheQuarantineKeepTheirRoomAndGiveItBackWithTheirSlab(bool reuseOwners)
    {
        var time = new FakeTimeProvider();
        using var pool = new TieredMemoryPool(new TieredMemoryPoolOptions { ReuseOwners = reuseOwners, TimeProvider = time, IdleReleaseDelay = SafetyCases.IdleDelay });
        List<IMemoryOwner<byte>> kept = DepotReservation.Rent(pool, 64, 300);
        kept.AddRange(DepotReservation.Rent(pool, 4096, 100));
        SafetyCases.Leak(pool, 64, 200);
        SafetyCases.Leak(pool, 4096, 50);
        SafetyCases.CollectEverything();
        Assert.Equal(250, pool.GetStatistics().LeaksReclaimed);
        DepotReservation.AssertMatches(pool, expectedExisting: 650, "with 250 leaked blocks in quarantine");

        // A trim in quarantine frees no slab with a quarantined block: their room stays reserved.
        kept.ForEach(static owner => owner.Dispose());
        pool.Trim();
        DepotReservation.AssertNeverNegative(pool, "after a trim with blocks in quarantine");

        // The quarantine lets them go after a delay; then the returns allocate nothing and a trim frees every slab.
        SafetyCases.Advance(time, SafetyCases.IdleDelay * 3);
        Assert.Equal(0, pool.GetStatistics().BytesQuarantined);
        List<IMemoryOwner<byte>> again = DepotReservation.Rent(pool, 64, 650);
        SafetyCases.AssertDisjoint(again, "small buffers rented after the quarantine let go");
        Assert.Equal(0, DepotReservation.BytesAllocatedReturning(again));
        DepotReservation.AssertATrimFreesEverySlabAndItsRoom(pool, "after the quarantined blocks came back and a trim freed every slab");
    }

    [Fact]
    public void DisposingReusedOwnersTwiceNeitherHandsABlockOutTwiceNorGrowsTheDepot()
    {
        using var pool = new TieredMemoryPool(new TieredMemoryPoolOptions { ReuseOwners = true, ThreadCacheMaxBuffers = 0, IdleReleaseDelay = Timeout.InfiniteTimeSpan });
        List<IMemoryOwner<byte>> owners = DepotReservation.Rent(pool, 4096, 200);
        int length = DepotReservation.DepotArrayLength(pool, "_medium", 4096);
        long allocated = ThreadAllocations.During(() =>
        {
            foreach (IMemoryOwner<byte> owner in owners)
            {
                owner.Dispose();
                owner.Dispose();
            }
        });
        Assert.Equal(0, allocated);
        Assert.Equal(length, DepotReservation.DepotArrayLength(pool, "_medium", 4096));
        List<IMemoryOwner<byte>> again = DepotReservation.Rent(pool, 4096, 400);
        SafetyCases.AssertDisjoint(again, "buffers rented after every owner was disposed twice");
        DepotReservation.AssertMatches(pool, expectedExisting: 400, "after the double disposes");
        again.ForEach(static owner => owner.Dispose());
    }

    [Fact]
    public void IdleClassesGivenBackOneByOneGiveBackTheirRoomAndKeepTheRoomOfBlocksStillRented()
    {
        // Adaptive caches: a class idle for a delay is trimmed alone while another class's blocks stay rented.
        var time = new FakeTimeProvider();
        using var pool = new TieredMemoryPool(new TieredMemoryPoolOptions { AdaptiveCaches = true, TimeProvider = time, IdleReleaseDelay = SafetyCases.IdleDelay });
        List<IMemoryOwner<byte>> idle = DepotReservation.Rent(pool, 64, 2_000);
        List<IMemoryOwner<byte>> held = DepotReservation.Rent(pool, 4096, 300);
        foreach (IMemoryOwner<byte> owner in idle)
        {
            owner.Dispose();
        }

        SafetyCases.Advance(time, SafetyCases.IdleDelay * 3);
        DepotReservation.AssertNeverNegative(pool, "after the idle class was given back");
        Assert.Equal(0, pool.GetStatistics().Small.BytesRetained);
        Assert.Equal(0, DepotReservation.ReservedIn(pool, "_small"));
        Assert.Equal(300, DepotReservation.ReservedIn(pool, "_medium"));

        // The held blocks are still theirs alone, and their returns find room.
        List<IMemoryOwner<byte>> more = DepotReservation.Rent(pool, 4096, 300);
        SafetyCases.AssertDisjoint(held.Concat(more), "medium buffers held through the idle trims and rented after");
        long allocated = ThreadAllocations.During(() =>
        {
            foreach (IMemoryOwner<byte> owner in held.Concat(more))
            {
                owner.Dispose();
            }
        });
        Assert.True(allocated < 1_024, $"returning 600 medium buffers allocated {allocated} bytes (beyond the enumerator)");
        SafetyCases.Advance(time, SafetyCases.IdleDelay * 3);
        pool.Trim();
        DepotReservation.AssertMatches(pool, expectedExisting: 0, "once every class was idle and trimmed");
    }

    [Fact]
    public void TrimsRacingRentsAndReturnsOnManyThreadsLeaveNoDriftAndNoSharedBlock()
    {
        using var pool = new TieredMemoryPool(new TieredMemoryPoolOptions { ThreadCacheMaxBuffers = 8, IdleReleaseDelay = Timeout.InfiniteTimeSpan });
        const int Threads = 6;
        int[] sizes = [32, 512, 2048, 8192];
        using var stop = new CancellationTokenSource();
        string? failure = null;
        Thread[] workers = [.. Enumerable.Range(0, Threads).Select(t => new Thread(() =>
        {
            var random = new Random(t);
            var held = new List<(IMemoryOwner<byte> Owner, long Stamp)>();
            long stamp = (long)t << 40;
            try
            {
                while (!stop.IsCancellationRequested)
                {
                    int burst = random.Next(1, 300);
                    for (int i = 0; i < burst; i++)
                    {
                        IMemoryOwner<byte> owner = pool.Rent(sizes[random.Next(sizes.Length)]);
                        SafetyCases.Stamp(owner, ++stamp, "a buffer just rented");
                        held.Add((owner, stamp));
                    }

                    foreach ((IMemoryOwner<byte> owner, long mine) in held)
                    {
                        if (!SafetyCases.HasStamp(owner, mine, "a held buffer"))
                        {
                            failure ??= $"a buffer held by thread {t} was written by someone else (two owners of one block)";
                        }

                        owner.Dispose();
                    }

                    held.Clear();
                }
            }
            catch (Exception error)
            {
                failure ??= error.ToString();
            }
        }))];
        Array.ForEach(workers, static thread => thread.Start());
        for (int i = 0; i < 300 && failure is null; i++)
        {
            pool.Trim();
            DepotReservation.AssertNeverNegative(pool, $"during trim {i}");
            Thread.Sleep(1);
        }

        stop.Cancel();
        Array.ForEach(workers, static thread => thread.Join());
        Assert.Null(failure);

        pool.Trim();
        TieredMemoryPoolStatistics statistics = pool.GetStatistics();
        Assert.Equal(0, statistics.Small.BytesRetained + statistics.Medium.BytesRetained);
        DepotReservation.AssertMatches(pool, expectedExisting: 0, "after the storm and a last trim");
    }

    [Fact]
    public void CachedRegionsPastTheIdleDelayAreAllUnmappedEventuallyAndNoneEarlyWhileOtherThreadsChurn()
    {
        var time = new FakeTimeProvider();
        using var pool = new TieredMemoryPool(new TieredMemoryPoolOptions { TimeProvider = time, IdleReleaseDelay = SafetyCases.IdleDelay, RegionCacheMaxCount = 256 });

        // Many more cached regions than the lists' first room.
        List<IMemoryOwner<byte>> owners = DepotReservation.Rent(pool, 100_000, 200);
        owners.ForEach(static owner => owner.Dispose());
        long cached = pool.GetStatistics().Large.BytesRetained;
        Assert.True(cached >= 200L * 100_000, $"200 returned regions of 100 KB left {cached} bytes cached");

        // Three quarters of a delay: nothing may go yet (the page drop due at the next tick may run).
        SafetyCases.Advance(time, SafetyCases.IdleDelay * 0.75);
        Assert.Equal(cached, pool.GetStatistics().Large.BytesRetained);

        // Other threads churn regions while the clock ticks, returning some into the cache between the lists' room
        // and the gate.
        using var stop = new CancellationTokenSource();
        Thread[] churners = [.. Enumerable.Range(0, 4).Select(_ => new Thread(() =>
        {
            while (!stop.IsCancellationRequested)
            {
                List<IMemoryOwner<byte>> burst = DepotReservation.Rent(pool, 100_000, 24);
                burst.ForEach(static owner => owner.Dispose());
            }
        }))];
        Array.ForEach(churners, static thread => thread.Start());
        try
        {
            SafetyCases.Advance(time, SafetyCases.IdleDelay * 2);
        }
        finally
        {
            stop.Cancel();
            Array.ForEach(churners, static thread => thread.Join());
        }

        // Slots of the churning (now exited) threads and the cache: all gone within a few delays.
        SafetyCases.Advance(time, SafetyCases.IdleDelay * 4);
        Assert.Equal(0, pool.GetStatistics().Large.BytesRetained);
    }
}
