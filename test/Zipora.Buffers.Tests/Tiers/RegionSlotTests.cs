using System;
using System.Buffers;
using System.Collections.Concurrent;
using System.Collections.Generic;
using System.Threading;
using Microsoft.Extensions.Time.Testing;

namespace Zipora.Buffers.Tests;

/// <summary>
/// The region tiers' per-thread slot: a thread's steady traffic of one size reuses its own region, the statistics
/// stay exact, the slot's region counts against the cache's limits, and trims, the idle release, thread exit and
/// disposal all take it back.
/// </summary>
public sealed class RegionSlotTests
{
    private const int LargeSize = 100_000;
    private const int LargeClass = 114_688;
    private const int HugeSize = 3 * 1024 * 1024;

    public static TheoryData<int, OwnerMode> BothRegionTiersInBothModes => SafetyCases.SizesInBothModes(LargeSize, HugeSize);

    [Theory]
    [MemberData(nameof(BothRegionTiersInBothModes))]
    public void SteadyTrafficOfOneSizeReusesOneRegionAndCountsExactly(int size, OwnerMode mode)
    {
        using var pool = new TieredMemoryPool(SafetyCases.Options(mode, new FakeTimeProvider()));
        nint first = 0;
        long mapsAfterFirst = 0;
        for (int i = 0; i < 1_000; i++)
        {
            using IMemoryOwner<byte> owner = pool.Rent(size);
            owner.Memory.Span[0] = 1;
            nint address = OwnerAddress.Of(owner);
            first = i == 0 ? address : first;
            mapsAfterFirst = i == 0 ? pool.GetStatistics().MmapCalls : mapsAfterFirst;
            Assert.Equal(first, address);
        }

        TieredMemoryPoolStatistics statistics = pool.GetStatistics();
        TierStatistics tier = size == LargeSize ? statistics.Large : statistics.Huge;
        Assert.Equal(mapsAfterFirst, statistics.MmapCalls);
        Assert.Equal(1_000, tier.Rents);
        Assert.Equal(1_000, tier.Returns);
        Assert.Equal(999, tier.CacheHits);
        Assert.Equal(1, tier.CacheMisses);
        Assert.Equal(0, tier.BytesInUse);
        Assert.Equal(1_000L * size, tier.BytesRequested);
        Assert.Equal(tier.BytesAllocated, tier.BytesRetained);
        Assert.Equal(1_000 * (tier.BytesRented / 1_000), tier.BytesRented);
        SizeClassStatistics row = Assert.Single(statistics.SizeHistogram, row => row.Tier == tier.Name);
        Assert.Equal(1_000, row.Rents);
        Assert.Equal(0, row.BuffersInUse);
        Assert.Equal(1, row.Cached);
    }

    [Fact]
    public void ARegionHeldInAThreadsSlotCountsAsInUseWhileRentedAndRetainedWhileParked()
    {
        using var pool = new TieredMemoryPool(new TieredMemoryPoolOptions { TimeProvider = new FakeTimeProvider() });
        pool.Rent(LargeSize).Dispose();
        IMemoryOwner<byte> owner = pool.Rent(LargeSize);
        TierStatistics rented = pool.GetStatistics().Large;
        Assert.Equal(LargeClass, rented.BytesInUse);
        Assert.Equal(0, rented.BytesRetained);
        Assert.Equal(1, rented.BuffersInUse);

        owner.Dispose();
        TierStatistics parked = pool.GetStatistics().Large;
        Assert.Equal(0, parked.BytesInUse);
        Assert.Equal(LargeClass, parked.BytesRetained);
        Assert.Equal(0, parked.BuffersInUse);
    }

    [Theory]
    [MemberData(nameof(BothRegionTiersInBothModes))]
    public void ATrimTakesTheRegionParkedInAThreadsSlot(int size, OwnerMode mode)
    {
        var time = new FakeTimeProvider();
        using var pool = new TieredMemoryPool(SafetyCases.Options(mode, time));
        pool.Rent(size).Dispose();
        pool.Rent(size).Dispose();
        pool.Trim();

        TieredMemoryPoolStatistics trimmed = pool.GetStatistics();
        Assert.Equal(0, trimmed.Large.BytesRetained + trimmed.Huge.BytesRetained);
        Assert.True(trimmed.BytesAwaitingRelease > 0, trimmed.ToString());

        // Returned a moment ago, the region waits out the delay before it is unmapped; then it is.
        SafetyCases.Advance(time, SafetyCases.IdleDelay * 2);
        TieredMemoryPoolStatistics released = pool.GetStatistics();
        Assert.Equal(0, released.BytesAwaitingRelease);
        Assert.Equal(1, released.MunmapCalls);

        // The slot was emptied, not broken: the next rent maps again and counts as a miss.
        pool.Rent(size).Dispose();
        TierStatistics tier = size == LargeSize ? pool.GetStatistics().Large : pool.GetStatistics().Huge;
        Assert.Equal(2, tier.CacheMisses);
        Assert.Equal(1, tier.CacheHits);
        Assert.Equal(3, tier.Returns);
    }

