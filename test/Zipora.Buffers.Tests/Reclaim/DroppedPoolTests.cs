using System;
using System.Buffers;
using System.Collections.Generic;
using System.Diagnostics;
using System.Globalization;
using System.Linq;
using System.Runtime.CompilerServices;
using System.Threading;
using Microsoft.Extensions.Time.Testing;

namespace Zipora.Buffers.Tests;

/// <summary>
/// A pool dropped without <c>Dispose</c> gives its native memory back once the GC finds it, and nothing a thread kept
/// from using it (the small and medium tiers' and the array pool's thread caches) keeps it reachable.
/// </summary>
/// <remarks>Forces full garbage collections and reads the process's resident memory and mappings, so it runs alone.</remarks>
[Collection(nameof(HugepageTests))]
public sealed class DroppedPoolTests
{
    private const int Pools = 200;
    private const int RegionSize = 1024 * 1024;
    private static readonly TimeSpan s_period = SafetyCases.IdleDelay / 4;
    private static readonly TimeSpan s_patience = TimeSpan.FromSeconds(20);

    [Fact]
    public void HundredsOfPoolsDroppedWithoutDisposeGiveTheirNativeMemoryBack()
    {
        Skip.Unless(ProcessMappings.CanRead && ProcessMemory.CanRead, "reads /proc/self/maps and /proc/self/statm, which only Linux has");
        var time = new FakeTimeProvider();
        CollectEverything();
        long residentBefore = ProcessMemory.ResidentBytes();
        long mappedBefore = ProcessMappings.WritableBytes();

        // The collector's own heap is writable mappings too, and may stay larger after 200 pools were made and
        // collected (one fresh-clone CI run: +53 MB left mapped, resident back to -2 MB): what it commits beyond its
        // start is not the pools' and is taken off.
        long heapBefore = GC.GetGCMemoryInfo().TotalCommittedBytes;

        (long residentHeld, long mappedHeld, List<OwnerRange> blocks) = CreateUseAndDrop(time, Pools, residentBefore, mappedBefore);
        Assert.True(residentHeld > Pools * (long)RegionSize / 2, $"the pools should hold their cached regions resident: +{Megabytes(residentHeld)} MB");
        Assert.True(mappedHeld > Pools * (long)RegionSize / 2, $"the pools should hold their cached regions mapped: +{Megabytes(mappedHeld)} MB");

        // The collector finds the pools; their memory goes at once (pages dropped) or one delay later (unmapped). What
        // is left mapped is read from the blocks the pools handed out (a region, a medium and a small block each): the
        // process's writable mappings also count the threads' stacks and the collector's heap, which grow as they like
        // (two fresh-clone CI runs: +53 MB and +38 MB left mapped, with resident memory back below its start).
        long residentLeft = residentHeld;
        int blocksLeft = blocks.Count;
        bool released = WaitUntil(time, () =>
        {
            residentLeft = ProcessMemory.ResidentBytes() - residentBefore;
            blocksLeft = blocks.Count(static block => ProcessMappings.IsMappedNow(block.Start, block.Length));
            return residentLeft < residentHeld / 8 && blocksLeft < blocks.Count / 8;
        });

        long heapGrowth = Math.Max(0, GC.GetGCMemoryInfo().TotalCommittedBytes - heapBefore);
        long mappedLeft = ProcessMappings.WritableBytes() - mappedBefore - heapGrowth;
        Assert.True(released, string.Create(CultureInfo.InvariantCulture, $"{Pools} dropped pools held +{Megabytes(residentHeld)} MB resident and +{Megabytes(mappedHeld)} MB mapped writable; {s_patience.TotalSeconds} s after they were collected +{Megabytes(residentLeft)} MB resident was left, {blocksLeft} of the {blocks.Count} blocks they handed out were still mapped, and the process's writable mappings were +{Megabytes(mappedLeft)} MB beyond the collector's heap (which grew {Megabytes(heapGrowth)} MB)"));
    }

    [Fact]
    public void APoolWhoseSmallAndMediumTiersWereUsedOnThisThreadIsCollected()
    {
        WeakReference pool = UseMemoryPoolOnThisThreadAndDrop(new FakeTimeProvider());
        CollectEverything();
        Assert.False(pool.IsAlive, "this thread's small or medium cache kept a dropped pool reachable");
    }

    [Fact]
    public void AnArrayPoolUsedOnThisThreadIsCollected()
    {
        WeakReference pool = UseArrayPoolOnThisThreadAndDrop(new FakeTimeProvider());
        CollectEverything();
        Assert.False(pool.IsAlive, "this thread's array cache kept a dropped pool reachable");
    }

