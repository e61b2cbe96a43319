using System;

namespace Zipora.Buffers.Tests;

/// <summary>
/// The pool in a memory-limited container, for real: each test makes a memory cgroup, runs the container probe in it
/// and reads what the probe printed and what the kernel counted. Skipped with the reason where cgroups cannot be made.
/// </summary>
[Collection(nameof(HugepageTests))]
public sealed class ContainerMemoryTests
{
    private const long Megabyte = 1024 * 1024;
    private static readonly TimeSpan s_timeout = TimeSpan.FromMinutes(2);

    [Fact]
    public void InA512MegabyteContainerAPoolHolding256MegabytesIdleGivesThemBackBeforeTheOomKillerActs()
    {
        // 256 MB idle in the pool (caps set high, delay 10 minutes) plus a managed heap growing by 320 MB does not fit
        // in 512 MB: before the pressure check, the kernel killed the process (exit 137).
        using MemoryCgroup cgroup = CreateOrSkip(512 * Megabyte);
        (int exitCode, string output) = cgroup.Run(ContainerProbeOutput.Probe, "pressure", s_timeout);

        Assert.True(exitCode == 0, $"the probe exited with {exitCode} (137: killed by the OOM killer): {output}");
        Assert.Equal(0, cgroup.OomKills);
        var result = ContainerProbeOutput.Result(output);
        Assert.Equal(256 * Megabyte, result["idleBefore"]);
        Assert.InRange(result["pressureTrims"], 1, 10);
        Assert.InRange(result["retainedAfter"], 0, 64 * Megabyte);
        Assert.Equal(320, result["heap"]);
        Assert.InRange(result["rss"], 320 * Megabyte, 480 * Megabyte);
    }

    [Theory]
    [InlineData(512 * Megabyte, 64 * Megabyte)]
    [InlineData(8192 * Megabyte, 512 * Megabyte)]
    public void InAContainerThePoolFindsTheLimitAndDerivesItsIdleCapFromIt(long limit, long expectedCap)
    {
        using MemoryCgroup cgroup = CreateOrSkip(limit);
        (int exitCode, string output) = cgroup.Run(ContainerProbeOutput.Probe, "defaults", s_timeout);

        Assert.True(exitCode == 0, output);
        var result = ContainerProbeOutput.Result(output);
        Assert.Equal(limit, result["limit"]);
        Assert.Equal(expectedCap, result["retainedCap"]);
    }

    private static MemoryCgroup CreateOrSkip(long limit)
    {
        MemoryCgroup? cgroup = MemoryCgroup.TryCreate(limit, out string reason);
        Skip.When(cgroup is null, reason);
        return cgroup!;
    }
}
