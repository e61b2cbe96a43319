using System;
using System.Buffers;
using System.Collections.Generic;
using System.Diagnostics;
using System.Linq;
using System.Reflection;
using System.Runtime.CompilerServices;
using System.Threading;
using Microsoft.Extensions.Time.Testing;

namespace Zipora.Buffers.Tests;

/// <summary>
/// Attack round 12 on the depots' reservation (commit c6e36ec): each slab block is reserved a place in its class's
/// depot before it is carved and the place is given back with its slab, so a return never grows a depot, never
/// allocates. These tests look for returns that still allocate (other cache options, other threads), for a
/// reservation that drifts or goes below zero (threads carving at once, refused rents, late returns after disposal,
/// leaked blocks reclaimed through the quarantine, double disposes), and for a block handed to two owners.
/// </summary>
public sealed class AttackRound12Tests
{
    private const BindingFlags Private = BindingFlags.NonPublic | BindingFlags.Instance;

    public static TheoryData<int, int, bool, OwnerMode> SizesCacheOptionsAndModes
    {
        get
        {
            var cases = new TheoryData<int, int, bool, OwnerMode>();
            foreach (int size in new[] { 16, 1000, 1024, 4096, 16384 })
            {
                foreach (int maxBuffers in new[] { 0, 1 })
                {
                    foreach (bool adaptive in new[] { false, true })
                    {
                        foreach (OwnerMode mode in new[] { OwnerMode.Default, OwnerMode.ReuseOwners, OwnerMode.PinnedArrays })
                        {
                            cases.Add(size, maxBuffers, adaptive, mode);
                        }
                    }
                }
            }

            return cases;
        }
    }

    public static TheoryData<int, bool> SlabSizesAndModes => new()
    {
        { 64, false },
        { 64, true },
        { 4096, false },
        { 4096, true },
    };

    [Theory]
    [MemberData(nameof(SizesCacheOptionsAndModes))]
    public void ReturningBurstsAllocatesNothingWhateverTheThreadCacheOptions(int size, int maxBuffers, bool adaptive, OwnerMode mode)
    {
        // ThreadCacheMaxBuffers = 0 sends every return to the depot; 1 overflows the stack at every second return.
        using var pool = new TieredMemoryPool(new TieredMemoryPoolOptions
        {
            ThreadCacheMaxBuffers = maxBuffers,
            AdaptiveCaches = adaptive,
            ReuseOwners = mode == OwnerMode.ReuseOwners,
            UsePinnedArrays = mode == OwnerMode.PinnedArrays,
            IdleReleaseDelay = Timeout.InfiniteTimeSpan,
        });

        // Growing bursts: each carves blocks past the last one's, whose returns must find room reserved too.
        foreach (int count in new[] { 100, 1_000, 3_000 })
        {
            List<IMemoryOwner<byte>> owners = Rent(pool, size, count);
            long before = GC.GetAllocatedBytesForCurrentThread();
            foreach (IMemoryOwner<byte> owner in owners)
            {
                owner.Dispose();
            }

            long allocated = GC.GetAllocatedBytesForCurrentThread() - before;
            Assert.True(allocated == 0, $"returning {count} buffers of {size} bytes (ThreadCacheMaxBuffers {maxBuffers}, adaptive {adaptive}, {mode}) allocated {allocated} bytes");
        }

        AssertReservationMatches(pool, expectedExisting: null, "after the bursts");
    }

    [Theory]
    [MemberData(nameof(SlabSizesAndModes))]
    public void ReturnsOnAnotherThreadThatAlreadyUsedThePoolAllocateNothing(int size, bool reuseOwners)
    {
        using var pool = new TieredMemoryPool(new TieredMemoryPoolOptions { ReuseOwners = reuseOwners, IdleReleaseDelay = Timeout.InfiniteTimeSpan });
        List<IMemoryOwner<byte>> owners = Rent(pool, size, 3_000);
        long allocated = -1;
        var returner = new Thread(() =>
        {
            // The returning thread has its caches already: only the returns are measured.
            pool.Rent(size).Dispose();
            long before = GC.GetAllocatedBytesForCurrentThread();
            foreach (IMemoryOwner<byte> owner in owners)
            {
                owner.Dispose();
            }

            allocated = GC.GetAllocatedBytesForCurrentThread() - before;
        });
        returner.Start();
        returner.Join();
        Assert.True(allocated == 0, $"returning 3000 buffers of {size} bytes on another thread allocated {allocated} bytes");
    }

