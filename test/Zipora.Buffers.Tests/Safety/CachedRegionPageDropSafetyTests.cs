using System;
using System.Buffers;
using System.Collections.Generic;
using System.Linq;
using System.Threading;
using Microsoft.Extensions.Time.Testing;
using Zipora.Buffers.Native;
using static Zipora.Buffers.Tests.CachedRegionPageDropCases;

namespace Zipora.Buffers.Tests;

/// <summary>
/// The idle page drop of cached regions (attack round 11, on commits e734ad0 and d6a8954): the tick before the unmap
/// marks the due regions under the tier's gate, advises them outside it, and clears the marks. These tests hold the
/// tick inside the advice (<see cref="PausingAdviceAllocator"/>) and act in the window: rents, returns over the limits,
/// trims, statistics, disposal, a byte cap.
/// </summary>
public sealed partial class CachedRegionPageDropSafetyTests
{
    private const int Cached = 4;

    [Theory]
    [InlineData(LargeSize)]
    [InlineData(HugeSize)]
    public void ARentOfACachedSizeSucceedsUnderMaxBytesInUseWhileATickDropsTheCachedRegionsPages(int size)
    {
        long mapped = MappedLengthOf(size);
        var time = new FakeTimeProvider();
        var allocator = new PausingAdviceAllocator();
        // Room for the cached regions and nothing more: a rent must reuse one of them, or unmap one to map anew.
        using TieredMemoryPool pool = Pool(time, allocator, options => options.MaxBytesInUse = (Cached * mapped) + (mapped / 2));
        ReturnToSharedCache(RentFilled(pool, size, Cached, 0x10));

        Exception? tickFailed = null;
        Thread ticking = TickUntilPaused(time, allocator, Delay, PageAdvice.DontNeed, error => tickFailed = error);
        Exception? refused = null;
        IMemoryOwner<byte>? owner = null;
        try
        {
            owner = pool.Rent(size);
            owner.Memory.Span.Fill(0x77);
        }
        catch (Exception error)
        {
            refused = error;
        }
        finally
        {
            allocator.Resume();
            ticking.Join();
        }

        Assert.Null(tickFailed);
        Assert.True(refused is null, $"a rent of {size} bytes failed while the pool cached {Cached} regions of that size, because a tick was dropping their pages: RegionCache.TakeNewest refuses a region marked DroppingPages, and the trim the byte cap then asks for (PageSource.TryReserve -> ReleaseIdleMemory -> RegionTier.UnmapCached) skips the marked regions too, so the cap still counts them: {refused?.GetType().Name}: {refused?.Message}");
        Assert.True(FirstLost(owner!, 0x77) < 0, "the buffer rented during the drop lost what its owner wrote");
        owner!.Dispose();
    }

    [Theory]
    [InlineData(LargeSize)]
    [InlineData(HugeSize)]
    public void WhatIsRentedReturnedOverTheLimitsTrimmedOrReadWhileATickDropsPagesKeepsItsDataAndNothingIsUnmappedEarly(int size)
    {
        var time = new FakeTimeProvider();
        var allocator = new PausingAdviceAllocator();
        using TieredMemoryPool pool = Pool(time, allocator, options =>
        {
            options.AdaptiveCaches = false;
            options.RegionCacheMaxCount = Cached;
            options.HugeRegionCacheMaxCount = Cached;
        });

        // Held through everything: rented before the drop, never returned.
        List<IMemoryOwner<byte>> held = RentFilled(pool, size, 2, 0x60);
        List<IMemoryOwner<byte>> spare = RentFilled(pool, size, 2, 0x70);
        List<IMemoryOwner<byte>> idle = RentFilled(pool, size, Cached, 0x10);
        List<OwnerRange> idleRanges = idle.Select(SafetyCases.RangeOf).ToList();
        ReturnToSharedCache(idle);

        Exception? tickFailed = null;
        Thread ticking = TickUntilPaused(time, allocator, Delay, PageAdvice.DontNeed, error => tickFailed = error);
        List<IMemoryOwner<byte>> window;
        List<OwnerRange> spareRanges = spare.Select(SafetyCases.RangeOf).ToList();
        try
        {
            // Rents in the window: none may be the region being advised (the pass advises one region at a time; the
            // others may be rented, and are then passed by).
            var advised = new OwnerRange(allocator.PausedOn.Address, (int)allocator.PausedOn.Length);
            window = RentFilled(pool, size, 3, 0x30);
            foreach (IMemoryOwner<byte> owner in window)
            {
                OwnerRange range = SafetyCases.RangeOf(owner);
                Assert.False(range.Overlaps(advised), $"a rent during the drop pass got {range}, the cached region {advised} whose pages the tick was dropping");
            }

            // Returns past the cache's limit (the evictions must pass the marked regions by), a trim, the statistics.
            ReturnToSharedCache(spare);
            pool.Trim();
            Assert.Null(SafetyCases.NegativeFigures(pool.GetStatistics()));
        }
        finally
        {
            allocator.Resume();
            ticking.Join();
        }

        Assert.Null(tickFailed);
        for (int i = 0; i < window.Count; i++)
        {
            int lost = FirstLost(window[i], (byte)(0x30 + i));
            Assert.True(lost < 0, $"buffer {i} rented during the drop pass ({SafetyCases.RangeOf(window[i])}) lost what its owner wrote at byte {lost}");
        }

        for (int i = 0; i < held.Count; i++)
        {
            int lost = FirstLost(held[i], (byte)(0x60 + i));
            Assert.True(lost < 0, $"buffer {i} held through the drop pass ({SafetyCases.RangeOf(held[i])}) lost what its owner wrote at byte {lost}");
        }

        // Returned a delay ago at most: mapped still, whatever the trim and the evictions did.
        foreach (OwnerRange range in idleRanges.Concat(spareRanges))
        {
            Assert.True(ProcessMappings.IsMapped(range.Start, range.Length), $"{range}, returned less than a delay and a quarter ago, was unmapped: a stale Span would fault");
        }

        window.ForEach(owner => owner.Dispose());
        held.ForEach(owner => owner.Dispose());
        pool.Trim();
        SafetyCases.Advance(time, (2 * Delay) + (Delay / 4));
        TieredMemoryPoolStatistics statistics = pool.GetStatistics();
        Assert.True(NothingMapped(statistics), $"two delays after a trim, the quiet pool still holds mappings: {Unmapped(statistics)}");
        Assert.Equal(0, statistics.BytesInUse);
    }

