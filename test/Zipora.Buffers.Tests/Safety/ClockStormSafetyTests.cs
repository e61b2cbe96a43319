using System;
using Microsoft.Extensions.Time.Testing;

namespace Zipora.Buffers.Tests;

/// <summary>
/// The storm with the pool's clock running and owners leaking: trims and ticks of the idle releaser (quarantines
/// ending, let-go memory unmapped, idle tiers trimmed) run between the workers' operations, and leaked blocks come back
/// through the finalizer thread meanwhile. No live owner's memory is ever unmapped or lost, no leaked block is handed
/// out within a delay of its leak, and every leak is reclaimed.
/// </summary>
/// <remarks>Forces garbage collections, so it runs alone.</remarks>
[Collection(nameof(HugepageTests))]
public sealed class ClockStormSafetyTests
{
    private static readonly TimeSpan s_duration = TimeSpan.FromMilliseconds(400);

    [Fact]
    public void WithTheClockRunningAndOwnersLeakingNoLiveOrQuarantinedMemoryIsUnmappedOrHandedOut()
    {
        Skip.Unless(OperatingSystem.IsLinux(), "checks mappings with msync, on Linux");
        var time = new FakeTimeProvider();
        using TieredMemoryPool pool = SafetyCases.Pool(OwnerMode.Default, time);
        var storm = new SafetyStorm(pool, clock: time, leakPercent: 5);
        storm.Run(workers: 2, s_duration, static storm => StormSafetyTests.DidEnough(storm) && storm.ClockTicks > 8 && storm.Leaks > 5);

        Assert.True(storm.Failures.IsEmpty, string.Join(Environment.NewLine, storm.Failures));
        StormSafetyTests.AssertEnoughHappened(storm);
        Assert.True(storm.ClockTicks > 8, $"the clock ticked only {storm.ClockTicks} times");
        Assert.True(storm.Leaks > 5, $"only {storm.Leaks} owners leaked");

        SafetyCases.CollectEverything();
        Assert.Equal(storm.Leaks, pool.GetStatistics().LeaksReclaimed);
        StormSafetyTests.AssertEverythingGoesBack(pool, time);
    }
}