    [Theory]
    [MemberData(nameof(SlabSizesAndModes))]
    public void AReturnOnAThreadThatNeverRentedAllocatesNothing(int size, bool reuseOwners)
    {
        // A Pipe's reader returns what its writer rented: its first return may be its first touch of the pool. The
        // thread first uses another pool, so its thread-statics exist; only this pool's cache is new to it.
        using var pool = new TieredMemoryPool(new TieredMemoryPoolOptions { ReuseOwners = reuseOwners, IdleReleaseDelay = Timeout.InfiniteTimeSpan });
        using var other = new TieredMemoryPool(new TieredMemoryPoolOptions { ReuseOwners = reuseOwners, IdleReleaseDelay = Timeout.InfiniteTimeSpan });
        List<IMemoryOwner<byte>> owners = Rent(pool, size, 64);

        // A first fresh thread runs the path once (its code compiled), a second is measured.
        _ = ReturnOnAFreshThread(other, size, owners.GetRange(0, 32));
        (long first, long second) = ReturnOnAFreshThread(other, size, owners.GetRange(32, 32));
        Assert.True(second == 0, $"the second return on the thread allocated {second} bytes");
        Assert.True(first == 0, $"the first return of a {size}-byte buffer on a thread that never rented from the pool allocated {first} bytes (the thread's cache is made on the return: an OutOfMemoryException there loses the block, whose state is already 'returned', so neither a retry nor its finalizer gives it back)");
    }

    [Fact]
    public void AFreshThreadsReturnAtTheGcHeapLimitStillGivesTheBlockBack()
    {
        // In a process of its own under a GC heap hard limit (a container's), filled to the limit.
        if (!IsolatedProcess.IsChildFor(typeof(AttackRound12Tests), nameof(AFreshThreadsReturnAtTheGcHeapLimitStillGivesTheBlockBack)))
        {
            string name = $"{typeof(AttackRound12Tests).FullName}.{nameof(AFreshThreadsReturnAtTheGcHeapLimitStillGivesTheBlockBack)}";
            var start = new ProcessStartInfo("dotnet")
            {
                ArgumentList = { typeof(AttackRound12Tests).Assembly.Location, "-method", name, "-parallel", "none", "-noColor" },
            };
            start.Environment["ZIPORA_TESTS_ISOLATED"] = name;
            start.Environment["DOTNET_GCHeapHardLimit"] = "0x10000000";
            start.Environment["DOTNET_gcServer"] = "0";
            (int exitCode, string output) = ChildProcess.Run(start, TimeSpan.FromMinutes(3));
            Assert.True(exitCode == 0 && output.Contains("Total: 1, Errors: 0, Failed: 0", StringComparison.Ordinal), $"in its own process (exit code {exitCode}):\n{output}");
            return;
        }

        using var pool = new TieredMemoryPool(new TieredMemoryPoolOptions { IdleReleaseDelay = Timeout.InfiniteTimeSpan });
        IMemoryOwner<byte> owner = pool.Rent(64);

        // The path compiled on another fresh thread first, so only the heap limit differs.
        IMemoryOwner<byte> warm = pool.Rent(64);
        var warming = new Thread(warm.Dispose);
        warming.Start();
        warming.Join();

        // The returning thread fills the heap itself, so its own allocation context is spent too.
        long rentsBefore = pool.GetStatistics().Small.Rents;
        long backgroundFailures = BackgroundFailures.Count;
        Exception? failed = null;
        string? fillFailed = null;
        int held = 0;
        var returner = new Thread(() =>
        {
            List<byte[]>? filler = null;
            try
            {
                filler = FillTheHeap();
                held = filler.Count;
            }
            catch (OutOfMemoryException error)
            {
                fillFailed = error.StackTrace;
                return;
            }

            try
            {
                owner.Dispose();
            }
            catch (OutOfMemoryException error)
            {
                failed = error;
            }

            GC.KeepAlive(filler);
        });
        returner.Start();
        returner.Join();
        GC.Collect();

        // Whatever else ran out of memory meanwhile (the pools' timers) was this test's doing.
        BackgroundFailureWatch.Provoked(BackgroundFailures.Count - backgroundFailures);
        Assert.True(fillFailed is null, $"the test itself ran out of memory: {fillFailed}");
        TierStatistics small = pool.GetStatistics().Small;
        owner.Dispose();
        pool.Trim();
        TierStatistics afterTrim = pool.GetStatistics().Small;
        Assert.True(failed is null, $"the return on a fresh thread at the heap limit (filled with {held} arrays) threw {failed?.GetType().Name}: its block is lost: after it the small tier counts {small.BuffersInUse} buffer(s) in use with every owner disposed ({rentsBefore} rents), a second dispose does nothing, and a trim leaves {afterTrim.BytesRetained} bytes retained and {afterTrim.BuffersInUse} in use; thrown at: {failed?.StackTrace}");
    }