    [Theory]
    [InlineData(LargeSize)]
    [InlineData(HugeSize)]
    public void APoolDisposedWhileATickDropsPagesUnmapsTheMarkedRegionsAfterTheirDelayAndNotBefore(int size)
    {
        var time = new FakeTimeProvider();
        var allocator = new PausingAdviceAllocator();
        TieredMemoryPool pool = Pool(time, allocator);
        List<IMemoryOwner<byte>> held = RentFilled(pool, size, 1, 0x50);
        List<IMemoryOwner<byte>> idle = RentFilled(pool, size, Cached, 0x10);
        List<OwnerRange> idleRanges = idle.Select(SafetyCases.RangeOf).ToList();
        ReturnToSharedCache(idle);

        Exception? tickFailed = null;
        Thread ticking = TickUntilPaused(time, allocator, Delay, PageAdvice.DontNeed, error => tickFailed = error);
        try
        {
            pool.Dispose();
        }
        finally
        {
            allocator.Resume();
            ticking.Join();
        }

        Assert.Null(tickFailed);
        TieredMemoryPoolStatistics disposed = pool.GetStatistics();
        Assert.True(disposed.Large.BytesRetained + disposed.Huge.BytesRetained == 0, $"the marked regions stayed in the disposed tier's cache after the drop pass: {Unmapped(disposed)}");
        foreach (OwnerRange range in idleRanges)
        {
            Assert.True(ProcessMappings.IsMapped(range.Start, range.Length), $"{range}, returned exactly four ticks ago (less than its delay), was unmapped at the disposal");
        }

        Assert.True(FirstLost(held[0], 0x50) < 0, "the buffer held through the disposal lost its data");
        held[0].Dispose();
        SafetyCases.Advance(time, (2 * Delay) + (Delay / 4));
        TieredMemoryPoolStatistics drained = pool.GetStatistics();
        Assert.True(NothingMapped(drained), $"two delays after the disposal, the pool still holds mappings: {Unmapped(drained)}");
    }

    [Theory]
    [InlineData(LargeSize)]
    [InlineData(HugeSize)]
    public void ARegionWhosePagesWereDroppedIsNotAdvisedAgainBeforeItIsUnmapped(int size)
    {
        var time = new FakeTimeProvider();
        var allocator = new PausingAdviceAllocator();
        using TieredMemoryPool pool = Pool(time, allocator);
        List<IMemoryOwner<byte>> idle = RentFilled(pool, size, Cached, 0x10);
        List<OwnerRange> ranges = idle.Select(SafetyCases.RangeOf).ToList();
        ReturnToSharedCache(idle);

        // The fourth tick drops the pages; a trim right after (or the retained cap's) lets the regions go.
        SafetyCases.Advance(time, Delay);
        Assert.Equal(4, pool.IdleTicks);
        pool.Trim();
        SafetyCases.Advance(time, 2 * Delay);

        foreach (OwnerRange range in ranges)
        {
            nint mapping = allocator.Advised.First(a => a.Address <= range.Start && range.Start < a.Address + (nint)a.Length && a.Advice == PageAdvice.DontNeed).Address;
            int advices = allocator.CountOn(mapping, PageAdvice.DontNeed);
            Assert.True(advices == 1, $"{range}'s pages were dropped {advices} times: the tick before its unmap dropped them, then the trim's RegionTier.Unmap -> DeferredUnmaps.Release -> PageSource.TryDropPages dropped them again (Region.PagesDropped is not consulted there)");
        }
    }

