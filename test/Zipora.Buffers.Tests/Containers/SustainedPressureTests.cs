using System;

namespace Zipora.Buffers.Tests;

/// <summary>
/// Memory that stays short: the application's own working set holds its cgroup above the pressure threshold for good.
/// A trim under pressure gives back all it can; another with no rent or return since can give back nothing more, so a
/// quiet pool must not walk its free blocks again at every pass of the pressure watcher.
/// </summary>
[Collection(nameof(HugepageTests))]
public sealed class SustainedPressureTests
{
    private const long Megabyte = 1024 * 1024;
    private static readonly TimeSpan s_timeout = TimeSpan.FromMinutes(1);

    [Fact]
    public void AQuietPoolUnderLastingPressureTrimsOnceAndThenRestsUntilItIsUsed()
    {
        MemoryCgroup? created = MemoryCgroup.TryCreate(512 * Megabyte, out string reason);
        Skip.When(created is null, reason);
        using MemoryCgroup cgroup = created!;

        (int exitCode, string output) = cgroup.Run(ContainerProbeOutput.Probe, $"sustained '{cgroup.ChargeFile}'", s_timeout);

        Assert.True(exitCode == 0, $"the probe exited with {exitCode} (137: killed by the OOM killer): {output}");
        var result = ContainerProbeOutput.Result(output);
        Assert.True(result["trimsBefore"] >= 1, $"no trim under pressure at 90% of the limit: {output}");

        // Measured before: a trim every second, each walking the 200,000 free blocks again (about 0.15 s of CPU
        // in every second the process was quiet).
        Assert.True(result["trimsDuring"] == 0, $"a quiet pool was trimmed {result["trimsDuring"]} more times in 5 s: {output}");
        Assert.True(result["cpuMs"] < 500, $"a quiet process under lasting pressure used {result["cpuMs"]} ms of CPU in 5 s: {output}");
    }
}
