using System;

namespace Zipora.Buffers.Tests;

/// <summary>
/// A limit set on a running container (<c>docker update --memory</c>, a resized pod): the pool was made with no limit
/// to find, yet the process is under one from then on, and the pressure watch must see it while native memory grows.
/// </summary>
[Collection(nameof(HugepageTests))]
public sealed class LateLimitTests
{
    private const long Megabyte = 1024 * 1024;
    private static readonly TimeSpan s_timeout = TimeSpan.FromMinutes(1);

    [Fact]
    public void APoolMadeBeforeItsCgroupWasLimitedGivesItsIdleMemoryBackBeforeTheOomKillerActs()
    {
        // Limited only once the probe has made its pool: it writes 512 MB into the limit itself (it runs as root).
        MemoryCgroup? created = MemoryCgroup.TryCreate(long.MaxValue, out string reason);
        Skip.When(created is null, reason);
        using MemoryCgroup cgroup = created!;

        (int exitCode, string output) = cgroup.Run(ContainerProbeOutput.Probe, $"late '{cgroup.LimitFile}'", s_timeout);

        Assert.True(exitCode == 0, $"the probe exited with {exitCode} (137: killed by the OOM killer): {output}");
        Assert.Equal(0, cgroup.OomKills);
        var result = ContainerProbeOutput.Result(output);
        Assert.Equal(0, result["limitAtStart"]);
        Assert.Equal(256 * Megabyte, result["idleBefore"]);
        Assert.InRange(result["pressureTrims"], 1, 10);
        Assert.Equal(320, result["native"]);
    }
}
