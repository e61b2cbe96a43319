using System.Collections.Generic;
using Zipora.Buffers.Native;

namespace Zipora.Buffers.Tests;

/// <summary>
/// A hugetlb map is faulted in whole (MADV_POPULATE_WRITE) before it is handed out, so a page that could not be had
/// at first touch (a hugetlb cgroup limit; HugetlbCgroupLimitSafetyTests has the real one) is a refused map instead of
/// a SIGBUS. Here the kernel's answer to the advice is scripted; the maps and unmaps are the kernel's own.
/// </summary>
[Collection(nameof(HugepageTests))]
public sealed class HugetlbFaultInTests
{
    private const nuint TwoHugepages = 4 * 1024 * 1024;
    private const int Efault = 14;
    private const int Einval = 22;

    [Fact]
    public void AReservedMapIsFaultedInWholeBeforeItIsHandedOut()
    {
        using HugePageReservation? reservation = HugePageReservation.TryReserve(2, out string reason);
        Skip.When(reservation is null, reason);
        var allocator = new UnixPageAllocator();
        long freeBefore = HugePageInfo.Read().Free2MBPages;

        Assert.True(allocator.TryMap(TwoHugepages, TwoHugepages, PageKind.HugeTlb2MB, out nint address), "two reserved pages are free");

        // Nothing has touched the mapping yet: its pages were faulted in by the map.
        Assert.Equal(freeBefore - 2, HugePageInfo.Read().Free2MBPages);
        Assert.Equal(0, HugePageReservation.ReservedButNotFaultedPages());
        Assert.True(allocator.Unmap(address, TwoHugepages));
        Assert.Equal(freeBefore, HugePageInfo.Read().Free2MBPages);
    }

    [Fact]
    public void AReservedMapWhosePagesCannotBeFaultedInIsGivenBackAndRefused()
    {
        using HugePageReservation? reservation = HugePageReservation.TryReserve(2, out string reason);
        Skip.When(reservation is null, reason);
        var advised = new List<nint>();
        long now = 0;
        var allocator = new UnixPageAllocator(
            static (address, length) => Libc.Munmap(address, length) == 0,
            (address, _) =>
            {
                advised.Add(address);
                return Efault;
            })
        {
            Milliseconds = () => now,
        };

        for (int attempt = 0; attempt < 2; attempt++)
        {
            Assert.False(allocator.TryMap(TwoHugepages, TwoHugepages, PageKind.HugeTlb2MB, out nint address), "a map whose pages would fault with a SIGBUS is refused");
            Assert.Equal(0, address);
            Assert.False(ProcessMappings.IsMapped(advised[^1], (long)TwoHugepages), $"the refused mapping is still there: {ProcessMappings.Describe(advised[^1], (long)TwoHugepages)}");
            Assert.Equal(0, HugePageReservation.ReservedButNotFaultedPages());

            // Once the refusal is old enough, as long a map is tried again.
            now += HugetlbRefusals.RetryAfterMilliseconds;
        }

        Assert.Equal(2, advised.Count);
        Assert.Equal(0, allocator.Strays.Bytes);
    }

