using System;
using System.Buffers;
using System.Collections.Generic;
using System.Globalization;
using System.Linq;
using Microsoft.Extensions.Time.Testing;

namespace Zipora.Buffers.Tests;

/// <summary>
/// A real kernel that refuses the pool's page drops: after <c>mlockall(MCL_CURRENT | MCL_FUTURE)</c> (what a
/// latency-sensitive server does) MADV_DONTNEED and MADV_FREE fail with EINVAL on every page the pool maps, and every
/// new mapping is populated at mmap. Each test runs in a process of its own, locked; what the statistics say is
/// compared with what the kernel says (<c>RssAnon</c>, the <c>Rss</c> of the pool's ranges in <c>/proc/self/smaps</c>).
/// </summary>
public sealed class LockedMemoryAdviceSafetyTests
{
    private const int MediumSize = 4096;
    private const int SmallSize = 100;
    private const int LargeSize = 100_000;
    private const int HugeSize = 3_000_000;
    private const long Megabyte = 1024 * 1024;
    private static readonly TimeSpan s_delay = SafetyCases.IdleDelay;
    private static readonly TimeSpan s_period = SafetyCases.IdleDelay / 4;

    [Fact]
    public void UnderMlockallARefusedPageDropIsStillCountedAsCommittedAndNothingIsClaimedGivenBackBeforeItsUnmap()
    {
        if (IsolatedProcess.RunsElsewhere(typeof(LockedMemoryAdviceSafetyTests), nameof(UnderMlockallARefusedPageDropIsStillCountedAsCommittedAndNothingIsClaimedGivenBackBeforeItsUnmap)))
        {
            return;
        }

        LockOrSkip();
        var time = new FakeTimeProvider();
        using var pool = new TieredMemoryPool(new TieredMemoryPoolOptions { TimeProvider = time, IdleReleaseDelay = s_delay });
        List<OwnerRange> regions = RentFillAndReturn(pool, LargeSize, 24).Concat(RentFillAndReturn(pool, HugeSize, 4)).ToList();
        long regionBytes = RegionTierBytes(pool.GetStatistics());
        TieredMemoryPoolStatistics before = pool.GetStatistics();
        long residentBefore = ResidentOf(regions);

        // Returned a moment ago: a trim lets them go, drops their pages (refused: locked) and defers the unmap.
        pool.Trim();
        TieredMemoryPoolStatistics trimmed = pool.GetStatistics();
        long residentTrimmed = ResidentOf(regions);
        Report("regions before trim", before, residentBefore);
        Report("regions after trim", trimmed, residentTrimmed);
        Assert.True(residentTrimmed >= residentBefore - Megabyte, $"a trim under mlockall dropped {residentBefore - residentTrimmed} resident bytes of locked regions: the kernel should have refused");
        long claimedEvicted = Evicted(trimmed, regionTiers: true) - Evicted(before, regionTiers: true);
        long reallyGone = residentBefore - residentTrimmed;
        Assert.True(
            claimedEvicted <= reallyGone + Megabyte,
            $"the region tiers claim {claimedEvicted} bytes given back to the OS (BytesEvicted) while the kernel refused the page drop: {residentTrimmed} of their {regionBytes} bytes are still resident, {trimmed.BytesAwaitingRelease} bytes 'awaiting release, pages dropped'");

        // A delay later the deferred unmap runs (munmap of a locked page works): now the memory is really gone.
        SafetyCases.Advance(time, s_delay + s_period);
        TieredMemoryPoolStatistics released = pool.GetStatistics();
        long residentReleased = ResidentOf(regions);
        Report("regions a delay after trim", released, residentReleased);
        Assert.Equal(0, released.BytesAwaitingRelease);
        Assert.Equal(0, released.UnmapFailures);
        Assert.True(residentReleased == 0, $"{residentReleased} bytes of the regions are still resident after their unmap");
    }