    [Fact]
    public void ADroppedArrayPoolLetsGoOfTheArraysItsThreadCachesHeld()
    {
        WeakReference cached = CacheAnArrayOnThisThreadAndDrop(new FakeTimeProvider());

        // The first collection finds the pool and runs its finalizer; the second the arrays it let go of.
        CollectEverything();
        CollectEverything();
        Assert.False(cached.IsAlive, "an array cached on this thread for a dropped pool is still reachable");
    }

    [Fact]
    public void BuffersStillRentedFromADroppedPoolStayValidAndAreUnmappedOnceReturned()
    {
        Skip.Unless(ProcessMappings.CanRead, "reads /proc/self/maps, which only Linux has");
        var time = new FakeTimeProvider();
        List<IMemoryOwner<byte>> owners = RentAndDrop(time, out WeakReference pool);
        CollectEverything();
        Assert.False(pool.IsAlive, "buffers still rented kept their dropped pool reachable");

        // The pool's tiers are disposed now or in a moment: the rented buffers are untouched and writable.
        var ranges = new List<OwnerRange>();
        foreach (IMemoryOwner<byte> owner in owners)
        {
            OwnerRange range = SafetyCases.RangeOf(owner);
            Assert.True(ProcessMappings.IsWritable(range.Start, range.Length), $"a rented buffer of a dropped pool was taken away: {ProcessMappings.Describe(range.Start, range.Length)}");
            owner.Memory.Span.Fill(0x5a);
            ranges.Add(range);
        }

        foreach (IMemoryOwner<byte> owner in owners)
        {
            owner.Dispose();
        }

        // Returned to a pool nobody holds, each buffer is freed a delay after its return.
        bool unmapped = WaitUntil(time, () => ranges.TrueForAll(static range => !ProcessMappings.IsMapped(range.Start, range.Length)));
        Assert.True(unmapped, string.Join("; ", ranges.ConvertAll(static range => ProcessMappings.Describe(range.Start, range.Length))));
    }

    [Theory]
    [InlineData(4096)]
    [InlineData(100_000)]
    public void ABlockLeakedFromADroppedPoolWaitsOutItsQuarantineBeforeItIsUnmapped(int size)
    {
        Skip.Unless(ProcessMappings.CanRead, "reads /proc/self/maps, which only Linux has");
        var time = new FakeTimeProvider();
        OwnerRange range = LeakABlockAndDrop(time, size);

        // The collector finds the pool and the leaked owner together (the block is reclaimed at the second collection
        // that finds it unreachable); the clock has not moved since.
        CollectEverything();
        CollectEverything();
        CollectEverything();

        // A leaked block's Span may still be written somewhere: it stays mapped for a whole delay after its finalizer.
        for (int tick = 1; tick < IdleClock.TicksPerDelay; tick++)
        {
            SafetyCases.Advance(time, s_period);
            Assert.True(ProcessMappings.IsMapped(range.Start, range.Length), $"tick {tick}: {ProcessMappings.Describe(range.Start, range.Length)} was unmapped inside its quarantine");
        }

        bool unmapped = WaitUntil(time, () => !ProcessMappings.IsMapped(range.Start, range.Length));
        Assert.True(unmapped, ProcessMappings.Describe(range.Start, range.Length));
    }

    [Fact]
    public void ADroppedPoolIsGoneOnceItsMemoryIsGivenBack()
    {
        var time = new FakeTimeProvider();
        WeakReference pool = UseMemoryPoolOnThisThreadAndDrop(time, trackResurrection: true);
        bool gone = WaitUntil(time, () => !pool.IsAlive);
        Assert.True(gone, "a dropped pool stayed reachable after its memory was given back");
    }

    [Fact]
    public void PoolsCreatedAndDroppedLeaveNothingOnTheirClocksTicker()
    {
        var time = new FakeTimeProvider();
        CreateUseAndDropBoth(time, arrayPools: 1_000, memoryPools: 50);
        Assert.True(IdleTicker.For(time).Scheduled > 0, "the pools should have been ticking");

        bool empty = WaitUntil(time, () => IdleTicker.For(time).Scheduled == 0);
        Assert.True(empty, $"{IdleTicker.For(time).Scheduled} releasers of dropped pools are still ticked");
    }

