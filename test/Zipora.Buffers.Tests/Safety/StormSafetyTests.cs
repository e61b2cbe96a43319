using System;
using Microsoft.Extensions.Time.Testing;

namespace Zipora.Buffers.Tests;

/// <summary>
/// Threads rent random sizes across the tiers, stamp each buffer, check the stamp before disposing, dispose twice
/// now and then (at once or much later, from any thread), hand owners to each other to dispose, while another thread
/// trims: no stamp is ever lost and no two live owners ever share a byte. The clock stands still, so nothing the
/// pool lets go of is ever unmapped under the workers (see <see cref="ClockStormSafetyTests"/> for the clock running).
/// </summary>
public sealed class StormSafetyTests
{
    private static readonly TimeSpan s_duration = TimeSpan.FromMilliseconds(300);

    public static TheoryData<OwnerMode> Modes => [OwnerMode.Default, OwnerMode.PinnedArrays];

    [Theory]
    [MemberData(nameof(Modes))]
    public void RentingStampingAndDisposingTwiceAcrossThreadsWhileTrimmingNeverLosesAStampOrSharesABlock(OwnerMode mode)
    {
        var time = new FakeTimeProvider();
        using TieredMemoryPool pool = SafetyCases.Pool(mode, time);
        var storm = new SafetyStorm(pool, clock: null);
        storm.Run(workers: 2, s_duration, DidEnough);

        Assert.True(storm.Failures.IsEmpty, string.Join(Environment.NewLine, storm.Failures));
        AssertEnoughHappened(storm);
        AssertEverythingGoesBack(pool, time);
    }

    /// <summary>Whether the storm did enough of everything it is for to count.</summary>
    internal static bool DidEnough(SafetyStorm storm) =>
        storm.Rents > 1_000 && storm.StaleDisposes > 10 && storm.CrossThreadDisposes > 10 && storm.Trims > 2;

    internal static void AssertEnoughHappened(SafetyStorm storm)
    {
        Assert.True(storm.Rents > 1_000, $"only {storm.Rents} rents ran");
        Assert.True(storm.StaleDisposes > 10, $"only {storm.StaleDisposes} stale disposes ran");
        Assert.True(storm.CrossThreadDisposes > 10, $"only {storm.CrossThreadDisposes} owners were disposed by another thread");
        Assert.True(storm.Trims > 2, $"only {storm.Trims} trims ran");
    }

    /// <summary>
    /// Every owner was disposed: once the pool is disposed and its delays have passed, it holds nothing. A block leaked
    /// just before the dispose waits out its quarantine, then, returned to a disposed pool, one more delay before it
    /// is unmapped: three delays cover both.
    /// </summary>
    internal static void AssertEverythingGoesBack(TieredMemoryPool pool, FakeTimeProvider time)
    {
        pool.Dispose();
        SafetyCases.AssertDrainedThreeDelaysLater(pool, time);
    }
}