    [Fact]
    public void AfterARefusalAsLongAMapIsNotTriedForAWhileButAShorterOneIs()
    {
        using HugePageReservation? reservation = HugePageReservation.TryReserve(2, out string reason);
        Skip.When(reservation is null, reason);
        int advices = 0;
        long now = 0;
        var allocator = new UnixPageAllocator(
            static (address, length) => Libc.Munmap(address, length) == 0,
            (address, length) =>
            {
                advices++;
                return length > TwoHugepages / 2 ? Efault : UnixPageAllocator.PopulateWritable(address, length);
            })
        {
            Milliseconds = () => now,
        };

        // The limit left less than two pages: faulting them in again, to give them back again, is the cost avoided.
        Assert.False(allocator.TryMap(TwoHugepages, TwoHugepages, PageKind.HugeTlb2MB, out _), "over the limit");
        now += HugetlbRefusals.RetryAfterMilliseconds - 1;
        Assert.False(allocator.TryMap(TwoHugepages, TwoHugepages, PageKind.HugeTlb2MB, out _), "as long a map, just refused");
        Assert.False(allocator.TryMap(2 * TwoHugepages, TwoHugepages, PageKind.HugeTlb2MB, out _), "a longer one");
        Assert.Equal(1, advices);

        // A shorter map may fit, and 1 GB pages have limits of their own.
        Assert.True(allocator.TryMap(TwoHugepages / 2, TwoHugepages / 2, PageKind.HugeTlb2MB, out nint shorter), "one page fits");
        Assert.Equal(2, advices);
        Assert.True(allocator.Unmap(shorter, TwoHugepages / 2));
        Assert.False(allocator.Refusals.Covers(PageKind.HugeTlb1GB, TwoHugepages, now), "a refusal of 2 MB pages says nothing of 1 GB ones");
    }

    [Fact]
    public void AKernelWithoutTheAdviceGetsNoReservedMapsWhereAHugetlbLimitApplies()
    {
        using HugePageReservation? reservation = HugePageReservation.TryReserve(2, out string reason);
        Skip.When(reservation is null, reason);
        int advices = 0;
        var asked = new List<PageKind>();
        var allocator = new UnixPageAllocator(
            static (address, length) => Libc.Munmap(address, length) == 0,
            (_, _) =>
            {
                advices++;
                return Einval;
            },
            kind =>
            {
                asked.Add(kind);
                return true;
            });

        Assert.False(allocator.TryMap(TwoHugepages, TwoHugepages, PageKind.HugeTlb2MB, out _), "unproven pages under a limit are refused");
        Assert.False(allocator.TryMap(TwoHugepages, TwoHugepages, PageKind.HugeTlb2MB, out _), "and not mapped again");
        Assert.False(allocator.TryMap(1024 * 1024 * 1024, 1024 * 1024 * 1024, PageKind.HugeTlb1GB, out _), "nor in 1 GB pages");
        Assert.Equal(1, advices);
        Assert.Equal([PageKind.HugeTlb2MB, PageKind.HugeTlb2MB, PageKind.HugeTlb1GB], asked);
        Assert.Equal(0, HugePageReservation.ReservedButNotFaultedPages());

        Assert.True(allocator.TryMap(TwoHugepages, TwoHugepages, PageKind.Normal, out nint plain), "base pages need no proof");
        Assert.True(allocator.Unmap(plain, TwoHugepages));
    }

    [Fact]
    public void AKernelWithoutTheAdviceKeepsReservedMapsWhereNoHugetlbLimitApplies()
    {
        using HugePageReservation? reservation = HugePageReservation.TryReserve(4, out string reason);
        Skip.When(reservation is null, reason);
        int advices = 0;
        var allocator = new UnixPageAllocator(
            static (address, length) => Libc.Munmap(address, length) == 0,
            (_, _) =>
            {
                advices++;
                return Einval;
            },
            static _ => false);
        long freeBefore = HugePageInfo.Read().Free2MBPages;

        Assert.True(allocator.TryMap(TwoHugepages, TwoHugepages, PageKind.HugeTlb2MB, out nint first), "nothing charges the faults: the map is kept");
        Assert.True(allocator.TryMap(TwoHugepages, TwoHugepages, PageKind.HugeTlb2MB, out nint second), "and the next is made without asking the kernel again");
        Assert.Equal(1, advices);

        // Reserved, not faulted in: as before the advice existed.
        Assert.Equal(freeBefore, HugePageInfo.Read().Free2MBPages);
        Assert.Equal(4, HugePageReservation.ReservedButNotFaultedPages());
        Assert.True(allocator.Unmap(first, TwoHugepages));
        Assert.True(allocator.Unmap(second, TwoHugepages));
        Assert.Equal(0, HugePageReservation.ReservedButNotFaultedPages());
    }
}