    [MethodImpl(MethodImplOptions.NoInlining)]
    private static List<byte[]> FillTheHeap()
    {
        var filler = new List<byte[]>(400_000);
        foreach (int size in new[] { 1 << 20, 64 * 1024, 4096, 512, 64, 24 })
        {
            try
            {
                while (filler.Count < filler.Capacity)
                {
                    filler.Add(new byte[size]);
                }
            }
            catch (OutOfMemoryException)
            {
            }
        }

        return filler;
    }

    [Theory]
    [InlineData(0)]
    [InlineData(1)]
    public void ReturnsThatMeetATrimOnTheDepotsLockAllocateNothing(int maxBuffers)
    {
        // A trim under memory pressure (MemoryPressureWatcher, on a pool thread) can meet a return on a depot's lock,
        // which the return takes with its thread's cache marked busy (ThreadCacheMaxBuffers 0: every return; 1: every
        // overflow). A contended System.Threading.Lock makes its wait event on the first wait.
        using var pool = new TieredMemoryPool(new TieredMemoryPoolOptions { ThreadCacheMaxBuffers = maxBuffers, IdleReleaseDelay = Timeout.InfiniteTimeSpan });
        using var stop = new CancellationTokenSource();
        var trimmer = new Thread(() =>
        {
            while (!stop.IsCancellationRequested)
            {
                pool.Trim();
            }
        });
        trimmer.Start();
        long worst = 0;
        int round = 0;
        try
        {
            var watch = Stopwatch.StartNew();
            for (; watch.Elapsed < TimeSpan.FromSeconds(3) && worst == 0; round++)
            {
                List<IMemoryOwner<byte>> owners = Rent(pool, 64, 500);
                long before = GC.GetAllocatedBytesForCurrentThread();
                foreach (IMemoryOwner<byte> owner in owners)
                {
                    owner.Dispose();
                }

                worst = Math.Max(worst, GC.GetAllocatedBytesForCurrentThread() - before);
            }
        }
        finally
        {
            stop.Cancel();
            trimmer.Join();
        }

        Assert.True(worst == 0, $"returning 500 buffers of 64 bytes while another thread trims allocated {worst} bytes (round {round}; ThreadCacheMaxBuffers {maxBuffers}): an OutOfMemoryException there would leave the thread's cache marked busy, and every later trim waiting for it");
    }

    [Fact]
    public void TwoThreadsReturningIntoOneDepotAtOnceAllocateNothing()
    {
        // ThreadCacheMaxBuffers 0: each return takes the class's depot lock with its thread's cache marked busy
        // (ReleaseSlow), so two threads returning at once contend there with both caches marked.
        using var pool = new TieredMemoryPool(new TieredMemoryPoolOptions { ThreadCacheMaxBuffers = 0, IdleReleaseDelay = Timeout.InfiniteTimeSpan });
        const int Threads = 4;
        long[] worst = new long[Threads];
        using var start = new Barrier(Threads);
        Thread[] threads = [.. Enumerable.Range(0, Threads).Select(t => new Thread(() =>
        {
            for (int round = 0; round < 200; round++)
            {
                List<IMemoryOwner<byte>> owners = Rent(pool, 64, 200);
                start.SignalAndWait();
                long before = GC.GetAllocatedBytesForCurrentThread();
                foreach (IMemoryOwner<byte> owner in owners)
                {
                    owner.Dispose();
                }

                worst[t] = Math.Max(worst[t], GC.GetAllocatedBytesForCurrentThread() - before);
            }
        }))];
        Array.ForEach(threads, static thread => thread.Start());
        Array.ForEach(threads, static thread => thread.Join());
        Assert.True(worst.All(static bytes => bytes == 0), $"returns racing on one depot allocated [{string.Join(", ", worst)}] bytes on the returning threads, inside ReleaseSlow with the cache marked busy (the depot's contended System.Threading.Lock makes its wait event): an OutOfMemoryException there leaves the cache marked, and the next trim spins for ever");
    }

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
        AssertReservationMatches(pool, expectedExisting: all.Count, "after eight threads carved");

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
        AssertReservationMatches(pool, expectedExisting: all.Count, "after the returns");