    [Theory]
    [InlineData(LargeSize)]
    [InlineData(HugeSize)]
    public void ATrimRacingATickThatDropsPagesStillLetsEveryCachedRegionGo(int size)
    {
        var time = new FakeTimeProvider();
        var allocator = new PausingAdviceAllocator();
        using TieredMemoryPool pool = Pool(time, allocator);
        ReturnToSharedCache(RentFilled(pool, size, Cached, 0x10));

        Exception? tickFailed = null;
        Thread ticking = TickUntilPaused(time, allocator, Delay, PageAdvice.DontNeed, error => tickFailed = error);
        try
        {
            pool.Trim();
        }
        finally
        {
            allocator.Resume();
            ticking.Join();
        }

        Assert.Null(tickFailed);
        TieredMemoryPoolStatistics statistics = pool.GetStatistics();
        long retained = statistics.Large.BytesRetained + statistics.Huge.BytesRetained;
        Assert.True(retained == 0, $"Trim() promises every cached region leaves the pool, but after a trim that raced the drop pass {retained} bytes stay cached (and counted against MaxBytesInUse) until the next tick: RegionTier.UnmapCached -> RegionCache.TakeOldest skips regions marked DroppingPages, and DropPagesDueAtNextTick unmaps them afterwards only if the tier was disposed or is over its limits");
    }

    [Theory]
    [InlineData(10)]
    [InlineData(20)]
    [InlineData(30)]
    public void AShortIdleDelayDoesNotDropACachedRegionsPagesBeforeThreeQuartersOfTheDelay(int delayMilliseconds)
    {
        Skip.Unless(ProcessMappings.CanRead, "residency is read with mincore (Linux)");
        var time = new FakeTimeProvider();
        TimeSpan delay = TimeSpan.FromMilliseconds(delayMilliseconds);
        TimeSpan period = TimeSpan.FromMilliseconds(10); // the shortest period: a quarter of these delays is shorter
        TimeSpan beforeTick = TimeSpan.FromMilliseconds(0.5);
        using var pool = new TieredMemoryPool(new TieredMemoryPoolOptions { TimeProvider = time, IdleReleaseDelay = delay, PageAllocator = WithoutReservedHugepages() });

        // Returned half a millisecond before the first tick (stamp 0), then ticked on, period by period, until a
        // moment before three quarters of the delay have passed since the return.
        List<IMemoryOwner<byte>> owners = RentFilled(pool, LargeSize, 3, 0x20);
        List<OwnerRange> ranges = owners.Select(SafetyCases.RangeOf).ToList();
        time.Advance(period - beforeTick);
        ReturnToSharedCache(owners);
        TimeSpan sinceReturn = TimeSpan.Zero;
        TimeSpan step = beforeTick;
        while (sinceReturn + step < delay * 3 / 4)
        {
            time.Advance(step);
            sinceReturn += step;
            step = period;
        }

        Assert.True(pool.IdleTicks >= 1, $"no tick came in {sinceReturn.TotalMilliseconds} ms: the test proves nothing");
        foreach (OwnerRange range in ranges)
        {
            int resident = ProcessMappings.ResidentPages(range.Start, range.Length);
            int pages = (range.Length + Environment.SystemPageSize - 1) / Environment.SystemPageSize;
            Assert.True(resident == pages, $"{range}, returned {sinceReturn.TotalMilliseconds} ms ago ({sinceReturn / delay:F2} of its {delayMilliseconds} ms idle delay, at tick {pool.IdleTicks}), has only {resident} of {pages} pages resident: its pages were dropped before three quarters of the delay. IdleClock.WaitsOutDelayByNextTick (Epoch - stamp >= DelayInTicks) assumes four ticks per delay, but a delay under 40 ms has the 10 ms minimum period and DelayInTicks of 1 to 3");
        }
    }

