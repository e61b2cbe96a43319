using System;
using System.Buffers;
using System.Collections.Generic;
using System.Diagnostics;
using System.Linq;
using System.Threading;

namespace Zipora.Buffers.Tests;

/// <summary>
/// The depots' reservation (attack round 12, on commit c6e36ec): each slab block is reserved a place in its class's
/// depot before it is carved and the place is given back with its slab, so a return never grows a depot, never
/// allocates. These tests look for returns that still allocate (other cache options, other threads), for a
/// reservation that drifts or goes below zero (threads carving at once, refused rents, late returns after disposal,
/// leaked blocks reclaimed through the quarantine, double disposes), and for a block handed to two owners.
/// </summary>
[Collection(HeapFiller.AtTheHeapLimit)]
public sealed partial class DepotReservationSafetyTests
{
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
                        foreach (OwnerMode mode in Enum.GetValues<OwnerMode>())
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
            List<IMemoryOwner<byte>> owners = DepotReservation.Rent(pool, size, count);
            long allocated = DepotReservation.BytesAllocatedReturning(owners);
            Assert.True(allocated == 0, $"returning {count} buffers of {size} bytes (ThreadCacheMaxBuffers {maxBuffers}, adaptive {adaptive}, {mode}) allocated {allocated} bytes");
        }

        DepotReservation.AssertMatches(pool, expectedExisting: null, "after the bursts");
    }

    [Theory]
    [MemberData(nameof(SlabSizesAndModes))]
    public void ReturnsOnAnotherThreadThatAlreadyUsedThePoolAllocateNothing(int size, bool reuseOwners)
    {
        using var pool = new TieredMemoryPool(new TieredMemoryPoolOptions { ReuseOwners = reuseOwners, IdleReleaseDelay = Timeout.InfiniteTimeSpan });
        List<IMemoryOwner<byte>> owners = DepotReservation.Rent(pool, size, 3_000);
        long allocated = -1;
        var returner = new Thread(() =>
        {
            // The returning thread has its caches already: only the returns are measured.
            pool.Rent(size).Dispose();
            allocated = DepotReservation.BytesAllocatedReturning(owners);
        });
        returner.Start();
        returner.Join();
        Assert.True(allocated == 0, $"returning 3000 buffers of {size} bytes on another thread allocated {allocated} bytes");
    }

    [Fact]
    public void AFreshThreadsReturnAtTheGcHeapLimitStillGivesTheBlockBack()
    {
        // In a process of its own under a GC heap hard limit (a container's), filled to the limit.
        if (IsolatedProcess.RunsElsewhereAtHeapLimit(typeof(DepotReservationSafetyTests), nameof(AFreshThreadsReturnAtTheGcHeapLimitStillGivesTheBlockBack)))
        {
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
        using var other = new TieredMemoryPool(new TieredMemoryPoolOptions { IdleReleaseDelay = Timeout.InfiniteTimeSpan });
        var returner = new Thread(() =>
        {
            // The thread has used the tier (another pool's), so its thread-statics exist: what the return must make is
            // this pool's cache for the thread. (The very first touch of a tier's thread-statics on a thread, which
            // the runtime allocates, is outside the pool's reach.)
            other.Rent(64).Dispose();
            List<byte[]>? filler = null;
            try
            {
                filler = HeapFiller.Fill();
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
        BackgroundFailureWatch.ProvokedSince(backgroundFailures);
        Assert.True(fillFailed is null, $"the test itself ran out of memory: {fillFailed}");
        TierStatistics small = pool.GetStatistics().Small;
        owner.Dispose();
        pool.Trim();
        TierStatistics afterTrim = pool.GetStatistics().Small;
        Assert.True(failed is null, $"the return on a fresh thread at the heap limit (filled with {held} arrays) threw {failed?.GetType().Name}: its block is lost: after it the small tier counts {small.BuffersInUse} buffer(s) in use with every owner disposed ({rentsBefore} rents), a second dispose does nothing, and a trim leaves {afterTrim.BytesRetained} bytes retained and {afterTrim.BuffersInUse} in use; thrown: {failed}");
    }

    [Theory]
    [InlineData(0)]
    [InlineData(1)]
    public void ReturnsThatMeetATrimOnTheDepotsLockAllocateNothing(int maxBuffers)
    {
        // A trim under memory pressure (MemoryPressureWatcher, on a pool thread) can meet a return on a depot's lock,
        // which the return takes with its thread's cache marked busy (ThreadCacheMaxBuffers 0: every return; 1: every
        // overflow), and can take the depot's blocks and free their slabs while the return puts one back.
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
        int rounds = 0;
        try
        {
            var watch = Stopwatch.StartNew();
            for (; watch.Elapsed < TimeSpan.FromSeconds(3) && worst == 0; rounds++)
            {
                List<IMemoryOwner<byte>> owners = DepotReservation.Rent(pool, 64, 500);
                worst = DepotReservation.BytesAllocatedReturning(owners);
            }
        }
        finally
        {
            stop.Cancel();
            trimmer.Join();
        }

        Assert.True(worst == 0, $"returning 500 buffers of 64 bytes while another thread trims allocated {worst} bytes (round {rounds}; ThreadCacheMaxBuffers {maxBuffers}): an OutOfMemoryException there would leave the thread's cache marked busy, and every later trim waiting for it");
        DepotReservation.AssertATrimFreesEverySlabAndItsRoom(pool, "after the returns that met trims");
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
                List<IMemoryOwner<byte>> owners = DepotReservation.Rent(pool, 64, 200);
                start.SignalAndWait();
                worst[t] = Math.Max(worst[t], DepotReservation.BytesAllocatedReturning(owners));
            }
        }))];
        Array.ForEach(threads, static thread => thread.Start());
        Array.ForEach(threads, static thread => thread.Join());
        Assert.True(worst.All(static bytes => bytes == 0), $"returns racing on one depot allocated [{string.Join(", ", worst)}] bytes on the returning threads, inside ReleaseSlow with the cache marked busy (the depot's contended System.Threading.Lock makes its wait event): an OutOfMemoryException there leaves the cache marked, and the next trim spins for ever");
    }
}
