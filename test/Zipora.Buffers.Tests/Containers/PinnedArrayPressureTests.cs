using System;

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
        MemoryCgroup? created = MemoryCgroup.TryCreate(512 * Megabyte, out string reason);
        Skip.When(created is null, reason);
        using MemoryCgroup cgroup = created!;

        (int exitCode, string output) = cgroup.Run(ContainerProbeOutput.Probe, "pinned", s_timeout);

        // Measured before: the pressure trim emptied the pool, the arrays stayed committed in the pinned heap, and the
        // OOM killer ended the process (exit 137, 2 of 2 runs) where the same pool on mapped pages survived.
        Assert.True(exitCode == 0, $"the probe exited with {exitCode} (137: killed by the OOM killer): {output}");
        Assert.Equal(0, cgroup.OomKills);
        var result = ContainerProbeOutput.Result(output);
        Assert.Equal(256 * Megabyte, result["idleBefore"]);
        Assert.InRange(result["pressureTrims"], 1, 10);
        Assert.Equal(0, result["retainedAfter"]);
        Assert.Equal(320, result["native"]);
    }

    [Fact]
    public void InA512MegabyteContainerAPinnedArrayPoolDisposedWhileHolding256MegabytesIdleGivesThemBackAsNativeMemoryGrows()
    {
        MemoryCgroup? created = MemoryCgroup.TryCreate(512 * Megabyte, out string reason);
        Skip.When(created is null, reason);
        using MemoryCgroup cgroup = created!;

        (int exitCode, string output) = cgroup.Run(ContainerProbeOutput.Probe, "disposed", s_timeout);

        // Measured before: the disposed pool's arrays waited out its ten-minute delay, resident, and the watcher trims
        // live pools only: killed by the OOM killer.
        Assert.True(exitCode == 0, $"the probe exited with {exitCode} (137: killed by the OOM killer): {output}");
        Assert.Equal(0, cgroup.OomKills);
        var result = ContainerProbeOutput.Result(output);
        Assert.Equal(256 * Megabyte, result["idleBefore"]);
        Assert.Equal(0, result["awaitingAfterDispose"]);
        Assert.Equal(320, result["native"]);
    }

    [Fact]
    public void InA512MegabyteContainerATieredArrayPoolHolding256MegabytesIdleGivesThemBackAsNativeMemoryGrows()
    {
        MemoryCgroup? created = MemoryCgroup.TryCreate(512 * Megabyte, out string reason);
        Skip.When(created is null, reason);
        using MemoryCgroup cgroup = created!;

        (int exitCode, string output) = cgroup.Run(ContainerProbeOutput.Probe, "arrays", s_timeout);

        // Measured before: the pressure trim dropped the cached arrays for the GC, no collection came (native memory
        // does not set one off), and the OOM killer ended the process (exit 137, 2 of 2 runs).
        Assert.True(exitCode == 0, $"the probe exited with {exitCode} (137: killed by the OOM killer): {output}");
        Assert.Equal(0, cgroup.OomKills);
        var result = ContainerProbeOutput.Result(output);
        Assert.Equal(256 * Megabyte, result["idleBefore"]);
        Assert.Equal(0, result["retainedAfter"]);
        Assert.Equal(320, result["native"]);
    }
}
