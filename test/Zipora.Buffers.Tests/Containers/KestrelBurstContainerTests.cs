using System;

namespace Zipora.Buffers.Tests;

/// <summary>
/// The flagship deployment: Kestrel on <c>AddTieredMemoryPool()</c> (pinned arrays) in a 512 MB memory cgroup takes a
/// burst of 32 concurrent 4 MB uploads and 32 concurrent 4 MB downloads held whole in its pipes (the downloads after the
/// uploads where the GC's hard limit is what holds the pool's arrays: the modes managed, held and capped), goes quiet, and then
/// the application's native (or managed) memory grows by 256 MB toward the limit while the server stays up; it then serves again
/// (bytes compared both ways) and, once the host stops, every buffer is back (see the probe's KestrelBurst).
/// </summary>
[Collection(nameof(HugepageTests))]
public sealed class KestrelBurstContainerTests
{
    private const long Megabyte = 1024 * 1024;
    private static readonly TimeSpan s_timeout = TimeSpan.FromMinutes(1);

    [Fact]
    public void WithDefaultOptionsTheArraysLetGoOfAfterABurstLeaveBeforeTheOomKillerActsThoughAQuietTickCollectedSecondsBefore()
    {
        // 14 s of quiet: a quiet tick asks for an aggressive collection once the idle cap let go of the first arrays,
        // and the bulk is let go of later (unmapped at once by the pressure trim), inside the collector's 30 s rest.
        RunAndCheck("defaults", 14, 512 * Megabyte);
    }

    [Theory]
    [InlineData("held")]
    [InlineData("capped")]
    public void APoolHoldingABurstIdleGivesItBackAsNativeMemoryGrowsAndTheServerServesAgain(string mode)
    {
        RunAndCheck(mode, 2, 512 * Megabyte);
    }

    [Fact]
    public void WhenTheManagedHeapGrowsTheIdleArraysAreGivenBackBeforeTheHeapReachesTheGcsHardLimit()
    {
        // Its downloads come after its uploads (the probe's KestrelBurst): with the whole burst at once the GC kept up to
        // 221 MB of pinned heap committed after the pool let go, and the growth ran into the hard limit (left open).
        // The GC's heap hard limit (75% of the container's, 384 MB) holds the pool's idle pinned arrays too, and is
        // reached while the cgroup's charge is under 85% of its limit and the GC's memory load (against the
        // container's 512 MB) under its high-load threshold. Measured before the fix: "Out of memory" and exit 134 in
        // 5 of 5 runs, the pool holding 171 MB idle; with the heap's share at 85% instead of 75%, 1 of 5 still failed.
        RunAndCheck("managed", 2, 512 * Megabyte);
    }

    [Fact]
    public void AServerWhoseContainerIsLimitedAfterTheBurstGivesTheIdleMemoryBackAndServesAgain()
    {
        // No limit at first: the probe writes 512 MB itself once the burst is over (docker update --memory).
        RunAndCheck("lowered", 2, long.MaxValue);
    }

    private static void RunAndCheck(string mode, int quietSeconds, long cgroupLimit)
    {
        MemoryCgroup? created = MemoryCgroup.TryCreate(cgroupLimit, out string reason);
        Skip.When(created is null, reason);
        using MemoryCgroup cgroup = created!;

        (int exitCode, string output) = cgroup.Run(ContainerProbeOutput.Probe, $"kestrel '{cgroup.LimitFile}' {mode} {quietSeconds}", s_timeout);

        // Measured before the fix, with the default options: exit 137 (OOM kill) in 5 of 5 runs, the pool holding under
        // 1 MB idle while 150-180 MB of its let-go arrays stayed live on the pinned heap.
        string seen = $"the probe exited with {exitCode} (137: killed by the OOM killer), peak charge {cgroup.PeakCharge}: {output}";
        Assert.True(exitCode == 0, seen);
        Assert.Equal(0, cgroup.OomKills);
        var result = ContainerProbeOutput.Result(output);

        // Every one of the probe's 32 uploads held whole in Kestrel's pipe, counted by its handler, before the pool is
        // read: the peak no longer rests on how much of the downloads the kernel's socket buffers took (a loaded
        // fresh-clone run read 97 MB after polling 20 s for uploads that held 1 MB each in the pool).
        Assert.True(result["held"] == 32, seen);
        Assert.True(result["peakInUse"] >= 100 * Megabyte, seen);
        Assert.Equal(0, result["wrong"]);
        Assert.Equal(0, result["wrongAgain"]);
        // Megabytes the app's memory grew by: the managed heap grows less (the probe's KestrelBurst.ManagedGrowthMegabytes).
        Assert.Equal(mode == "managed" ? 192 : 256, result["grown"]);
        Assert.Equal(0, result["inUseAfterStop"]);
    }
}