    [Fact]
    public void BuffersReturnedOnManyThreadsWhileTheirPoolIsFinalizedStayValidAndAreFreed()
    {
        Skip.Unless(ProcessMappings.CanRead, "reads /proc/self/maps, which only Linux has");
        const int Threads = 4;
        const int Rounds = 4;
        var time = new FakeTimeProvider();
        for (int round = 0; round < Rounds; round++)
        {
            // Each thread's medium cache holds blocks of the pool, and each thread still holds rented ones.
            List<IMemoryOwner<byte>>[] kept = RentOnThreadsAndDrop(time, Threads);
            var ranges = new List<OwnerRange>();
            foreach (List<IMemoryOwner<byte>> owners in kept)
            {
                ranges.AddRange(owners.ConvertAll(SafetyCases.RangeOf));
            }

            SafetyCases.AssertDisjoint(ranges, "buffers rented from one pool on several threads");

            // The threads write to and return their buffers while the collector finds the pool and its finalizer's
            // work disposes it: a buffer must be mapped until its owner returns it, and returning it must not throw.
            var failures = new System.Collections.Concurrent.ConcurrentQueue<string>();
            using var start = new Barrier(Threads + 1);
            var workers = new Thread[Threads];
            for (int t = 0; t < Threads; t++)
            {
                List<IMemoryOwner<byte>> owners = kept[t];
                workers[t] = new Thread(() => WriteAndReturn(owners, start, failures));
                workers[t].Start();
            }

            start.SignalAndWait();
            CollectEverything();
            foreach (Thread worker in workers)
            {
                worker.Join();
            }

            Assert.Empty(failures);
            bool unmapped = WaitUntil(time, () => ranges.TrueForAll(static range => !ProcessMappings.IsMapped(range.Start, range.Length)));
            Assert.True(unmapped, $"round {round}: " + string.Join("; ", ranges.FindAll(static range => ProcessMappings.IsMapped(range.Start, range.Length)).ConvertAll(static range => ProcessMappings.Describe(range.Start, range.Length))));
        }
    }

    private static void WriteAndReturn(List<IMemoryOwner<byte>> owners, Barrier start, System.Collections.Concurrent.ConcurrentQueue<string> failures)
    {
        start.SignalAndWait();
        foreach (IMemoryOwner<byte> owner in owners)
        {
            OwnerRange range = SafetyCases.RangeOf(owner);
            if (!ProcessMappings.IsMappedNow(range.Start, range.Length))
            {
                failures.Enqueue($"{range} was unmapped while still rented");
                continue;
            }

            owner.Memory.Span.Fill(0xa5);
            owner.Dispose();
        }
    }

    /// <summary>
    /// Collects, lets finalizers and the work they queue run, and moves the clock a tick at a time until
    /// <paramref name="done"/> holds or the patience runs out.
    /// </summary>
    private static bool WaitUntil(FakeTimeProvider time, Func<bool> done)
    {
        var clock = Stopwatch.StartNew();
        while (clock.Elapsed < s_patience)
        {
            CollectEverything();
            SafetyCases.Advance(time, s_period);
            if (done())
            {
                return true;
            }

            Thread.Sleep(20);
        }

        return false;
    }

    private static void CollectEverything()
    {
        GC.Collect();
        GC.WaitForPendingFinalizers();
        GC.Collect();
    }

    private static long Megabytes(long bytes) => bytes / (1024 * 1024);

    /// <summary>
    /// Each pool caches a touched 1 MB region and medium blocks on this thread's cache, and is dropped. Background
    /// release is off, so only the pool's end can give the memory back. All are dropped together, when it returns;
    /// returns what they held just before, over the figures given.
    /// </summary>
    [MethodImpl(MethodImplOptions.NoInlining)]
    private static (long Resident, long Mapped, List<OwnerRange> Blocks) CreateUseAndDrop(FakeTimeProvider time, int count, long residentBefore, long mappedBefore)
    {
        var pools = new List<TieredMemoryPool>();
        var blocks = new List<OwnerRange>();
        for (int i = 0; i < count; i++)
        {
            var pool = new TieredMemoryPool(new TieredMemoryPoolOptions { TimeProvider = time, IdleReleaseDelay = Timeout.InfiniteTimeSpan });
            pools.Add(pool);
            foreach (int size in new[] { RegionSize, 4096, 100 })
            {
                using IMemoryOwner<byte> owner = pool.Rent(size);
                owner.Memory.Span.Fill(1);
                blocks.Add(SafetyCases.RangeOf(owner));
            }
        }

        (long Resident, long Mapped) held = (ProcessMemory.ResidentBytes() - residentBefore, ProcessMappings.WritableBytes() - mappedBefore);
        GC.KeepAlive(pools);
        return (held.Resident, held.Mapped, blocks);
    }

