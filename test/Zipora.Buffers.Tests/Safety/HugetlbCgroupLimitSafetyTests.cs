using System;
using System.Buffers;
using Microsoft.Extensions.Time.Testing;
using Zipora.Buffers.Native;

namespace Zipora.Buffers.Tests;

/// <summary>
/// A hugetlb cgroup limit (a container's <c>hugetlb.2MB.max</c>; Kubernetes sets 0 for a pod that requests no
/// hugepages) is charged when a page is faulted, not when it is mapped: <c>mmap(MAP_HUGETLB)</c> succeeds on a
/// machine with free hugepages, and the first write past the limit is a SIGBUS that kills the process. Each test runs a
/// child process inside a real hugetlb cgroup with reserved hugepages to spare; a SIGBUS ends the child without a
/// summary, which fails the test.
/// </summary>
[Collection(nameof(HugepageTests))]
public sealed class HugetlbCgroupLimitSafetyTests
{
    private const int ThreeMegabytes = 3 * 1024 * 1024;

    // A 3 MB buffer's class is 3 MB, which reserved 2 MB pages map as two: the limit the tests set.
    private const long TwoHugepages = 4 * 1024 * 1024;

    [Fact]
    public void ReservedHugepagesOverTheCgroupsLimitStepDownInsteadOfKillingTheWriter()
    {
        if (HugetlbCgroup.RunsElsewhereInside(typeof(HugetlbCgroupLimitSafetyTests), nameof(ReservedHugepagesOverTheCgroupsLimitStepDownInsteadOfKillingTheWriter), TwoHugepages))
        {
            return;
        }

        HugetlbCgroup.JoinFromChild();
        using var pool = new TieredMemoryPool();
        using IMemoryOwner<byte> within = pool.Rent(ThreeMegabytes);
        within.Memory.Span.Fill(0x11);
        Assert.Equal(TwoHugepages, HugetlbCgroup.ChargedBytesFromChild());
        Assert.Equal(0, pool.GetStatistics().FallbackAllocations);

        // The machine has free hugepages, so MAP_HUGETLB succeeds; the cgroup has no room for them. Before, this write
        // was the process's last.
        using IMemoryOwner<byte> over = pool.Rent(ThreeMegabytes);
        over.Memory.Span.Fill(0x22);

        Assert.Equal(-1, within.Memory.Span.IndexOfAnyExcept((byte)0x11));
        Assert.Equal(-1, over.Memory.Span.IndexOfAnyExcept((byte)0x22));
        Assert.Equal(TwoHugepages, HugetlbCgroup.ChargedBytesFromChild());
        Assert.True(pool.GetStatistics().FallbackAllocations >= 1, "a huge region that could not have its reserved pages is a step down, counted");

        // The refused mapping went back with its reservation: only the first buffer's two pages are the machine's to owe.
        Assert.Equal(0, HugePageReservation.ReservedButNotFaultedPages());
    }

    [Fact]
    public void AnIdleRegionOfReservedHugepagesKeepsItsChargeSoReusingItNeverFaultsOverTheLimit()
    {
        if (HugetlbCgroup.RunsElsewhereInside(typeof(HugetlbCgroupLimitSafetyTests), nameof(AnIdleRegionOfReservedHugepagesKeepsItsChargeSoReusingItNeverFaultsOverTheLimit), TwoHugepages))
        {
            return;
        }

        HugetlbCgroup.JoinFromChild();
        var time = new FakeTimeProvider();
        using var pool = new TieredMemoryPool(new TieredMemoryPoolOptions { TimeProvider = time, IdleReleaseDelay = SafetyCases.IdleDelay });
        IMemoryOwner<byte> first = pool.Rent(ThreeMegabytes);
        first.Memory.Span.Fill(0x33);
        nint address = OwnerAddress.Of(first);
        CachedRegionPageDropCases.ReturnToSharedCache([first]);

        // Four ticks: the tick that dropped the pages of a region in the shared cache that the next tick unmaps (it was
        // returned at tick 0). Dropped, they left the cgroup's charge while the mapping stayed, waiting to be reused.
        SafetyCases.Advance(time, SafetyCases.IdleDelay);
        Assert.True(ProcessMappings.IsMapped(address, ThreeMegabytes), "the region is still cached a tick before its unmap");
        long chargedWhileCached = HugetlbCgroup.ChargedBytesFromChild();

        // Another pool of the process (or another process of the container) maps reserved pages meanwhile, up to the limit.
        using (var other = new TieredMemoryPool())
        using (IMemoryOwner<byte> meanwhile = other.Rent(ThreeMegabytes))
        {
            meanwhile.Memory.Span.Fill(0x44);

            // The cached region again, written whole: before, its pages had to be charged again, over the limit: a SIGBUS.
            using IMemoryOwner<byte> again = pool.Rent(ThreeMegabytes);
            again.Memory.Span.Fill(0x55);

            Assert.Equal(address, OwnerAddress.Of(again));
            Assert.Equal(-1, meanwhile.Memory.Span.IndexOfAnyExcept((byte)0x44));
            Assert.Equal(TwoHugepages, chargedWhileCached);
            Assert.Equal(TwoHugepages, HugetlbCgroup.ChargedBytesFromChild());
        }

        // Given back for good, the region is unmapped a delay after its return, and its pages with it.
        SafetyCases.Advance(time, SafetyCases.IdleDelay * 2);
        Assert.False(ProcessMappings.IsMapped(address, ThreeMegabytes), "an idle region of reserved hugepages is unmapped once it waited out the delay");
        Assert.Equal(0, HugetlbCgroup.ChargedBytesFromChild());
    }