    [Fact]
    public void UnderMlockallSlabPagesWhoseDropWasRefusedStayRetainedAndGoAtTheFirstTickAfterMunlockall()
    {
        if (IsolatedProcess.RunsElsewhere(typeof(LockedMemoryAdviceSafetyTests), nameof(UnderMlockallSlabPagesWhoseDropWasRefusedStayRetainedAndGoAtTheFirstTickAfterMunlockall)))
        {
            return;
        }

        LockOrSkip();
        var time = new FakeTimeProvider();
        using var pool = new TieredMemoryPool(new TieredMemoryPoolOptions { TimeProvider = time, IdleReleaseDelay = s_delay });

        // One block of every 16 kept: every slab stays mapped, and its free pages can only be dropped, never unmapped.
        (List<IMemoryOwner<byte>> keptMedium, long freeMedium) = RentKeepingOneIn(pool, MediumSize, 8192, 16);
        (List<IMemoryOwner<byte>> keptSmall, long freeSmall) = RentKeepingOneIn(pool, SmallSize, 65536, 512);
        long rssBefore = ProcessLimits.RssAnon;
        TieredMemoryPoolStatistics before = pool.GetStatistics();
        Report("slabs before", before, rssBefore);

        // Two delays of ticks: the tiers' idle release and a trim both try to drop the free pages; the kernel refuses.
        SafetyCases.Advance(time, 2 * s_delay);
        pool.Trim();
        ((IReclaimablePool)pool).TrimUnderPressure();
        TieredMemoryPoolStatistics locked = pool.GetStatistics();
        long rssLocked = ProcessLimits.RssAnon;
        Report("slabs locked, 2 delays + trim", locked, rssLocked);
        Assert.True(rssLocked > rssBefore - (4 * Megabyte), $"resident memory fell from {rssBefore} to {rssLocked} though every page is locked");
        long held = SlabHeld(locked);
        Assert.True(
            held >= (freeMedium + freeSmall) * 9 / 10,
            $"the slab tiers count {held} bytes retained or fragmented, but {freeMedium + freeSmall} bytes of free blocks are still committed (the kernel refused to drop them): medium {locked.Medium}, small {locked.Small}");
        Assert.True(
            Evicted(locked, regionTiers: false) - Evicted(before, regionTiers: false) <= Megabyte,
            $"the slab tiers claim {Evicted(locked, regionTiers: false) - Evicted(before, regionTiers: false)} bytes given back while resident memory went from {rssBefore} to {rssLocked}");

        // Unlocked: the next tick may drop them, and then resident memory must fall by what the statistics stop counting.
        ProcessLimits.UnlockAll();
        SafetyCases.Advance(time, s_period);
        TieredMemoryPoolStatistics unlocked = pool.GetStatistics();
        long rssUnlocked = ProcessLimits.RssAnon;
        Report("slabs a tick after munlockall", unlocked, rssUnlocked);
        long stoppedCounting = held - SlabHeld(unlocked);
        Assert.True(
            rssLocked - rssUnlocked >= stoppedCounting - (4 * Megabyte),
            $"the slab tiers stopped counting {stoppedCounting} bytes but resident memory fell only {rssLocked - rssUnlocked}");
        Assert.True(
            SlabHeld(unlocked) <= held / 10,
            $"a tick after munlockall the slab tiers still hold {SlabHeld(unlocked)} of {held} bytes of free blocks committed (resident {rssLocked} -> {rssUnlocked}); the refused drop was never tried again");
        GC.KeepAlive(keptMedium);
        GC.KeepAlive(keptSmall);
        keptMedium.Concat(keptSmall).ToList().ForEach(owner => owner.Dispose());
    }

    private static void LockOrSkip()
    {
        Skip.Unless(ProcessLimits.Supported, "mlockall and /proc/self/status are Linux's; the capability calls are numbered for x64");
        int error = ProcessLimits.LockAll();
        Skip.Unless(error == 0, $"mlockall(MCL_CURRENT | MCL_FUTURE) refused with errno {error}");
    }

