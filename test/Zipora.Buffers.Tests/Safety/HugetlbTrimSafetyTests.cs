using System;
using System.Buffers;
using Microsoft.Extensions.Time.Testing;
using Zipora.Buffers.Native;

namespace Zipora.Buffers.Tests;

/// <summary>
/// A region of reserved hugepages that the pool lets go of within its delay (<c>pool.Trim()</c>, a cap, memory
/// pressure, the pool's disposal) may still be written through a stale <c>Span</c>, so it is not unmapped yet; nor may
/// its pages be dropped (they would lose their hugetlb cgroup charge and fault over the limit: see
/// <see cref="HugetlbCgroupLimitSafetyTests"/>). Before, it kept its hugepages and its charge for the whole delay: a
/// trim gave nothing back, and <c>MaxBytesInUse</c> refused a rent the pool's own trim should have made room for. Its
/// hugepages are now swapped in place for fresh base pages, which go back at once as dropped pages do. Each test runs
/// a child process in a real hugetlb cgroup with reserved hugepages to spare; a SIGBUS or SIGSEGV ends the child
/// without a summary, which fails the test.
/// </summary>
[Collection(nameof(HugepageTests))]
public sealed class HugetlbTrimSafetyTests
{
    private const int SixMegabytes = 6 * 1024 * 1024;

    // A 6 MB buffer's class is 6 MB: three reserved 2 MB pages, the limit the tests set.
    private const long ThreeHugepages = SixMegabytes;

    [Fact]
    public unsafe void ATrimGivesTheHugepagesOfARecentRegionBackAtOnceAndAStaleWriteStillLands()
    {
        if (HugetlbCgroup.RunsElsewhereInside(typeof(HugetlbTrimSafetyTests), nameof(ATrimGivesTheHugepagesOfARecentRegionBackAtOnceAndAStaleWriteStillLands), ThreeHugepages))
        {
            return;
        }

        HugetlbCgroup.JoinFromChild();
        var time = new FakeTimeProvider();
        using var pool = new TieredMemoryPool(new TieredMemoryPoolOptions { TimeProvider = time, IdleReleaseDelay = SafetyCases.IdleDelay });
        long freeBefore = HugePageInfo.Read().Free2MBPages;
        IMemoryOwner<byte> first = pool.Rent(SixMegabytes);
        first.Memory.Span.Fill(0x11);
        nint stale = OwnerAddress.Of(first);
        Assert.Equal(ThreeHugepages, HugetlbCgroup.ChargedBytesFromChild());
        first.Dispose();

        // Returned a moment ago, so the trim must not unmap it: before, it kept its three pages and their charge.
        pool.Trim();
        Assert.Equal(0, HugetlbCgroup.ChargedBytesFromChild());
        Assert.Equal(freeBefore, HugePageInfo.Read().Free2MBPages);
        Assert.Equal(0, pool.GetStatistics().HugepageBytes);
        Assert.True(ProcessMappings.IsMapped(stale, SixMegabytes), "a region returned within the delay stays mapped for a stale write");

        // The charge it gave back lets the next region have reserved pages again, up to the limit.
        using IMemoryOwner<byte> second = pool.Rent(SixMegabytes);
        second.Memory.Span.Fill(0x22);
        Assert.Equal(ThreeHugepages, HugetlbCgroup.ChargedBytesFromChild());
        Assert.Equal(0, pool.GetStatistics().FallbackAllocations);

        // A stale write into the trimmed region (a caller's bug) lands on fresh base pages: no fault, no charge, and
        // nothing of the new owner's.
        new Span<byte>((void*)stale, SixMegabytes).Fill(0x33);
        Assert.Equal(-1, second.Memory.Span.IndexOfAnyExcept((byte)0x22));
        Assert.Equal(ThreeHugepages, HugetlbCgroup.ChargedBytesFromChild());

        // It still leaves once it has waited out the delay.
        SafetyCases.Advance(time, SafetyCases.IdleDelay * 2);
        Assert.False(ProcessMappings.IsMapped(stale, SixMegabytes), "the trimmed region is unmapped once it waited out the delay");
        TieredMemoryPoolStatistics statistics = pool.GetStatistics();
        Assert.Equal(0, statistics.BytesAwaitingRelease);

        // Its unmap was of base pages: the live region's hugepages are still counted, once.
        Assert.Equal(ThreeHugepages, statistics.HugepageBytes);
        Assert.Equal(ThreeHugepages, statistics.Huge.BytesEvicted);
    }

    [Fact]
    public void AtMaxBytesInUseTheTrimOfARecentHugetlbRegionMakesRoomForTheNextRent()
    {
        if (HugetlbCgroup.RunsElsewhereInside(typeof(HugetlbTrimSafetyTests), nameof(AtMaxBytesInUseTheTrimOfARecentHugetlbRegionMakesRoomForTheNextRent), ThreeHugepages))
        {
            return;
        }

        HugetlbCgroup.JoinFromChild();
        var time = new FakeTimeProvider();
        using var pool = new TieredMemoryPool(new TieredMemoryPoolOptions { TimeProvider = time, IdleReleaseDelay = SafetyCases.IdleDelay, MaxBytesInUse = 8 * 1024 * 1024 });
        using (IMemoryOwner<byte> first = pool.Rent(SixMegabytes))
        {
            first.Memory.Span.Fill(0x11);
        }

        // A 5 MB class maps three reserved pages too: with the 6 MB cached that crosses the 8 MB cap, so the rent trims
        // first. Base pages (or transparent hugepages) dropped by that trim stop counting; reserved ones, kept whole,
        // counted until their unmap a delay later, and the rent threw InsufficientMemoryException.
        using IMemoryOwner<byte> second = pool.Rent(5 * 1024 * 1024);
        second.Memory.Span.Fill(0x22);
        Assert.Equal(-1, second.Memory.Span.IndexOfAnyExcept((byte)0x22));
        TieredMemoryPoolStatistics statistics = pool.GetStatistics();
        Assert.Equal(ThreeHugepages, statistics.HugepageBytes);
        Assert.Equal(0, statistics.FallbackAllocations);
        Assert.Equal(ThreeHugepages, HugetlbCgroup.ChargedBytesFromChild());
    }

