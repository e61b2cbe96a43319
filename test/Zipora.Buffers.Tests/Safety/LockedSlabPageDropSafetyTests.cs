using System.Buffers;
using System.Collections.Generic;
using System.Linq;
using Microsoft.Extensions.Time.Testing;
using Zipora.Buffers.Native;

namespace Zipora.Buffers.Tests;

/// <summary>
/// Small and medium slabs kept mapped by one rented block each, in a process under <c>mlockall</c>: the kernel
/// refuses to drop the pages of their free blocks, and the statistics must keep counting those bytes as committed
/// (<c>BytesRetained</c>, <c>BytesFragmented</c>) and claim none of them given back (<c>BytesEvicted</c>), as
/// <c>RssAnon</c> shows. Once the process unlocks, the pool's idle release should give them back.
/// </summary>
public sealed class LockedSlabPageDropSafetyTests
{
    private const int MediumSize = 4096;
    private const int SmallSize = 100;
    private const long Megabyte = LockedMemoryAdviceSafetyTests.Megabyte;
    private static readonly System.TimeSpan s_delay = SafetyCases.IdleDelay;
    private static readonly System.TimeSpan s_period = SafetyCases.IdleDelay / 4;

    [Fact]
    public void UnderMlockallSlabPagesWhoseDropWasRefusedStayCountedAsCommittedAndNoneAsGivenBack()
    {
        if (IsolatedProcess.RunsElsewhere(typeof(LockedSlabPageDropSafetyTests), nameof(UnderMlockallSlabPagesWhoseDropWasRefusedStayCountedAsCommittedAndNoneAsGivenBack)))
        {
            return;
        }

        // MADV_DONTNEED, then MADV_FREE (UseLazyFree): the kernel refuses both on locked pages.
        foreach (bool lazyFree in new[] { false, true })
        {
            (TieredMemoryPool pool, FakeTimeProvider _, List<IMemoryOwner<byte>> kept, long free, long held, long _) = PinnedSlabsTrimmedUnderMlockall(PageAllocator.Default, lazyFree);
            Assert.True(held >= free * 9 / 10, $"the slab tiers count {held} bytes retained or fragmented, but {free} bytes of free blocks are still committed (the kernel refused to drop them; lazy free {lazyFree})");
            kept.ForEach(owner => owner.Dispose());
            pool.Dispose();
        }
    }

    /// <summary>
    /// A slab tier whose idle trim the kernel refused rests until it is used again, as over the retained cap (see
    /// <c>RetainedCapTests</c>; the README says so): after a <c>munlockall</c> its free blocks stay committed while the
    /// process is idle, and go back at the first idle delay after the next rent and return.
    /// </summary>
    [Fact]
    public void SlabPagesWhoseDropWasRefusedUnderMlockallGoBackAtTheIdleDelayAfterThePoolIsUsedAgain()
    {
        if (IsolatedProcess.RunsElsewhere(typeof(LockedSlabPageDropSafetyTests), nameof(SlabPagesWhoseDropWasRefusedUnderMlockallGoBackAtTheIdleDelayAfterThePoolIsUsedAgain)))
        {
            return;
        }

        (TieredMemoryPool pool, FakeTimeProvider time, List<IMemoryOwner<byte>> kept, long _, long held, long rssLocked) = PinnedSlabsTrimmedUnderMlockall(PageAllocator.Default, lazyFree: false);

        // Unlocked, and no rent or return since: the tiers rest, holding what the kernel refused to drop.
        ProcessLimits.UnlockAll();
        SafetyCases.Advance(time, s_delay + s_period);
        TieredMemoryPoolStatistics resting = pool.GetStatistics();
        LockedMemoryAdviceSafetyTests.Report("slabs a delay and a tick after munlockall, idle", resting, ProcessLimits.RssAnon);
        Assert.True(SlabHeld(resting) >= held / 2, $"the slab tiers were expected to rest after a refused trim, holding their free blocks; they hold {SlabHeld(resting)} of {held} bytes");

        // Used again, then idle for a delay and a tick: the free blocks go back, and resident memory falls with them.
        pool.Rent(64).Dispose();
        pool.Rent(4096).Dispose();
        SafetyCases.Advance(time, s_delay + s_period);
        TieredMemoryPoolStatistics unlocked = pool.GetStatistics();
        long rssUnlocked = ProcessLimits.RssAnon;
        LockedMemoryAdviceSafetyTests.Report("slabs a delay and a tick after the pool was used again", unlocked, rssUnlocked);
        long stoppedCounting = held - SlabHeld(unlocked);
        Assert.True(rssLocked - rssUnlocked >= stoppedCounting - (4 * Megabyte), $"the slab tiers stopped counting {stoppedCounting} bytes but resident memory fell only {rssLocked - rssUnlocked}");
        Assert.True(
            SlabHeld(unlocked) <= held / 10,
            $"a delay after the pool was used again, the slab tiers still hold {SlabHeld(unlocked)} of {held} bytes of free blocks committed (RssAnon {rssLocked} -> {rssUnlocked})");
        kept.ForEach(owner => owner.Dispose());
        pool.Dispose();
    }