    private static List<OwnerRange> RentFillAndReturn(TieredMemoryPool pool, int size, int count)
    {
        var owners = Enumerable.Range(0, count).Select(_ => pool.Rent(size)).ToList();
        owners.ForEach(owner => owner.Memory.Span.Fill(0xAB));
        List<OwnerRange> ranges = owners.Select(SafetyCases.RangeOf).ToList();
        owners.ForEach(owner => owner.Dispose());
        return ranges;
    }

    /// <summary>Rents <paramref name="count"/> blocks, fills them, keeps one in every <paramref name="oneIn"/> and returns the rest; the bytes returned.</summary>
    private static (List<IMemoryOwner<byte>> Kept, long FreeBytes) RentKeepingOneIn(TieredMemoryPool pool, int size, int count, int oneIn)
    {
        var owners = Enumerable.Range(0, count).Select(_ => pool.Rent(size)).ToList();
        owners.ForEach(owner => owner.Memory.Span.Fill(0xCD));
        var kept = new List<IMemoryOwner<byte>>();
        long freeBytes = 0;
        for (int i = 0; i < owners.Count; i++)
        {
            if (i % oneIn == 0)
            {
                kept.Add(owners[i]);
            }
            else
            {
                freeBytes += owners[i].Memory.Length;
                owners[i].Dispose();
            }
        }

        return (kept, freeBytes);
    }

    /// <summary>Resident bytes of the mappings that hold the ranges, each mapping counted once.</summary>
    private static long ResidentOf(List<OwnerRange> ranges)
    {
        long resident = 0;
        var seen = new HashSet<nint>();
        foreach (OwnerRange range in ranges)
        {
            nint page = range.Start & ~(nint)(Environment.SystemPageSize - 1);
            if (seen.Add(page))
            {
                resident += ProcessLimits.SmapsOf(range.Start, range.Length).Rss;
            }
        }

        return resident;
    }

    private static long RegionTierBytes(TieredMemoryPoolStatistics statistics) =>
        statistics.Large.BytesRetained + statistics.Huge.BytesRetained + statistics.Large.BytesInUse + statistics.Huge.BytesInUse;

    private static long SlabHeld(TieredMemoryPoolStatistics statistics) =>
        statistics.Small.BytesRetained + statistics.Small.BytesFragmented + statistics.Medium.BytesRetained + statistics.Medium.BytesFragmented;

    private static long Evicted(TieredMemoryPoolStatistics statistics, bool regionTiers) => regionTiers
        ? statistics.Large.BytesEvicted + statistics.Huge.BytesEvicted
        : statistics.Small.BytesEvicted + statistics.Medium.BytesEvicted;

    private static void Report(string moment, TieredMemoryPoolStatistics statistics, long resident)
    {
        string line = string.Create(
            CultureInfo.InvariantCulture,
            $"{moment}: measured {resident / 1024} KB; retained S/M/L/H {statistics.Small.BytesRetained / 1024}/{statistics.Medium.BytesRetained / 1024}/{statistics.Large.BytesRetained / 1024}/{statistics.Huge.BytesRetained / 1024} KB, fragmented S/M {statistics.Small.BytesFragmented / 1024}/{statistics.Medium.BytesFragmented / 1024} KB, evicted S/M/L/H {statistics.Small.BytesEvicted / 1024}/{statistics.Medium.BytesEvicted / 1024}/{statistics.Large.BytesEvicted / 1024}/{statistics.Huge.BytesEvicted / 1024} KB, awaiting {statistics.BytesAwaitingRelease / 1024} KB, in use {statistics.BytesInUse / 1024} KB, mmap/munmap {statistics.MmapCalls}/{statistics.MunmapCalls}, unmap failures {statistics.UnmapFailures}, hugepage {statistics.HugepageBytes / 1024} KB, VmLck {ProcessLimits.Status("VmLck") / 1024} KB");
        TestContext.Current.TestOutputHelper?.WriteLine(line);
        Console.WriteLine(line);
    }
}