    [Fact]
    public void UnderMlockallATrimKeepsTheReservedPagesOfARecentRegionRatherThanLockingBasePagesInTheirPlace()
    {
        if (IsolatedProcess.RunsElsewhere(typeof(HugetlbTrimSafetyTests), nameof(UnderMlockallATrimKeepsTheReservedPagesOfARecentRegionRatherThanLockingBasePagesInTheirPlace)))
        {
            return;
        }

        using HugePageReservation? reservation = HugePageReservation.TryReserve(4, out string reason);
        Skip.When(reservation is null, reason);
        Skip.Unless(ProcessLimits.Supported, "mlockall is Linux's");
        int error = ProcessLimits.LockAll();
        Skip.Unless(error == 0, $"mlockall refused with errno {error}");
        var time = new FakeTimeProvider();
        long freeBefore = HugePageInfo.Read().Free2MBPages;
        var pool = new TieredMemoryPool(new TieredMemoryPoolOptions { TimeProvider = time, IdleReleaseDelay = SafetyCases.IdleDelay });
        using (IMemoryOwner<byte> first = pool.Rent(SixMegabytes))
        {
            first.Memory.Span.Fill(0x11);
        }

        long lockedBefore = ProcessLimits.Status("VmLck");
        pool.Trim();

        // Every new mapping of a process under MCL_FUTURE is populated and locked at once: base pages mapped over the
        // region would be 6 MB more locked and resident (charged to the memory cgroup, where hugepages are not) for
        // the whole delay, on a trim meant to give memory back. As a locked region's page drop is refused, it keeps
        // its hugepages, counted, until its unmap.
        Assert.Equal(freeBefore - 3, HugePageInfo.Read().Free2MBPages);
        Assert.True(ProcessLimits.Status("VmLck") - lockedBefore < SixMegabytes / 2, $"VmLck rose from {lockedBefore} to {ProcessLimits.Status("VmLck")} bytes at a trim");
        Assert.Equal(ThreeHugepages, pool.GetStatistics().HugepageBytes);

        pool.Dispose();
        SafetyCases.Advance(time, SafetyCases.IdleDelay * 2);
        Assert.Equal(freeBefore, HugePageInfo.Read().Free2MBPages);
    }

    [Fact]
    public void ARegionWhoseReservedPagesTheKernelKeptStaysCountedUntilItsUnmap()
    {
        using HugePageReservation? reservation = HugePageReservation.TryReserve(8, out string reason);
        Skip.When(reservation is null, reason);

        // The kernel refuses the base pages' map over the region (strict overcommit with no room for their charge).
        var allocator = new UnixPageAllocator { MapBasePagesOver = static (_, _) => false };
        var time = new FakeTimeProvider();
        long freeBefore = HugePageInfo.Read().Free2MBPages;
        var pool = new TieredMemoryPool(new TieredMemoryPoolOptions { PageAllocator = allocator, TimeProvider = time, IdleReleaseDelay = SafetyCases.IdleDelay, MaxBytesInUse = 8 * 1024 * 1024 });
        using (IMemoryOwner<byte> first = pool.Rent(SixMegabytes))
        {
            first.Memory.Span.Fill(0x11);
        }

        pool.Trim();

        // Still mapped on its reserved pages, as locked pages whose drop was refused: counted until the unmap.
        TieredMemoryPoolStatistics statistics = pool.GetStatistics();
        Assert.Equal(freeBefore - 3, HugePageInfo.Read().Free2MBPages);
        Assert.Equal(ThreeHugepages, statistics.HugepageBytes);
        Assert.Equal(ThreeHugepages, statistics.BytesAwaitingRelease);
        InsufficientMemoryException refused = Assert.Throws<InsufficientMemoryException>(() => pool.Rent(5 * 1024 * 1024));
        Assert.Contains("MaxBytesInUse", refused.Message, StringComparison.Ordinal);

        SafetyCases.Advance(time, SafetyCases.IdleDelay * 2);
        Assert.Equal(freeBefore, HugePageInfo.Read().Free2MBPages);
        Assert.Equal(0, pool.GetStatistics().BytesAwaitingRelease);
        using (IMemoryOwner<byte> second = pool.Rent(5 * 1024 * 1024))
        {
            second.Memory.Span.Fill(0x22);
        }

        // Its pages kept too, the last region leaves a delay after the pool's disposal: the machine's pages go back.
        pool.Dispose();
        SafetyCases.Advance(time, SafetyCases.IdleDelay * 2);
        Assert.Equal(freeBefore, HugePageInfo.Read().Free2MBPages);
    }
}
