using System;
using System.Buffers;
using System.Collections.Generic;
using System.Linq;
using Microsoft.Extensions.Time.Testing;

namespace Zipora.Buffers.Tests;

/// <summary>
/// The advice on a medium tier whose rents missed its caches. Its depots keep every free block there is, whatever the
/// thread caches' limits, so a rent misses only when every block of its class is in use, sits in another thread's
/// cache, or was given back to the OS: raising the thread caches' limits never turns a miss into a hit.
/// </summary>
public sealed class MediumCacheAdviceTests
{
    private const int Size = 4096;
    private const int Held = 300;
    private static readonly TimeSpan s_delay = TimeSpan.FromSeconds(10);

    [Theory]
    [InlineData(128, 2 * 1024 * 1024)]
    [InlineData(4096, 256 * 1024 * 1024)]
    [InlineData(int.MaxValue, int.MaxValue)]
    public void MissesThatOnlyMetGrowingDemandBringNoAdviceToRaiseTheThreadCaches(int maxBuffers, int maxBytes)
    {
        // Two bursts of 300 held at once: the first carves every block (300 misses), the second reuses them all. Half
        // the rents missed, with any limits (int.MaxValue included, which the advice told to raise): no setting helps.
        var options = new TieredMemoryPoolOptions { ThreadCacheMaxBuffers = maxBuffers, ThreadCacheMaxBytes = maxBytes, IdleReleaseDelay = s_delay, TimeProvider = new FakeTimeProvider() };
        using var pool = new TieredMemoryPool(options);
        Burst(pool);
        Burst(pool);

        Assert.Equal(0.5, pool.GetStatistics().Medium.HitRatio);
        Assert.DoesNotContain(pool.GetAdvice(), static hint => hint.Contains("medium tier", StringComparison.Ordinal));
    }

    [Fact]
    public void MissesOnMemoryTheIdleReleaseGaveBackBringAdviceToLengthenTheDelay()
    {
        // Bursts further apart than the delay: each finds its blocks given back and carves them again. A longer delay
        // (two and a half, here) keeps them between bursts, and every rent after the first burst hits.
        Assert.Contains("IdleReleaseDelay (now 00:00:10)", Assert.Single(AdviceOnMedium(s_delay, out double hitRatio)), StringComparison.Ordinal);
        Assert.InRange(hitRatio, 0, 0.5);

        Assert.Empty(AdviceOnMedium(s_delay * 2.5, out double longerDelayHitRatio));
        Assert.Equal(0.5, longerDelayHitRatio);
    }

    private static List<string> AdviceOnMedium(TimeSpan delay, out double hitRatio)
    {
        var time = new FakeTimeProvider();
        using var pool = new TieredMemoryPool(new TieredMemoryPoolOptions { IdleReleaseDelay = delay, TimeProvider = time });
        for (int burst = 0; burst < 2; burst++)
        {
            Burst(pool);
            for (int quarter = 0; quarter < 8; quarter++)
            {
                time.Advance(s_delay / 4);
            }
        }

        hitRatio = pool.GetStatistics().Medium.HitRatio;
        return [.. pool.GetAdvice().Where(static hint => hint.Contains("medium tier", StringComparison.Ordinal))];
    }

    private static void Burst(TieredMemoryPool pool)
    {
        var held = new List<IMemoryOwner<byte>>();
        for (int i = 0; i < Held; i++)
        {
            held.Add(pool.Rent(Size));
        }

        held.ForEach(static owner => owner.Dispose());
    }
}
