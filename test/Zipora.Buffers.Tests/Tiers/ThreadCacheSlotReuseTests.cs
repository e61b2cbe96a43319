using System.Collections.Generic;
using System.Reflection;
using System.Threading;

namespace Zipora.Buffers.Tests;

/// <summary>
/// The process's table of thread-cache slots (one per tier of each live pool) does not grow with the pools ever made,
/// and a new pool takes the lowest free slots, so a thread's table of caches is as long as the pools alive now need.
/// The tests count the slots handed out and what a thread allocates, so each runs in a process of its own.
/// </summary>
[Collection(nameof(HugepageTests))]
public sealed class ThreadCacheSlotReuseTests
{
    [Fact]
    public void PoolsCreatedUsedAndDisposedOneAfterAnotherReuseTheirThreadCacheSlots()
    {
        if (IsolatedProcess.RunsElsewhere(GetType(), nameof(PoolsCreatedUsedAndDisposedOneAfterAnotherReuseTheirThreadCacheSlots)))
        {
            return;
        }

        // Each pool's four tiers take a slot of the process's table of cache slots; a disposed pool's slots are
        // reused, so the slots handed out while this test runs are those the pools alive at once need, not four per
        // pool ever made (20,000 here). In a process of its own, so no other test's pools take or give back slots.
        const int Pools = 5_000;
        FieldInfo next = typeof(ThreadCacheSlots).GetField("s_next", BindingFlags.NonPublic | BindingFlags.Static)!;
        int before = (int)next.GetValue(null)!;
        for (int i = 0; i < Pools; i++)
        {
            using var pool = new TieredMemoryPool(new TieredMemoryPoolOptions { EnableHugepages = false, IdleReleaseDelay = Timeout.InfiniteTimeSpan });
            pool.Rent(64).Dispose();
            pool.Rent(4096).Dispose();
        }

        int added = (int)next.GetValue(null)! - before;
        TestContext.Current.TestOutputHelper?.WriteLine($"slots handed out: {added}");
        // A run hands out 8: the four tiers of two pools at once, while one is disposed and the next made.
        Assert.InRange(added, 0, 8);
    }

    [Fact]
    public void AFreshThreadsFirstRentsCostNoMoreAfterManyPoolsWereAliveAtOnceAndDisposed()
    {
        if (IsolatedProcess.RunsElsewhere(GetType(), nameof(AFreshThreadsFirstRentsCostNoMoreAfterManyPoolsWereAliveAtOnceAndDisposed)))
        {
            return;
        }

        var options = new TieredMemoryPoolOptions { EnableHugepages = false, IdleReleaseDelay = Timeout.InfiniteTimeSpan };
        long alone = FirstRentsOfAPool(options);

        // 2,000 pools alive at once hold 8,000 slots; disposed in the order they were made, they leave every slot free.
        // A thread's table of caches is as long as the highest slot of the pool it rents from: had the next pool taken
        // the slots given back last, its new threads would make tables 8,000 long (64 KB for each cache type).
        var burst = new List<TieredMemoryPool>();
        for (int i = 0; i < 2_000; i++)
        {
            burst.Add(new TieredMemoryPool(options));
        }

        burst.ForEach(static pool => pool.Dispose());
        long afterTheBurst = FirstRentsOfAPool(options);
        TestContext.Current.TestOutputHelper?.WriteLine($"a fresh thread's first rents: {alone} bytes before the burst of pools, {afterTheBurst} after it");
        Assert.True(afterTheBurst <= alone + 1024, $"a fresh thread's first rents allocated {afterTheBurst} bytes after 2,000 pools were alive at once and disposed, {alone} before");
    }

    /// <summary>What a fresh thread's first rents of a small, a medium and a large buffer allocate, in a new pool (the paths compiled first).</summary>
    private static long FirstRentsOfAPool(TieredMemoryPoolOptions options)
    {
        using var pool = new TieredMemoryPool(options);
        _ = ThreadAllocations.OnAFreshThread(() => RentEachTier(pool));
        return ThreadAllocations.OnAFreshThread(() => RentEachTier(pool));
    }

    private static void RentEachTier(TieredMemoryPool pool)
    {
        pool.Rent(64).Dispose();
        pool.Rent(4096).Dispose();
        pool.Rent(64 * 1024).Dispose();
    }
}
