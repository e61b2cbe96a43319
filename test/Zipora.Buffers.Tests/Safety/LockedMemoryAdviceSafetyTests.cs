using System;
using System.Buffers;
using System.Collections.Generic;
using System.Globalization;
using System.Linq;
using System.Threading;
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
    private const int OtherClassSize = 150_000;
    private const int HugeSize = 3_000_000;
    internal const long Megabyte = 1024 * 1024;
    private static readonly TimeSpan s_delay = SafetyCases.IdleDelay;
    private static readonly TimeSpan s_period = SafetyCases.IdleDelay / 4;

    [Fact]
    public void UnderMlockallEveryTierRentsReturnsTrimsIdlesAndDisposesWithoutLosingAByteAndLeavesNoMappingBehind()
    {
        if (IsolatedProcess.RunsElsewhere(typeof(LockedMemoryAdviceSafetyTests), nameof(UnderMlockallEveryTierRentsReturnsTrimsIdlesAndDisposesWithoutLosingAByteAndLeavesNoMappingBehind)))
        {
            return;
        }

        LockOrSkip();
        foreach (OwnerMode mode in new[] { OwnerMode.Default, OwnerMode.ReuseOwners, OwnerMode.DiagnosticsAll })
        {
            RentHoldTrimAndDispose(mode);
        }
    }

    /// <summary>Two rounds of rents in every tier, half held, trimmed and ticked; then everything returned, the pool disposed and drained.</summary>
    private static void RentHoldTrimAndDispose(OwnerMode mode)
    {
        var allocator = new LiveMappingsAllocator();
        var time = new FakeTimeProvider();
        var pool = new TieredMemoryPool(allocator.PoolOptions(mode, time));
        var ranges = new List<OwnerRange>();
        var kept = new List<IMemoryOwner<byte>>();
        var stamps = new List<long>();
        for (int round = 0; round < 2; round++)
        {
            foreach ((int size, int count) in new[] { (SmallSize, 600), (MediumSize, 200), (LargeSize, 20), (HugeSize, 3) })
            {
                for (int i = 0; i < count; i++)
                {
                    IMemoryOwner<byte> owner = pool.Rent(size);
                    long stamp = (round * 1_000_000L) + (size * 10L) + i;
                    SafetyCases.Stamp(owner, stamp, "a rent under mlockall");
                    ranges.Add(SafetyCases.RangeOf(owner));
                    if (i % 2 == 0)
                    {
                        kept.Add(owner);
                        stamps.Add(stamp);
                    }
                    else
                    {
                        owner.Dispose();
                    }
                }
            }

            // Every way the pool gives memory back, each refused by the kernel for the locked pages.
            pool.Trim();
            ((IReclaimablePool)pool).TrimUnderPressure();
            SafetyCases.Advance(time, s_period * 3);
            SafetyCases.AssertDisjoint(kept, $"{mode} rents held under mlockall, round {round}");
            SafetyCases.AssertStamps(kept, stamps, $"{mode} rents held through trims and ticks under mlockall, round {round}");
            Assert.Null(SafetyCases.NegativeFigures(pool.GetStatistics()));
        }

        long residentHeld = ResidentOf(ranges);
        Report($"{mode}: every tier, held and returned, trimmed and ticked", pool.GetStatistics(), residentHeld);
        kept.ForEach(owner => owner.Dispose());
        pool.Dispose();
        SafetyCases.AssertDrainedThreeDelaysLater(pool, time);
        TieredMemoryPoolStatistics drained = pool.GetStatistics();
        long residentDrained = ResidentOf(ranges);
        Report($"{mode}: every tier, disposed and drained", drained, residentDrained);
        Assert.True(drained.UnmapFailures == 0, $"munmap of locked memory should work, yet {drained.UnmapFailures} were refused");
        allocator.AssertNoneLive($"a {mode} pool disposed and drained under mlockall");
        // The exact check is the OS layer's list above; a freed range may be mapped again by the runtime meanwhile
        // (resident at once under mlockall), hence a tenth's slack.
        Assert.True(residentDrained <= residentHeld / 10, $"{mode}: the pool unmapped everything, but {residentDrained} of the {residentHeld} resident bytes of its buffers are still resident: {string.Join("; ", ranges.Where(range => ResidentOf([range]) > 0).Take(4).Select(range => $"{range} in {ProcessMappings.Describe(range.Start, range.Length)}"))}");
    }

    [Fact]
    public void UnderMlockallARegionLetGoOfWithinItsDelayIsNotCountedAsEvictedUntilItsUnmapGivesItBack()
    {
        if (IsolatedProcess.RunsElsewhere(typeof(LockedMemoryAdviceSafetyTests), nameof(UnderMlockallARegionLetGoOfWithinItsDelayIsNotCountedAsEvictedUntilItsUnmapGivesItBack)))
        {
            return;
        }

        LockOrSkip();
        var time = new FakeTimeProvider();
        using var pool = new TieredMemoryPool(new TieredMemoryPoolOptions { TimeProvider = time, IdleReleaseDelay = s_delay });
        List<OwnerRange> regions = RentFillAndReturn(pool, LargeSize, 24).Concat(RentFillAndReturn(pool, HugeSize, 4)).ToList();
        TieredMemoryPoolStatistics before = pool.GetStatistics();
        long regionBytes = before.Large.BytesRetained + before.Huge.BytesRetained;
        long residentBefore = ResidentOf(regions);
        Report("regions returned", before, residentBefore);

        // Returned a moment ago: a trim lets them go, drops their pages (refused: locked) and leaves the unmap for later.
        pool.Trim();
        TieredMemoryPoolStatistics trimmed = pool.GetStatistics();
        long residentTrimmed = ResidentOf(regions);
        Report("regions trimmed", trimmed, residentTrimmed);
        Assert.True(residentTrimmed >= residentBefore - Megabyte, $"a trim under mlockall dropped {residentBefore - residentTrimmed} resident bytes of locked regions: the kernel should have refused");
        Assert.True(trimmed.BytesAwaitingRelease == regionBytes, $"the {regionBytes} bytes let go of should await their unmap: {trimmed.BytesAwaitingRelease}");
        long claimed = Evicted(trimmed, regionTiers: true) - Evicted(before, regionTiers: true);
        Assert.True(
            claimed <= residentBefore - residentTrimmed + Megabyte,
            $"the region tiers claim {claimed} bytes given back to the OS (BytesEvicted) while the kernel refused the page drop: {residentTrimmed} of their {regionBytes} bytes are still resident");

        // A delay later the deferred unmap runs (munmap of locked pages works): now the memory is gone, and counted so.
        SafetyCases.Advance(time, s_delay + s_period);
        TieredMemoryPoolStatistics released = pool.GetStatistics();
        long residentReleased = ResidentOf(regions);
        Report("regions a delay after the trim", released, residentReleased);
        Assert.True(released.BytesAwaitingRelease == 0 && released.UnmapFailures == 0, $"the regions should be unmapped a delay after the trim: {released}");
        Assert.True(residentReleased == 0, $"{residentReleased} bytes of the regions are still resident after their unmap");
        Assert.True(
            Evicted(released, regionTiers: true) - Evicted(before, regionTiers: true) == regionBytes,
            $"the {regionBytes} bytes unmapped should be counted as evicted once: {Evicted(released, regionTiers: true) - Evicted(before, regionTiers: true)}");
    }

    [Fact]
    public void UnderMlockallRegionsWhoseDropWasRefusedStillCountAgainstMaxBytesInUseUntilTheirUnmap()
    {
        if (IsolatedProcess.RunsElsewhere(typeof(LockedMemoryAdviceSafetyTests), nameof(UnderMlockallRegionsWhoseDropWasRefusedStillCountAgainstMaxBytesInUseUntilTheirUnmap)))
        {
            return;
        }

        LockOrSkip();
        var time = new FakeTimeProvider();
        using var pool = new TieredMemoryPool(new TieredMemoryPoolOptions { TimeProvider = time, IdleReleaseDelay = s_delay, MaxBytesInUse = 4 * Megabyte });
        List<OwnerRange> first = RentFillAndReturn(pool, LargeSize, 30);

        // Let go of within the delay: the drop is refused, so the 3.3 MB stay committed and must stay counted.
        pool.Trim();
        long resident = ResidentOf(first);
        var owners = new List<IMemoryOwner<byte>>();
        InsufficientMemoryException? refused = null;
        // Buffers of another class (160 KB), which cannot take the let-go regions back (rents of their own size do, and
        // add nothing): four fit beside the 3.3 MB, and ten would if those no longer counted.
        while (owners.Count < 10 && refused is null)
        {
            try
            {
                owners.Add(pool.Rent(OtherClassSize));
            }
            catch (InsufficientMemoryException exception)
            {
                refused = exception;
            }
        }

        Assert.True(refused is not null, $"{resident} bytes the kernel refused to drop are still resident, yet {owners.Count} more regions fitted under a 4 MB MaxBytesInUse");
        Assert.Contains("MaxBytesInUse", refused.Message, StringComparison.Ordinal);
        owners.ForEach(owner => owner.Dispose());

        // Unmapped a delay later: now they fit.
        SafetyCases.Advance(time, s_delay + s_period);
        owners = Enumerable.Range(0, 30).Select(_ => pool.Rent(LargeSize)).ToList();
        owners.ForEach(owner => owner.Dispose());
    }

    [Fact]
    public void UnderMlockallOnTheRealClockWithAShortDelayEveryTierDrainsWithoutRefusedUnmapsAndResidentMemoryFalls()
    {
        if (IsolatedProcess.RunsElsewhere(typeof(LockedMemoryAdviceSafetyTests), nameof(UnderMlockallOnTheRealClockWithAShortDelayEveryTierDrainsWithoutRefusedUnmapsAndResidentMemoryFalls)))
        {
            return;
        }

        LockOrSkip();

        // A first round makes the runtime's timer thread and workers, whose stacks (resident at once under mlockall)
        // would otherwise land in the ranges the measured round's pool unmaps, and read as its memory still resident.
        for (int round = 0; round < 2; round++)
        {
            var allocator = new LiveMappingsAllocator();
            RentIdleAndDispose(allocator, measure: round == 1);
        }
    }

    private static void RentIdleAndDispose(LiveMappingsAllocator allocator, bool measure)
    {
        var pool = new TieredMemoryPool(new TieredMemoryPoolOptions { PageAllocator = allocator, IdleReleaseDelay = TimeSpan.FromMilliseconds(100) });
        var ranges = new List<OwnerRange>();
        foreach ((int size, int count) in new[] { (SmallSize, 1000), (MediumSize, 300), (LargeSize, 40), (HugeSize, 4) })
        {
            ranges.AddRange(RentFillAndReturn(pool, size, count));
        }

        TieredMemoryPoolStatistics returned = pool.GetStatistics();
        long residentReturned = ResidentOf(ranges);
        Report("real clock, every tier returned", returned, residentReturned);

        // A few delays of real ticks: the slab tiers go idle and unmap their wholly free slabs, the regions go too.
        Thread.Sleep(600);
        ((IReclaimablePool)pool).TrimUnderPressure();
        TieredMemoryPoolStatistics idle = pool.GetStatistics();
        long residentIdle = ResidentOf(ranges);
        Report("real clock, 600 ms idle", idle, residentIdle);
        if (!measure)
        {
            pool.Dispose();
            Thread.Sleep(300);
            return;
        }

        Assert.True(idle.BytesRetained + idle.BytesFragmented == 0, $"nothing is rented, so every slab and region should be unmapped after six delays: {idle}");
        Assert.True(residentIdle <= residentReturned / 10, $"the pool says it holds nothing, but {residentIdle} of the {residentReturned} resident bytes of its buffers are still resident: {string.Join("; ", ranges.Where(range => ResidentOf([range]) > 0).Take(5).Select(range => ProcessMappings.Describe(range.Start, range.Length)))}");
        pool.Dispose();
        Thread.Sleep(300);
        TieredMemoryPoolStatistics drained = pool.GetStatistics();
        Assert.True(drained.BytesAwaitingRelease == 0 && drained.UnmapFailures == 0, $"disposed and 3 delays later: {drained}");
        allocator.AssertNoneLive("a pool on the real clock disposed under mlockall, three delays later");
    }

    internal static void LockOrSkip()
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

    /// <summary>
    /// Resident bytes of the pages the ranges cover, each page once, from <c>mincore</c>: what the kernel holds of the
    /// pool's memory apart from the rest of the process (under <c>mlockall</c> every new thread's stack is resident
    /// too, which <c>RssAnon</c> would mix in). A page no longer mapped holds nothing, nor does one the runtime has
    /// mapped a file at since (an assembly loaded late lands in a range the pool unmapped, and mincore counts its page
    /// cache as resident).
    /// </summary>
    internal static long ResidentOf(IEnumerable<OwnerRange> ranges)
    {
        nint pageSize = Environment.SystemPageSize;
        var pages = new HashSet<nint>();
        foreach (OwnerRange range in ranges)
        {
            for (nint page = range.Start & ~(pageSize - 1); page < range.End; page += pageSize)
            {
                pages.Add(page);
            }
        }

        List<(ulong Start, ulong End)> files = ProcessMappings.FileBackedRanges();

        // One mincore per run of neighbouring pages (a run partly unmapped, or partly a file's, is read page by page).
        nint[] sorted = [.. pages.Order()];
        long resident = 0;
        for (int first = 0; first < sorted.Length;)
        {
            int end = first + 1;
            while (end < sorted.Length && sorted[end] == sorted[end - 1] + pageSize)
            {
                end++;
            }

            nint start = sorted[first];
            long length = (long)(end - first) * pageSize;
            bool touchesFile = files.Exists(mapping => (ulong)start < mapping.End && mapping.Start < (ulong)(start + (nint)length));
            if (!touchesFile && ProcessMappings.IsMappedNow(start, length))
            {
                resident += ProcessMappings.ResidentPages(start, length) * (long)pageSize;
            }
            else
            {
                for (int index = first; index < end; index++)
                {
                    nint page = sorted[index];
                    bool file = files.Exists(mapping => (ulong)page >= mapping.Start && (ulong)page < mapping.End);
                    if (!file && ProcessMappings.IsMappedNow(page, pageSize))
                    {
                        resident += ProcessMappings.ResidentPages(page, pageSize) * (long)pageSize;
                    }
                }
            }

            first = end;
        }

        return resident;
    }

    internal static long Evicted(TieredMemoryPoolStatistics statistics, bool regionTiers) => regionTiers
        ? statistics.Large.BytesEvicted + statistics.Huge.BytesEvicted
        : statistics.Small.BytesEvicted + statistics.Medium.BytesEvicted;

    internal static void Report(string moment, TieredMemoryPoolStatistics statistics, long resident)
    {
        string line = string.Create(
            CultureInfo.InvariantCulture,
            $"{moment}: measured {resident / 1024} KB; retained S/M/L/H {statistics.Small.BytesRetained / 1024}/{statistics.Medium.BytesRetained / 1024}/{statistics.Large.BytesRetained / 1024}/{statistics.Huge.BytesRetained / 1024} KB, fragmented S/M {statistics.Small.BytesFragmented / 1024}/{statistics.Medium.BytesFragmented / 1024} KB, evicted S/M/L/H {statistics.Small.BytesEvicted / 1024}/{statistics.Medium.BytesEvicted / 1024}/{statistics.Large.BytesEvicted / 1024}/{statistics.Huge.BytesEvicted / 1024} KB, awaiting {statistics.BytesAwaitingRelease / 1024} KB, in use {statistics.BytesInUse / 1024} KB, mmap/munmap {statistics.MmapCalls}/{statistics.MunmapCalls}, unmap failures {statistics.UnmapFailures}, fallbacks {statistics.FallbackAllocations}, hugepage {statistics.HugepageBytes / 1024} KB, VmLck {ProcessLimits.Status("VmLck") / 1024} KB");
        TestContext.Current.TestOutputHelper?.WriteLine(line);
        Console.WriteLine(line);
    }
}