    [Theory]
    [MemberData(nameof(BothRegionTiersInBothModes))]
    public void ARentOfAnotherSizeClassNeverGetsTheParkedRegion(int size, OwnerMode mode)
    {
        using var pool = new TieredMemoryPool(SafetyCases.Options(mode, new FakeTimeProvider()));
        IMemoryOwner<byte> small = pool.Rent(size);
        nint parked = OwnerAddress.Of(small);
        small.Dispose();

        // The slot holds the region just returned; a rent twice as large must map another, and get all of it.
        using IMemoryOwner<byte> larger = pool.Rent(2 * size);
        Assert.NotEqual(parked, OwnerAddress.Of(larger));
        Assert.True(larger.Memory.Length >= 2 * size, $"{larger.Memory.Length} bytes for a rent of {2 * size}");
        larger.Memory.Span[^1] = 1;

        // The parked region still serves its own class.
        using IMemoryOwner<byte> again = pool.Rent(size);
        Assert.Equal(parked, OwnerAddress.Of(again));
    }

    [Fact]
    public void AThreadThatExitedGivesItsParkedRegionToTheNextRenter()
    {
        using var pool = new TieredMemoryPool(new TieredMemoryPoolOptions { TimeProvider = new FakeTimeProvider() });
        var thread = new Thread(() =>
        {
            pool.Rent(LargeSize).Dispose();
            pool.Rent(LargeSize).Dispose();
        });
        thread.Start();
        thread.Join();

        // This thread's first rent registers its slot, which retires the exited thread's: its region is cached.
        pool.Rent(LargeSize).Dispose();
        TieredMemoryPoolStatistics statistics = pool.GetStatistics();
        Assert.Equal(1, statistics.MmapCalls);
        Assert.Equal(3, statistics.Large.Rents);
        Assert.Equal(3, statistics.Large.Returns);
        Assert.Equal(2, statistics.Large.CacheHits);
        Assert.Equal(LargeClass, statistics.Large.BytesRetained);
        Assert.Equal(0, statistics.Large.BytesInUse);
    }

    [Fact]
    public void RegionsParkedOnThreadsCountAgainstTheCachesLimits()
    {
        var options = new TieredMemoryPoolOptions
        {
            TimeProvider = new FakeTimeProvider(),
            AdaptiveCaches = false,
            RegionCacheMaxCount = 1,
        };
        using var pool = new TieredMemoryPool(options);
        using var bothRented = new Barrier(2);
        var threads = new Thread[2];
        for (int i = 0; i < threads.Length; i++)
        {
            threads[i] = new Thread(() =>
            {
                IMemoryOwner<byte> owner = pool.Rent(LargeSize);
                bothRented.SignalAndWait();
                owner.Dispose();
                bothRented.SignalAndWait();
            });
            threads[i].Start();
        }

        foreach (Thread thread in threads)
        {
            thread.Join();
        }

        // One region kept (in a slot or the cache), the other let go: never one per thread beyond the limit.
        TieredMemoryPoolStatistics statistics = pool.GetStatistics();
        Assert.Equal(LargeClass, statistics.Large.BytesRetained);
        Assert.Equal(LargeClass, statistics.BytesAwaitingRelease);
    }

    [Theory]
    [MemberData(nameof(BothRegionTiersInBothModes))]
    public void ATrimWaitsADelayFromTheRegionsLastParkHoweverLongAgoItWasMapped(int size, OwnerMode mode)
    {
        // The fast park writes only the slot's park time; the region's own return time is written as a trim takes it.
        // Were it left at the region's first park, three delays before, the trim would unmap it at once, under a Span
        // its last owner may still write.
        var time = new FakeTimeProvider();
        using var pool = new TieredMemoryPool(SafetyCases.Options(mode, time));
        for (int i = 0; i < 12; i++)
        {
            // Each rent holds the region a quarter delay; each return parks it on the fast path.
            IMemoryOwner<byte> owner = pool.Rent(size);
            SafetyCases.Advance(time, SafetyCases.IdleDelay / 4);
            owner.Dispose();
        }

        pool.Trim();

        TieredMemoryPoolStatistics trimmed = pool.GetStatistics();
        Assert.Equal(0, trimmed.MunmapCalls);
        Assert.True(trimmed.BytesAwaitingRelease > 0, trimmed.ToString());
        SafetyCases.Advance(time, SafetyCases.IdleDelay * 2);
        Assert.Equal(1, pool.GetStatistics().MunmapCalls);
    }