    [MethodImpl(MethodImplOptions.NoInlining)]
    private static void CreateUseAndDropBoth(FakeTimeProvider time, int arrayPools, int memoryPools)
    {
        for (int i = 0; i < arrayPools; i++)
        {
            var pool = new TieredArrayPool(new TieredArrayPoolOptions { TimeProvider = time });
            pool.Return(pool.Rent(4096));
        }

        for (int i = 0; i < memoryPools; i++)
        {
            var pool = new TieredMemoryPool(new TieredMemoryPoolOptions { TimeProvider = time });
            foreach (int size in SafetyCases.OneSizePerTier)
            {
                pool.Rent(size).Dispose();
            }
        }
    }

    /// <summary>On each of <paramref name="threads"/> threads: rents 48 blocks of one pool, returns a third into the thread's cache and keeps the rest.</summary>
    [MethodImpl(MethodImplOptions.NoInlining)]
    private static List<IMemoryOwner<byte>>[] RentOnThreadsAndDrop(FakeTimeProvider time, int threads)
    {
        var pool = new TieredMemoryPool(new TieredMemoryPoolOptions { TimeProvider = time });
        var kept = new List<IMemoryOwner<byte>>[threads];
        var workers = new Thread[threads];
        for (int t = 0; t < threads; t++)
        {
            var owners = kept[t] = [];
            workers[t] = new Thread(() =>
            {
                for (int i = 0; i < 48; i++)
                {
                    IMemoryOwner<byte> owner = pool.Rent(i % 12 == 11 ? 100_000 : 1024 << (i % 5));
                    if (i % 3 == 0)
                    {
                        owner.Dispose();
                    }
                    else
                    {
                        owners.Add(owner);
                    }
                }
            });
            workers[t].Start();
        }

        foreach (Thread worker in workers)
        {
            worker.Join();
        }

        return kept;
    }

    [MethodImpl(MethodImplOptions.NoInlining)]
    private static WeakReference UseMemoryPoolOnThisThreadAndDrop(FakeTimeProvider time, bool trackResurrection = false)
    {
        var pool = new TieredMemoryPool(new TieredMemoryPoolOptions { TimeProvider = time });
        IMemoryOwner<byte> first = pool.Rent(4096);
        IMemoryOwner<byte> second = pool.Rent(8192);
        IMemoryOwner<byte> small = pool.Rent(64);
        first.Dispose();
        second.Dispose();
        small.Dispose();
        pool.Rent(4096).Dispose();
        pool.Rent(64).Dispose();
        return new WeakReference(pool, trackResurrection);
    }

    [MethodImpl(MethodImplOptions.NoInlining)]
    private static WeakReference UseArrayPoolOnThisThreadAndDrop(FakeTimeProvider time)
    {
        var pool = new TieredArrayPool(new TieredArrayPoolOptions { TimeProvider = time });
        byte[] first = pool.Rent(4096);
        byte[] second = pool.Rent(100_000);
        pool.Return(first);
        pool.Return(second);
        pool.Return(pool.Rent(4096));
        return new WeakReference(pool);
    }

    /// <summary>Rents a block, fills it, and drops both its owner (without dispose) and the pool.</summary>
    [MethodImpl(MethodImplOptions.NoInlining)]
    private static OwnerRange LeakABlockAndDrop(FakeTimeProvider time, int size)
    {
        var pool = new TieredMemoryPool(new TieredMemoryPoolOptions { TimeProvider = time });
        IMemoryOwner<byte> leaked = pool.Rent(size);
        leaked.Memory.Span.Fill(7);
        return SafetyCases.RangeOf(leaked);
    }

    [MethodImpl(MethodImplOptions.NoInlining)]
    private static WeakReference CacheAnArrayOnThisThreadAndDrop(FakeTimeProvider time)
    {
        var pool = new TieredArrayPool(new TieredArrayPoolOptions { TimeProvider = time });
        byte[] array = pool.Rent(4096);
        pool.Return(array);
        return new WeakReference(array);
    }

    [MethodImpl(MethodImplOptions.NoInlining)]
    private static List<IMemoryOwner<byte>> RentAndDrop(FakeTimeProvider time, out WeakReference weak)
    {
        var pool = new TieredMemoryPool(new TieredMemoryPoolOptions { TimeProvider = time });
        var owners = new List<IMemoryOwner<byte>>();
        foreach (int size in SafetyCases.OneSizePerTier)
        {
            owners.Add(pool.Rent(size));
            pool.Rent(size).Dispose();
        }

        weak = new WeakReference(pool);
        return owners;
    }
}
