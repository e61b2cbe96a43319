using System;
using Zipora.Buffers.Native;

namespace Zipora.Buffers.Tests;

/// <summary>
/// A hugetlb mapping let go of within its delay gives its reserved pages back by having base pages mapped over it
/// (<c>mmap(MAP_FIXED)</c>), never by a drop; HugetlbTrimSafetyTests runs it in a pool in a real hugetlb cgroup.
/// Here the kernel's refusals of that map are scripted: one that leaves the mapping whole (Linux 6.12 and later), and
/// one that unmapped the range first (earlier kernels), whose hole is mapped again.
/// </summary>
[Collection(nameof(HugepageTests))]
public sealed class HugetlbReleaseTests
{
    private const nuint TwoHugepages = 4 * 1024 * 1024;

    [Fact]
    public void ReleasedReservedPagesGoBackAtOnceAndTheRangeStaysWritableUntilItsUnmap()
    {
        using HugePageReservation? reservation = HugePageReservation.TryReserve(2, out string reason);
        Skip.When(reservation is null, reason);
        var allocator = new UnixPageAllocator();
        long freeBefore = HugePageInfo.Read().Free2MBPages;
        Assert.True(allocator.TryMap(TwoHugepages, TwoHugepages, PageKind.HugeTlb2MB, out nint address), "two reserved pages are free");
        Assert.Equal(freeBefore - 2, HugePageInfo.Read().Free2MBPages);

        Assert.Equal(ReservedPagesRelease.Replaced, allocator.ReleaseReservedPages(address, TwoHugepages));

        Assert.Equal(freeBefore, HugePageInfo.Read().Free2MBPages);
        Assert.True(ProcessMappings.IsWritable(address, (long)TwoHugepages), $"the range is still mapped for a stale write: {ProcessMappings.Describe(address, (long)TwoHugepages)}");
        WriteWhole(address);
        Assert.Equal(freeBefore, HugePageInfo.Read().Free2MBPages);
        Assert.True(allocator.Unmap(address, TwoHugepages));
        Assert.False(ProcessMappings.IsMapped(address, (long)TwoHugepages), "unmapped whole");
    }

    [Fact]
    public void AReleaseTheKernelRefusesKeepsTheReservedPagesMappedWhole()
    {
        using HugePageReservation? reservation = HugePageReservation.TryReserve(2, out string reason);
        Skip.When(reservation is null, reason);
        var allocator = new UnixPageAllocator { MapBasePagesOver = static (_, _) => false };
        long freeBefore = HugePageInfo.Read().Free2MBPages;
        Assert.True(allocator.TryMap(TwoHugepages, TwoHugepages, PageKind.HugeTlb2MB, out nint address), "two reserved pages are free");

        Assert.Equal(ReservedPagesRelease.Kept, allocator.ReleaseReservedPages(address, TwoHugepages));

        // Kept, the pages are still the mapping's, faulted in and charged: a write needs no new page.
        Assert.Equal(freeBefore - 2, HugePageInfo.Read().Free2MBPages);
        WriteWhole(address);
        Assert.True(allocator.Unmap(address, TwoHugepages));
        Assert.Equal(freeBefore, HugePageInfo.Read().Free2MBPages);
    }

    [Fact]
    public void ARefusalThatUnmappedTheRangeHasTheHoleMappedAgainSoItsUnmapIsStillThePools()
    {
        using HugePageReservation? reservation = HugePageReservation.TryReserve(2, out string reason);
        Skip.When(reservation is null, reason);

        // An older kernel's MAP_FIXED that failed after it cleared the range.
        var allocator = new UnixPageAllocator
        {
            MapBasePagesOver = static (address, length) => Libc.Munmap(address, length) == 0 ? false : throw new InvalidOperationException("the scripted hole was not made"),
        };
        long freeBefore = HugePageInfo.Read().Free2MBPages;
        Assert.True(allocator.TryMap(TwoHugepages, TwoHugepages, PageKind.HugeTlb2MB, out nint address), "two reserved pages are free");

        Assert.Equal(ReservedPagesRelease.Replaced, allocator.ReleaseReservedPages(address, TwoHugepages));

        Assert.Equal(freeBefore, HugePageInfo.Read().Free2MBPages);
        Assert.True(ProcessMappings.IsWritable(address, (long)TwoHugepages), $"the hole is mapped again: {ProcessMappings.Describe(address, (long)TwoHugepages)}");
        WriteWhole(address);
        Assert.True(allocator.Unmap(address, TwoHugepages));
        Assert.Equal(0, allocator.Strays.Bytes);
    }

    private static unsafe void WriteWhole(nint address) => new Span<byte>((void*)address, (int)TwoHugepages).Fill(0x5A);
}