    [Theory]
    [MemberData(nameof(BothRegionTiersInBothModes))]
    public void DisposingThePoolTakesTheParkedRegion(int size, OwnerMode mode)
    {
        var time = new FakeTimeProvider();
        var pool = new TieredMemoryPool(SafetyCases.Options(mode, time));
        pool.Rent(size).Dispose();
        pool.Dispose();

        TieredMemoryPoolStatistics disposed = pool.GetStatistics();
        Assert.Equal(0, disposed.Large.BytesRetained + disposed.Huge.BytesRetained);
        Assert.Throws<ObjectDisposedException>(() => pool.Rent(size));
        SafetyCases.AssertDrainedThreeDelaysLater(pool, time);
        Assert.Equal(1, pool.GetStatistics().MunmapCalls);
    }

    [Theory]
    [MemberData(nameof(BothRegionTiersInBothModes))]
    public void RacingRentsReturnsTrimsAndTicksNeverHandOneRegionToTwoOwners(int size, OwnerMode mode)
    {
        var time = new FakeTimeProvider();
        using var pool = new TieredMemoryPool(SafetyCases.Options(mode, time));
        var holders = new ConcurrentDictionary<nint, int>();
        // Counted apart, so a failure says which: a region handed out while another owner held it, or a held
        // region's bytes changed under its owner (another writer, or pages dropped by a trim while it was held).
        int sharedAddresses = 0;
        int changedBytes = 0;
        using var stop = new CancellationTokenSource();
        var workers = new List<Thread>();
        for (int worker = 0; worker < 3; worker++)
        {
            int id = worker + 1;
            workers.Add(new Thread(() =>
            {
                var random = new Random(id);
                var held = new Queue<IMemoryOwner<byte>>();
                for (int i = 0; i < 3_000; i++)
                {
                    IMemoryOwner<byte> owner = pool.Rent(size + random.Next(0, size / 2));
                    if (!holders.TryAdd(OwnerAddress.Of(owner), id))
                    {
                        Interlocked.Increment(ref sharedAddresses);
                    }

                    owner.Memory.Span[..64].Fill((byte)id);
                    held.Enqueue(owner);
                    if (held.Count > random.Next(0, 3))
                    {
                        IMemoryOwner<byte> oldest = held.Dequeue();
                        if (oldest.Memory.Span[..64].IndexOfAnyExcept((byte)id) >= 0)
                        {
                            Interlocked.Increment(ref changedBytes);
                        }

                        holders.TryRemove(OwnerAddress.Of(oldest), out _);
                        oldest.Dispose();
                    }
                }

                while (held.TryDequeue(out IMemoryOwner<byte>? owner))
                {
                    holders.TryRemove(OwnerAddress.Of(owner), out _);
                    owner.Dispose();
                }
            }));
        }

        var trimmer = new Thread(() =>
        {
            while (!stop.IsCancellationRequested)
            {
                pool.Trim();
                time.Advance(TimeSpan.FromSeconds(2.5));
                Thread.Yield();
            }
        });
        trimmer.Start();
        workers.ForEach(thread => thread.Start());
        workers.ForEach(thread => thread.Join());
        stop.Cancel();
        trimmer.Join();

        Assert.True(sharedAddresses == 0 && changedBytes == 0, $"regions handed to a second owner: {sharedAddresses}; held regions whose bytes changed: {changedBytes}; {pool.GetStatistics()}");
        TieredMemoryPoolStatistics statistics = pool.GetStatistics();
        TierStatistics tier = size == LargeSize ? statistics.Large : statistics.Huge;
        Assert.Equal(9_000, tier.Rents);
        Assert.Equal(9_000, tier.Returns);
        Assert.Equal(0, tier.BytesInUse);
        Assert.Equal(tier.Rents, tier.CacheHits + tier.CacheMisses);
        pool.Trim();
        Assert.Equal(0, pool.GetStatistics().Large.BytesRetained + pool.GetStatistics().Huge.BytesRetained);
    }
}