    [Theory]
    [InlineData(LargeSize)]
    [InlineData(HugeSize)]
    public void ARegionIdleInAThreadsSlotLeavesResidentMemoryByTheSameTickAsTheCachedOnes(int size)
    {
        Skip.Unless(ProcessMappings.CanRead, "residency is read with mincore (Linux)");
        var time = new FakeTimeProvider();
        TimeSpan period = Delay / 4;
        using var pool = new TieredMemoryPool(OptionsWithoutReservedHugepages(time));

        // A tenth of a period in: one region returned to the shared cache, one parked in this thread's slot.
        SafetyCases.Advance(time, period / 10);
        List<IMemoryOwner<byte>> owners = RentFilled(pool, size, 2, 0x31);
        OwnerRange cached = SafetyCases.RangeOf(owners[0]);
        OwnerRange parked = SafetyCases.RangeOf(owners[1]);
        ReturnToSharedCache(owners.GetRange(0, 1));
        owners[1].Dispose();

        // The fourth tick, 0.975 delays after both returns: it drops the cached region's pages.
        SafetyCases.Advance(time, (period * 3.9) + TimeSpan.FromMilliseconds(1));
        Assert.True(ProcessMappings.ResidentPages(cached.Start, cached.Length) == 0, $"the cached region {cached} kept its pages past the fourth tick: the test proves nothing");
        int resident = ProcessMappings.ResidentPages(parked.Start, parked.Length);
        Assert.True(resident == 0, $"the region parked in the returning thread's slot {parked}, idle as long as the cached one, still has {resident} pages resident at the tick that dropped the cached one's: DropPagesDueAtNextTick walks only the shared cache, and the slot gives its region back only at the next tick (EmptySlots(onlyUnused) with HasWaitedOutDelay(LastParkAt)), a quarter delay past the delay");
    }

    [Fact]
    public void ARegionCachedFromAnExitedThreadsSlotHasItsPagesDroppedByTheFourthTickAfterItsReturn()
    {
        Skip.Unless(ProcessMappings.CanRead, "residency is read with mincore (Linux)");
        var time = new FakeTimeProvider();
        TimeSpan period = Delay / 4;
        using var pool = new TieredMemoryPool(OptionsWithoutReservedHugepages(time));

        // Epoch 1: a region parked in a thread's slot, and one returned to the shared cache (the control); a third
        // rented now (so no rent takes a cached one) is returned at epoch 2.
        SafetyCases.Advance(time, period * 1.1);
        List<IMemoryOwner<byte>> control = RentFilled(pool, LargeSize, 1, 0x11);
        List<IMemoryOwner<byte>> later = RentFilled(pool, LargeSize, 1, 0x33);
        OwnerRange controlRange = SafetyCases.RangeOf(control[0]);
        OwnerRange parked = default;
        using var parkedNow = new ManualResetEventSlim();
        using var exit = new ManualResetEventSlim();
        var owner = new Thread(() =>
        {
            List<IMemoryOwner<byte>> mine = RentFilled(pool, LargeSize, 1, 0x22);
            parked = SafetyCases.RangeOf(mine[0]);
            mine[0].Dispose();
            parkedNow.Set();
            exit.Wait(TimeSpan.FromSeconds(10));
        });
        owner.Start();
        Assert.True(parkedNow.Wait(TimeSpan.FromSeconds(5)), "the slot's owner never parked its region");
        ReturnToSharedCache(control);

        // Epoch 2: a later return to the shared cache; then the slot's thread exits, and tick 3 caches its region
        // (stamped at epoch 1) behind the later one.
        SafetyCases.Advance(time, period);
        ReturnToSharedCache(later);
        exit.Set();
        owner.Join();

        // Tick 5, 0.975 delays after both epoch-1 returns: it drops the pages of every region returned at epoch 1.
        SafetyCases.Advance(time, (period * 2.9) + TimeSpan.FromMilliseconds(1));
        Assert.Equal(5, pool.IdleTicks);
        Assert.True(ProcessMappings.ResidentPages(controlRange.Start, controlRange.Length) == 0, $"the control region {controlRange} kept its pages past the fourth tick after its return: the test proves nothing");
        int resident = ProcessMappings.ResidentPages(parked.Start, parked.Length);
        Assert.True(resident == 0, $"the region {parked} returned at the same epoch but cached from an exited thread's slot still has {resident} pages resident at the fourth tick after its return: RetireUnsynchronized -> ReleaseInUse adds it at the newest end of the cache with its old stamp (LastParkAt), behind a region returned later, and DropPagesDueAtNextTick (like ReleaseIdle's unmap loop) stops at the first region not due, so it is dropped (and unmapped) a tick late");
    }

    /// <summary>The bytes one region of <paramref name="size"/> maps, read from a pool of its own.</summary>
    private static long MappedLengthOf(int size)
    {
        using var pool = new TieredMemoryPool(OptionsWithoutReservedHugepages(new FakeTimeProvider()));
        using IMemoryOwner<byte> owner = pool.Rent(size);
        TieredMemoryPoolStatistics statistics = pool.GetStatistics();
        return statistics.Large.BytesAllocated + statistics.Huge.BytesAllocated;
    }
}