        pool.Trim();
        TieredMemoryPoolStatistics statistics = pool.GetStatistics();
        Assert.Equal(0, statistics.Small.BytesRetained + statistics.Medium.BytesRetained);
        AssertReservationMatches(pool, expectedExisting: 0, "after a trim freed every slab");
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
        AssertReservationMatches(pool, expectedExisting: owners.Count, $"after {refused} refused rents");
        int longestBefore = DepotArrayLength(pool, "_medium", 4096);

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

        AssertReservationMatches(pool, expectedExisting: owners.Count, $"after {refused} refused rents");
        Assert.Equal(longestBefore, DepotArrayLength(pool, "_medium", 4096));
        owners.ForEach(static owner => owner.Dispose());
        pool.Trim();
        AssertReservationMatches(pool, expectedExisting: 0, "after a trim freed every slab");
    }

    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public void ReturnsAfterThePoolWasDisposedBringTheReservationToZeroAndNeverBelow(bool reuseOwners)
    {
        var pool = new TieredMemoryPool(new TieredMemoryPoolOptions { ReuseOwners = reuseOwners, IdleReleaseDelay = Timeout.InfiniteTimeSpan });
        List<IMemoryOwner<byte>> small = Rent(pool, 64, 2_000);
        List<IMemoryOwner<byte>> medium = Rent(pool, 4096, 500);

        // Half back before the disposal, on this thread and on another that then exits.
        small.GetRange(0, 500).ForEach(static owner => owner.Dispose());
        var other = new Thread(() => small.GetRange(500, 500).ForEach(static owner => owner.Dispose()));
        other.Start();
        other.Join();
        medium.GetRange(0, 250).ForEach(static owner => owner.Dispose());
        int existing = 2_500;
        AssertReservationMatches(pool, expectedExisting: existing, "before the disposal");

        pool.Dispose();
        AssertReservationNeverNegative(pool, "right after the disposal");

        // The rest come back late, one slab emptying at a time; a second dispose of each is a no-op.
        foreach (IMemoryOwner<byte> owner in small.GetRange(1_000, 1_000).Concat(medium.GetRange(250, 250)))
        {
            owner.Dispose();
            owner.Dispose();
            AssertReservationNeverNegative(pool, "during the late returns");
        }

        AssertReservationMatches(pool, expectedExisting: 0, "once every block came back to the disposed pool");
    }

    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public void BlocksReclaimedThroughTheQuarantineKeepTheirRoomAndGiveItBackWithTheirSlab(bool reuseOwners)
    {
        var time = new FakeTimeProvider();
        using var pool = new TieredMemoryPool(new TieredMemoryPoolOptions { ReuseOwners = reuseOwners, TimeProvider = time, IdleReleaseDelay = SafetyCases.IdleDelay });
        List<IMemoryOwner<byte>> kept = Rent(pool, 64, 300);
        kept.AddRange(Rent(pool, 4096, 100));
        SafetyCases.Leak(pool, 64, 200);
        SafetyCases.Leak(pool, 4096, 50);
        SafetyCases.CollectEverything();
        Assert.Equal(250, pool.GetStatistics().LeaksReclaimed);
        AssertReservationMatches(pool, expectedExisting: 650, "with 250 leaked blocks in quarantine");

        // A trim in quarantine frees no slab with a quarantined block: their room stays reserved.
        kept.ForEach(static owner => owner.Dispose());
        pool.Trim();
        AssertReservationNeverNegative(pool, "after a trim with blocks in quarantine");

        // The quarantine lets them go after a delay; then the returns allocate nothing and a trim frees every slab.
        SafetyCases.Advance(time, SafetyCases.IdleDelay * 3);
        Assert.Equal(0, pool.GetStatistics().BytesQuarantined);
        List<IMemoryOwner<byte>> again = Rent(pool, 64, 650);
        SafetyCases.AssertDisjoint(again, "small buffers rented after the quarantine let go");
        long before = GC.GetAllocatedBytesForCurrentThread();
        foreach (IMemoryOwner<byte> owner in again)
        {
            owner.Dispose();
        }

        Assert.Equal(0, GC.GetAllocatedBytesForCurrentThread() - before);
        pool.Trim();
        TieredMemoryPoolStatistics statistics = pool.GetStatistics();
        Assert.Equal(0, statistics.Small.BytesRetained + statistics.Medium.BytesRetained);
        AssertReservationMatches(pool, expectedExisting: 0, "after the quarantined blocks came back and a trim freed every slab");
    }

    [Fact]
    public void DisposingReusedOwnersTwiceNeitherHandsABlockOutTwiceNorGrowsTheDepot()
    {
        using var pool = new TieredMemoryPool(new TieredMemoryPoolOptions { ReuseOwners = true, ThreadCacheMaxBuffers = 0, IdleReleaseDelay = Timeout.InfiniteTimeSpan });
        List<IMemoryOwner<byte>> owners = Rent(pool, 4096, 200);
        int length = DepotArrayLength(pool, "_medium", 4096);
        long before = GC.GetAllocatedBytesForCurrentThread();
        foreach (IMemoryOwner<byte> owner in owners)
        {
            owner.Dispose();
            owner.Dispose();
        }

        Assert.Equal(0, GC.GetAllocatedBytesForCurrentThread() - before);
        Assert.Equal(length, DepotArrayLength(pool, "_medium", 4096));
        List<IMemoryOwner<byte>> again = Rent(pool, 4096, 400);
        SafetyCases.AssertDisjoint(again, "buffers rented after every owner was disposed twice");
        AssertReservationMatches(pool, expectedExisting: 400, "after the double disposes");
        again.ForEach(static owner => owner.Dispose());
    }

    [Fact]
    public void IdleClassesGivenBackOneByOneGiveBackTheirRoomAndKeepTheRoomOfBlocksStillRented()
    {
        // Adaptive caches: a class idle for a delay is trimmed alone while another class's blocks stay rented.
        var time = new FakeTimeProvider();
        using var pool = new TieredMemoryPool(new TieredMemoryPoolOptions { AdaptiveCaches = true, TimeProvider = time, IdleReleaseDelay = SafetyCases.IdleDelay });
        List<IMemoryOwner<byte>> idle = Rent(pool, 64, 2_000);
        List<IMemoryOwner<byte>> held = Rent(pool, 4096, 300);
        foreach (IMemoryOwner<byte> owner in idle)
        {
            owner.Dispose();
        }

        SafetyCases.Advance(time, SafetyCases.IdleDelay * 3);
        AssertReservationNeverNegative(pool, "after the idle class was given back");
        Assert.Equal(0, pool.GetStatistics().Small.BytesRetained);
        Assert.Equal(0, ReservedIn(pool, "_small"));
        Assert.Equal(300, ReservedIn(pool, "_medium"));

        // The held blocks are still theirs alone, and their returns find room.
        List<IMemoryOwner<byte>> more = Rent(pool, 4096, 300);
        SafetyCases.AssertDisjoint(held.Concat(more), "medium buffers held through the idle trims and rented after");
        long before = GC.GetAllocatedBytesForCurrentThread();
        foreach (IMemoryOwner<byte> owner in held.Concat(more))
        {
            owner.Dispose();
        }

        long allocated = GC.GetAllocatedBytesForCurrentThread() - before;
        Assert.True(allocated < 1_024, $"returning 600 medium buffers allocated {allocated} bytes (beyond the enumerator)");
        SafetyCases.Advance(time, SafetyCases.IdleDelay * 3);
        pool.Trim();
        AssertReservationMatches(pool, expectedExisting: 0, "once every class was idle and trimmed");
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
            AssertReservationNeverNegative(pool, $"during trim {i}");
            Thread.Sleep(1);
        }

        stop.Cancel();
        Array.ForEach(workers, static thread => thread.Join());
        Assert.Null(failure);

        pool.Trim();
        TieredMemoryPoolStatistics statistics = pool.GetStatistics();
        Assert.Equal(0, statistics.Small.BytesRetained + statistics.Medium.BytesRetained);
        AssertReservationMatches(pool, expectedExisting: 0, "after the storm and a last trim");
    }

    [Fact]
    public void CachedRegionsPastTheIdleDelayAreAllUnmappedEventuallyAndNoneEarlyWhileOtherThreadsChurn()
    {
        var time = new FakeTimeProvider();
        using var pool = new TieredMemoryPool(new TieredMemoryPoolOptions { TimeProvider = time, IdleReleaseDelay = SafetyCases.IdleDelay, RegionCacheMaxCount = 256 });

        // Many more cached regions than the lists' first room.
        List<IMemoryOwner<byte>> owners = Rent(pool, 100_000, 200);
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
                List<IMemoryOwner<byte>> burst = Rent(pool, 100_000, 24);
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

    private static List<IMemoryOwner<byte>> Rent(TieredMemoryPool pool, int size, int count)
    {
        var owners = new List<IMemoryOwner<byte>>(count);
        for (int i = 0; i < count; i++)
        {
            owners.Add(pool.Rent(size));
        }

        return owners;
    }

    [MethodImpl(MethodImplOptions.NoInlining)]
    private static (long First, long Second) ReturnOnAFreshThread(TieredMemoryPool other, int size, List<IMemoryOwner<byte>> owners)
    {
        long first = -1;
        long second = -1;
        var thread = new Thread(() =>
        {
            other.Rent(size).Dispose();
            long before = GC.GetAllocatedBytesForCurrentThread();
            owners[0].Dispose();
            first = GC.GetAllocatedBytesForCurrentThread() - before;
            before = GC.GetAllocatedBytesForCurrentThread();
            owners[1].Dispose();
            second = GC.GetAllocatedBytesForCurrentThread() - before;
            for (int i = 2; i < owners.Count; i++)
            {
                owners[i].Dispose();
            }
        });
        thread.Start();
        thread.Join();
        return (first, second);
    }

    private static Array Depots(TieredMemoryPool pool, string tierField)
    {
        object tier = typeof(TieredMemoryPool).GetField(tierField, Private)!.GetValue(pool)!;
        return (Array)tier.GetType().BaseType!.GetField("_depots", Private)!.GetValue(tier)!;
    }

    private static int ReservedIn(TieredMemoryPool pool, string tierField)
    {
        int total = 0;
        foreach (object depot in Depots(pool, tierField))
        {
            total += Field(depot, "_reserved");
        }

        return total;
    }

    private static int Field(object depot, string name) => (int)depot.GetType().GetField(name, Private)!.GetValue(depot)!;

    private static int DepotArrayLength(TieredMemoryPool pool, string tierField, int size)
    {
        Array depots = Depots(pool, tierField);
        int classIndex = tierField == "_small" ? SmallClassIndex(size) : MediumClassIndex(size);
        object depot = depots.GetValue(classIndex)!;
        return ((Array)depot.GetType().GetField("_items", Private)!.GetValue(depot)!).Length;
    }

    private static int SmallClassIndex(int size) => (int)typeof(TieredMemoryPool).Assembly.GetType("Zipora.Buffers.SmallClasses")!
        .GetMethod("ClassIndexOfRequest", BindingFlags.Public | BindingFlags.Static)!.Invoke(null, [size])!;

    private static int MediumClassIndex(int size) => (int)typeof(TieredMemoryPool).Assembly.GetType("Zipora.Buffers.MediumClasses")!
        .GetMethod("ClassIndexOfRequest", BindingFlags.Public | BindingFlags.Static)!.Invoke(null, [size])!;

    /// <summary>Every depot's reservation is at least zero, at least its count, and at most its array's length.</summary>
    private static void AssertReservationNeverNegative(TieredMemoryPool pool, string when)
    {
        foreach (string tier in new[] { "_small", "_medium" })
        {
            Array depots = Depots(pool, tier);
            for (int classIndex = 0; classIndex < depots.Length; classIndex++)
            {
                object depot = depots.GetValue(classIndex)!;
                int reserved = Field(depot, "_reserved");
                Assert.True(reserved >= 0, $"{when}: {tier} class {classIndex} has a reservation of {reserved}");
            }
        }
    }

    /// <summary>
    /// Every depot holds no more than it reserved and reserved no more than its array holds; with
    /// <paramref name="expectedExisting"/>, the reservations of both slab tiers add up to it.
    /// </summary>
    private static void AssertReservationMatches(TieredMemoryPool pool, int? expectedExisting, string when)
    {
        int total = 0;
        foreach (string tier in new[] { "_small", "_medium" })
        {
            Array depots = Depots(pool, tier);
            for (int classIndex = 0; classIndex < depots.Length; classIndex++)
            {
                object depot = depots.GetValue(classIndex)!;
                int reserved = Field(depot, "_reserved");
                int count = Field(depot, "_count");
                int length = ((Array)depot.GetType().GetField("_items", Private)!.GetValue(depot)!).Length;
                Assert.True(reserved >= 0 && count <= reserved && reserved <= length, $"{when}: {tier} class {classIndex} holds {count}, reserved {reserved}, room {length}");
                total += reserved;
            }
        }

        if (expectedExisting is int expected)
        {
            Assert.True(expected == total, $"{when}: the slab tiers' depots reserve {total} places for {expected} blocks that exist");
        }
    }
}