    [Fact]
    public void AnIdlePoolWhoseDropsTheKernelKeepsRefusingDoesNotAskAgainAtEveryTick()
    {
        if (IsolatedProcess.RunsElsewhere(typeof(LockedSlabPageDropSafetyTests), nameof(AnIdlePoolWhoseDropsTheKernelKeepsRefusingDoesNotAskAgainAtEveryTick)))
        {
            return;
        }

        var allocator = new AdviceCountingAllocator();
        (TieredMemoryPool pool, FakeTimeProvider time, List<IMemoryOwner<byte>> kept, long _, long held, long _) = PinnedSlabsTrimmedUnderMlockall(allocator, lazyFree: false);

        // Each of the two trims above asked once per run of free pages: that is what one trim costs.
        SafetyCases.Advance(time, s_delay);
        long perTrim = allocator.Refused;
        SafetyCases.Advance(time, 4 * s_delay);
        long later = allocator.Refused - perTrim;
        TestContext.Current.TestOutputHelper?.WriteLine($"refused page drops: {perTrim} in the first delay (two trims and the first idle release), {later} in the four delays after");
        TieredMemoryPoolStatistics locked = pool.GetStatistics();
        Assert.True(SlabHeld(locked) >= held * 9 / 10, $"still locked, the slab tiers should still count what the kernel refused to drop: {SlabHeld(locked)} of {held}");
        Assert.True(perTrim > 0, "the kernel should have refused the drops of locked pages");
        Assert.True(
            later <= 2 * perTrim,
            $"idle for four delays (16 ticks) with the drops refused, the pool asked {later} more times, {(double)later / perTrim:F1} times the {perTrim} refusals of its first trims: it should try once per delay at most");
        kept.ForEach(owner => owner.Dispose());
        pool.Dispose();
    }

    /// <summary>
    /// Locks the process, rents 32 MB of medium and 6 MB of small blocks keeping one in every slab, then has two delays
    /// of ticks, a trim and a pressure trim try to drop the free pages; checks resident memory did not fall, nor
    /// BytesEvicted rise.
    /// </summary>
    private static (TieredMemoryPool Pool, FakeTimeProvider Time, List<IMemoryOwner<byte>> Kept, long FreeBytes, long Held, long RssLocked) PinnedSlabsTrimmedUnderMlockall(PageAllocator allocator, bool lazyFree)
    {
        LockedMemoryAdviceSafetyTests.LockOrSkip();
        var time = new FakeTimeProvider();
        var pool = new TieredMemoryPool(new TieredMemoryPoolOptions { PageAllocator = allocator, TimeProvider = time, IdleReleaseDelay = s_delay, UseLazyFree = lazyFree });
        (List<IMemoryOwner<byte>> keptMedium, long freeMedium) = RentKeepingOneIn(pool, MediumSize, 8192, 16);
        (List<IMemoryOwner<byte>> keptSmall, long freeSmall) = RentKeepingOneIn(pool, SmallSize, 65536, 512);
        long rssBefore = ProcessLimits.RssAnon;
        TieredMemoryPoolStatistics before = pool.GetStatistics();
        LockedMemoryAdviceSafetyTests.Report("slabs, one block of each kept", before, rssBefore);

        SafetyCases.Advance(time, 2 * s_delay);
        pool.Trim();
        ((IReclaimablePool)pool).TrimUnderPressure();
        TieredMemoryPoolStatistics locked = pool.GetStatistics();
        long rssLocked = ProcessLimits.RssAnon;
        LockedMemoryAdviceSafetyTests.Report("slabs locked, two delays of ticks and two trims later", locked, rssLocked);
        Assert.True(rssLocked > rssBefore - (4 * Megabyte), $"resident memory fell from {rssBefore} to {rssLocked} though every page is locked");
        long claimed = LockedMemoryAdviceSafetyTests.Evicted(locked, regionTiers: false) - LockedMemoryAdviceSafetyTests.Evicted(before, regionTiers: false);
        Assert.True(claimed <= Megabyte, $"the slab tiers claim {claimed} bytes given back while resident memory went from {rssBefore} to {rssLocked}");
        return (pool, time, keptMedium.Concat(keptSmall).ToList(), freeMedium + freeSmall, SlabHeld(locked), rssLocked);
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

    private static long SlabHeld(TieredMemoryPoolStatistics statistics) =>
        statistics.Small.BytesRetained + statistics.Small.BytesFragmented + statistics.Medium.BytesRetained + statistics.Medium.BytesFragmented;
}
