using System;
using Microsoft.Extensions.Time.Testing;
using Zipora.Buffers.Native;

namespace Zipora.Buffers.Tests;

/// <summary>
/// The storm of <see cref="ClockStormSafetyTests"/> (rents across the tiers, stale and cross-thread disposes, leaks,
/// trims and a running clock) in a real hugetlb cgroup whose limit holds only a few of the huge tier's regions, with
/// reserved hugepages to spare: huge maps are faulted in, refused part way at the limit, skipped after a refusal,
/// swapped for base pages when let go of early, and unmapped at their time, all at once. A SIGBUS or SIGSEGV ends the
/// child without a summary, which fails the test.
/// </summary>
[Collection(nameof(HugepageTests))]
public sealed class HugetlbStormSafetyTests
{
    // Four reserved pages: one 6 MB region, or two of the storm's smaller huge ones.
    private const long FourHugepages = 8 * 1024 * 1024;

    [Fact]
    public void AStormAtAHugetlbLimitNeverFaultsOverItLosesNoByteAndGivesEveryPageBack()
    {
        if (HugetlbCgroup.RunsElsewhereInside(typeof(HugetlbStormSafetyTests), nameof(AStormAtAHugetlbLimitNeverFaultsOverItLosesNoByteAndGivesEveryPageBack), FourHugepages, reservedPages: 16))
        {
            return;
        }

        HugetlbCgroup.JoinFromChild();
        var time = new FakeTimeProvider();
        long freeBefore = HugePageInfo.Read().Free2MBPages;
        using (TieredMemoryPool pool = SafetyCases.Pool(OwnerMode.Default, time))
        {
            var storm = new SafetyStorm(pool, clock: time, leakPercent: 5);
            storm.Run(workers: 2, TimeSpan.FromMilliseconds(600), static storm => StormSafetyTests.DidEnough(storm) && storm.ClockTicks > 8 && storm.Leaks > 5);

            Assert.True(storm.Failures.IsEmpty, string.Join(Environment.NewLine, storm.Failures));
            StormSafetyTests.AssertEnoughHappened(storm);
            SafetyCases.CollectEverything();
            StormSafetyTests.AssertEverythingGoesBack(pool, time);
        }

        SafetyCases.Advance(time, SafetyCases.IdleDelay * 2);
        Assert.Equal(0, HugetlbCgroup.ChargedBytesFromChild());
        Assert.Equal(freeBefore, HugePageInfo.Read().Free2MBPages);
        Assert.Equal(0, HugePageReservation.ReservedButNotFaultedPages());
    }
}
