using System;
using System.Collections.Generic;

namespace Zipora.Buffers.Tests;

/// <summary>
/// Pinned-array mode (Kestrel's) and TieredArrayPool in a memory-limited container: the memory a pressure trim lets go
/// of is arrays on the GC's pinned heap, which stays committed until a collection gives it back. Native memory grows without the GC
/// seeing any reason to collect, so the trim must see to it.
/// </summary>
[Collection(nameof(HugepageTests))]
public sealed class PinnedArrayPressureTests
{
    private const long Megabyte = 1024 * 1024;
    private static readonly TimeSpan s_timeout = TimeSpan.FromMinutes(1);

    [Fact]
    public void InA512MegabyteContainerAPinnedArrayPoolHolding256MegabytesIdleGivesThemBackAsNativeMemoryGrows()
    {
        // Measured before: the pressure trim emptied the pool, the arrays stayed committed in the pinned heap, and the
        // OOM killer ended the process (exit 137, 2 of 2 runs) where the same pool on mapped pages survived.
        var result = RunSurvivingIn512Megabytes("pinned");
        Assert.InRange(result["pressureTrims"], 1, 10);
        Assert.Equal(0, result["retainedAfter"]);
    }

    [Fact]
    public void InA512MegabyteContainerAPinnedArrayPoolDisposedWhileHolding256MegabytesIdleGivesThemBackAsNativeMemoryGrows()
    {
        // Measured before: the disposed pool's arrays waited out its ten-minute delay, resident, and the watcher trims
        // live pools only: killed by the OOM killer (exit 137, every run).
        var result = RunSurvivingIn512Megabytes("disposed");
        Assert.Equal(0, result["awaitingAfterDispose"]);
    }

    [Fact]
    public void InA512MegabyteContainerATieredArrayPoolHolding256MegabytesIdleGivesThemBackAsNativeMemoryGrows()
    {
        // Measured before: the pressure trim dropped the cached arrays for the GC, no collection came (native memory
        // does not set one off), and the OOM killer ended the process (exit 137, 2 of 2 runs).
        var result = RunSurvivingIn512Megabytes("arrays");
        Assert.Equal(0, result["retainedAfter"]);
    }

    /// <summary>Runs the probe's <paramref name="scenario"/> in a 512 MB cgroup: it must hold 256 MB idle, grow native memory by 320 MB and live.</summary>
    private static Dictionary<string, long> RunSurvivingIn512Megabytes(string scenario)
    {
        MemoryCgroup? created = MemoryCgroup.TryCreate(512 * Megabyte, out string reason);
        Skip.When(created is null, reason);
        using MemoryCgroup cgroup = created!;

        (int exitCode, string output) = cgroup.Run(ContainerProbeOutput.Probe, scenario, s_timeout);

        Assert.True(exitCode == 0, $"the probe exited with {exitCode} (137: killed by the OOM killer): {output}");
        Assert.Equal(0, cgroup.OomKills);
        Dictionary<string, long> result = ContainerProbeOutput.Result(output);
        Assert.Equal(256 * Megabyte, result["idleBefore"]);
        Assert.Equal(320, result["native"]);
        return result;
    }
}