    [Fact]
    public void RentsOverTheCgroupsLimitDoNotFaultInAndGiveBackItsPagesAtEveryMiss()
    {
        if (HugetlbCgroup.RunsElsewhereInside(typeof(HugetlbCgroupLimitSafetyTests), nameof(RentsOverTheCgroupsLimitDoNotFaultInAndGiveBackItsPagesAtEveryMiss), TwoHugepages))
        {
            return;
        }

        HugetlbCgroup.JoinFromChild();
        Skip.When(HugetlbCgroup.LimitHitsFromChild() is null, "the v1 hugetlb controller counts no refusals");

        // The clock stands still, so every rent falls within the time a refusal holds, however slow the machine.
        var allocator = new UnixPageAllocator { Milliseconds = static () => 0 };
        using var pool = new TieredMemoryPool(new TieredMemoryPoolOptions { PageAllocator = allocator });
        long? hitsOfOneTry = null;
        for (int rent = 0; rent < 5; rent++)
        {
            // Six megabytes are three reserved pages, one more than the limit: the map is refused. Before, each miss
            // faulted in, zeroed and charged the two pages the limit allows, to give them back a moment later, and
            // held the cgroup at its limit meanwhile (a SIGBUS for a hugetlb fault of another process of it).
            using (IMemoryOwner<byte> over = pool.Rent(2 * ThreeMegabytes))
            {
                over.Memory.Span.Fill(0x66);
                Assert.Equal(-1, over.Memory.Span.IndexOfAnyExcept((byte)0x66));
            }

            pool.Trim();

            // One refused try counts a hit or two (the kernel faults the refused page once more before it gives up).
            hitsOfOneTry ??= HugetlbCgroup.LimitHitsFromChild();
        }

        Assert.True(hitsOfOneTry > 0, "the first rent tried the reserved pages, and the limit refused them");
        Assert.Equal(hitsOfOneTry, HugetlbCgroup.LimitHitsFromChild());
        Assert.Equal(0, HugetlbCgroup.ChargedBytesFromChild());

        // A map the limit leaves room for is still tried, and has its reserved pages.
        using IMemoryOwner<byte> within = pool.Rent(ThreeMegabytes);
        within.Memory.Span.Fill(0x11);
        Assert.Equal(TwoHugepages, HugetlbCgroup.ChargedBytesFromChild());
    }

    [Fact]
    public void ALengthRefusedAtTheLimitIsTriedAgainOnceThePoolGaveItsOwnHugepagesBack()
    {
        if (HugetlbCgroup.RunsElsewhereInside(typeof(HugetlbCgroupLimitSafetyTests), nameof(ALengthRefusedAtTheLimitIsTriedAgainOnceThePoolGaveItsOwnHugepagesBack), TwoHugepages))
        {
            return;
        }

        HugetlbCgroup.JoinFromChild();

        // The clock stands still: only the pool's own give-back can end the refusal.
        var allocator = new UnixPageAllocator { Milliseconds = static () => 0 };
        var time = new FakeTimeProvider();
        using var pool = new TieredMemoryPool(new TieredMemoryPoolOptions { PageAllocator = allocator, TimeProvider = time, IdleReleaseDelay = SafetyCases.IdleDelay });
        IMemoryOwner<byte> first = pool.Rent(ThreeMegabytes);
        first.Memory.Span.Fill(0x11);
        using (IMemoryOwner<byte> refused = pool.Rent(ThreeMegabytes))
        {
            refused.Memory.Span.Fill(0x22);
            Assert.Equal(TwoHugepages, HugetlbCgroup.ChargedBytesFromChild());
        }

        // The first region's pages go back (base pages mapped over them, as it was returned a moment ago): the limit
        // has room again, and the next region of the refused length has reserved pages.
        first.Dispose();
        pool.Trim();
        Assert.Equal(0, HugetlbCgroup.ChargedBytesFromChild());
        long fallbacks = pool.GetStatistics().FallbackAllocations;
        using IMemoryOwner<byte> again = pool.Rent(ThreeMegabytes);
        again.Memory.Span.Fill(0x33);
        Assert.Equal(TwoHugepages, HugetlbCgroup.ChargedBytesFromChild());
        Assert.Equal(fallbacks, pool.GetStatistics().FallbackAllocations);
    }

    [Fact]
    public void AReservationLimitRefusesTheMapItselfAndTheTierStepsDown()
    {
        if (HugetlbCgroup.RunsElsewhereInside(typeof(HugetlbCgroupLimitSafetyTests), nameof(AReservationLimitRefusesTheMapItselfAndTheTierStepsDown), TwoHugepages, limitReservations: true))
        {
            return;
        }

        HugetlbCgroup.JoinFromChild();
        using var pool = new TieredMemoryPool();
        using IMemoryOwner<byte> within = pool.Rent(ThreeMegabytes);
        within.Memory.Span.Fill(0x11);
        Assert.Equal(0, pool.GetStatistics().FallbackAllocations);

        // hugetlb.2MB.rsvd.max is charged by mmap itself, which fails with ENOMEM: no page is faulted for the refusal.
        using IMemoryOwner<byte> over = pool.Rent(ThreeMegabytes);
        over.Memory.Span.Fill(0x22);
        Assert.Equal(-1, within.Memory.Span.IndexOfAnyExcept((byte)0x11));
        Assert.Equal(TwoHugepages, HugetlbCgroup.ChargedBytesFromChild());
        Assert.True(pool.GetStatistics().FallbackAllocations >= 1, "the refused map is a step down, counted");
        Assert.Equal(0, HugePageReservation.ReservedButNotFaultedPages());
    }
}
