using System;
using System.Buffers;
using System.Threading;
using Microsoft.Extensions.Time.Testing;

namespace Zipora.Buffers.Tests;

/// <summary>
/// A custom <see cref="Zipora.Buffers.Native.PageAllocator"/> whose unmap or advice throws (a bug of its own, not a refusal) while the region
/// tier gives back several regions at once: the idle tick's unmap of the regions that waited out their delay, a trim's
/// emptying of the threads' slots. No region is lost, the one whose call threw neither: each was taken out of the tier
/// before the calls began, and one the exception skipped stayed mapped and counted against
/// <see cref="TieredMemoryPoolOptions.MaxBytesInUse"/> for good, listed nowhere, so the cap shrank by it for the
/// pool's life; the one whose call threw did so too until it was listed to be tried again (an override that throws has
/// done nothing, as <see cref="Zipora.Buffers.Native.PageAllocator.Unmap"/> requires; ThrowingAllocatorRetryTests).
/// </summary>
[Collection(BackgroundFailureWatch.ProvokingTests)]
public sealed class RegionReleaseThatThrowsSafetyTests
{
    private const int RegionSize = 128 * 1024;

    [Fact]
    public void AnUnmapThatThrowsAtTheTickLosesNoOtherRegion()
    {
        long unit = LiveMappingsAllocator.MappedBytesOfOne(RegionSize);
        var allocator = new LiveMappingsAllocator();
        var time = new FakeTimeProvider();
        TieredMemoryPoolOptions options = allocator.PoolOptions(OwnerMode.Default, time);
        options.AdaptiveCaches = false;
        options.RegionCacheMaxCount = 4;
        options.MaxBytesInUse = 4 * unit;
        using var pool = new TieredMemoryPool(options);

        // Three regions cached (the thread's slot is retired into the cache when it exits), all waiting out one delay.
        SafetyCases.RentAndReturnOnAnotherThread(pool, RegionSize, 3);
        var bug = new AllocatorBugOnce();
        allocator.BeforeUnmap = bug.Throw;
        // The tick reports the allocator's exception and goes on: one failure, provoked here.
        long failuresBefore = BackgroundFailures.Count;
        SafetyCases.Advance(time, SafetyCases.IdleDelay * 1.3);
        allocator.BeforeUnmap = null;
        BackgroundFailureWatch.ProvokedSince(failuresBefore);

        AssertNoneLost(pool, time, allocator, bug.Thrown);
    }

    [Fact]
    public void AnAdviceThatThrowsInATrimLosesNoOtherSlotsRegion()
    {
        long unit = LiveMappingsAllocator.MappedBytesOfOne(RegionSize);
        var allocator = new LiveMappingsAllocator();
        var time = new FakeTimeProvider();
        TieredMemoryPoolOptions options = allocator.PoolOptions(OwnerMode.Default, time);
        options.AdaptiveCaches = false;
        options.MaxBytesInUse = 4 * unit;
        using var pool = new TieredMemoryPool(options);

        // Three live threads, each with a region parked in its slot: the trim empties all three, then drops their pages
        // (returned just now, they wait out their delay before the unmap).
        using var done = new ManualResetEventSlim();
        using var parked = new CountdownEvent(3);
        var threads = new Thread[3];
        for (int i = 0; i < threads.Length; i++)
        {
            threads[i] = new Thread(() =>
            {
                pool.Rent(RegionSize).Dispose();
                parked.Signal();
                done.Wait();
            });
            threads[i].Start();
        }

        try
        {
            Assert.True(parked.Wait(TimeSpan.FromSeconds(10)), "the threads never parked their regions");
            Assert.Equal(3, allocator.Live().Length);
            var bug = new AllocatorBugOnce();
            allocator.BeforeAdvise = _ => bug.Throw();

            // The trim passes the allocator's exception on: it is a bug, not a refusal.
            _ = Assert.Throws<InvalidOperationException>(pool.Trim);
            allocator.BeforeAdvise = null;
            AssertNoneLost(pool, time, allocator, bug.Thrown);
        }
        finally
        {
            done.Set();
            Array.ForEach(threads, static thread => thread.Join());
        }
    }

    /// <summary>
    /// Once the allocator behaves again, a trim and three delays give back every region, the one whose call threw too,
    /// and the cap (four regions) still holds three rented at once.
    /// </summary>
    private static void AssertNoneLost(TieredMemoryPool pool, FakeTimeProvider time, LiveMappingsAllocator allocator, int thrown)
    {
        Assert.True(thrown == 1, $"the allocator never threw: no region was given back\n{pool.GetStatistics()}");
        pool.Trim();
        SafetyCases.Advance(time, SafetyCases.IdleDelay * 3);
        int left = allocator.Live().Length;
        Assert.True(left == 0, $"{left} mappings still mapped with nothing rented, three delays after one call threw\n{pool.GetStatistics()}");

        var held = new IMemoryOwner<byte>?[3];
        try
        {
            for (int i = 0; i < held.Length; i++)
            {
                held[i] = pool.Rent(RegionSize);
            }
        }
        finally
        {
            Array.ForEach(held, static owner => owner?.Dispose());
        }
    }
}
