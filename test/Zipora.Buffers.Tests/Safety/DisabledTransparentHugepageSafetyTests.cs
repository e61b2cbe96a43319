using System.Buffers;
using System.Collections.Generic;
using System.Linq;

namespace Zipora.Buffers.Tests;

/// <summary>
/// A process that turned transparent hugepages off for itself (<c>prctl(PR_SET_THP_DISABLE, 1)</c>, as some
/// databases and JVM launchers do) gets none, whatever MADV_HUGEPAGE says: the huge tier's <c>HugepageBytes</c> must
/// not count hugepages the kernel never gave, measured as <c>AnonHugePages</c> of the tier's ranges in
/// <c>/proc/self/smaps</c>.
/// </summary>
[Collection(nameof(HugepageTests))]
public sealed class DisabledTransparentHugepageSafetyTests
{
    private const int SixMegabytes = 6 * 1024 * 1024;

    [Fact]
    public void WithTransparentHugepagesDisabledForTheProcessHugepageBytesClaimsNoHugepageTheKernelDidNotGive()
    {
        if (IsolatedProcess.RunsElsewhere(typeof(DisabledTransparentHugepageSafetyTests), nameof(WithTransparentHugepagesDisabledForTheProcessHugepageBytesClaimsNoHugepageTheKernelDidNotGive)))
        {
            return;
        }

        Skip.Unless(ProcessLimits.Supported, "prctl and /proc/self/smaps are Linux's");

        // First the control: on this machine, before the prctl, the huge tier's ranges do get transparent hugepages.
        (long controlClaimed, long controlHuge, _) = RentFillAndMeasure(3);
        Skip.Unless(controlClaimed > 0 && controlHuge > 0, $"no transparent hugepages here even before the prctl (HugepageBytes {controlClaimed}, AnonHugePages {controlHuge})");

        int error = ProcessLimits.DisableTransparentHugepages();
        Skip.Unless(error == 0, $"prctl(PR_SET_THP_DISABLE) refused with errno {error}");
        Assert.True(ProcessLimits.TransparentHugepagesDisabled, "PR_GET_THP_DISABLE should say 1 after PR_SET_THP_DISABLE");
        Assert.Equal(0, ProcessLimits.Status("THP_enabled"));

        (long claimed, long huge, long fallbacks) = RentFillAndMeasure(3);
        Assert.True(huge == 0, $"the kernel gave {huge} bytes of transparent hugepages to a process that disabled them");
        Assert.True(
            claimed == 0,
            $"with transparent hugepages disabled for the process, HugepageBytes says {claimed} bytes while AnonHugePages of the huge tier's ranges is {huge} (before the prctl: {controlClaimed} said, {controlHuge} measured)");
        Assert.True(fallbacks > 0, "a huge region that gets base pages where hugepages were asked for is a step down, counted in FallbackAllocations");
    }

    /// <summary>Rents <paramref name="count"/> huge buffers and fills them; what the pool says is hugepage-backed, what smaps says, and the fallbacks counted.</summary>
    private static (long Claimed, long AnonHuge, long Fallbacks) RentFillAndMeasure(int count)
    {
        using var pool = new TieredMemoryPool();
        List<IMemoryOwner<byte>> owners = Enumerable.Range(0, count).Select(_ => pool.Rent(SixMegabytes)).ToList();
        long huge = 0;
        foreach (IMemoryOwner<byte> owner in owners)
        {
            owner.Memory.Span.Fill(0x5A);
            huge += ProcessLimits.SmapsOf(OwnerAddress.Of(owner), owner.Memory.Length).AnonHuge;
        }

        TieredMemoryPoolStatistics statistics = pool.GetStatistics();
        owners.ForEach(owner => owner.Dispose());
        return (statistics.HugepageBytes, huge, statistics.FallbackAllocations);
    }
}
