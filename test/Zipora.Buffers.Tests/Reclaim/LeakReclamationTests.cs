using System;
using System.Buffers;
using System.Linq;
using System.Runtime.CompilerServices;
using Microsoft.Extensions.Time.Testing;

namespace Zipora.Buffers.Tests;

/// <summary>Forces full garbage collections and listens to process-wide events, so it runs alone.</summary>
[Collection(nameof(HugepageTests))]
public sealed class LeakReclamationTests
{
    private static readonly int[] s_sizesAcrossTiers = [100, 8192, 100_000, 6_000_000];

    [Fact]
    public void ABufferCollectedWithoutDisposeIsReclaimedAfterItsQuarantine()
    {
        var time = new FakeTimeProvider();
        using var pool = new TieredMemoryPool(new TieredMemoryPoolOptions { TimeProvider = time, IdleReleaseDelay = TimeSpan.FromSeconds(10) });
        LeakOneBufferPerTier(pool);
        SafetyCases.CollectEverything();

        TieredMemoryPoolStatistics quarantined = pool.GetStatistics();
        Assert.Equal(4, quarantined.LeaksReclaimed);
        Assert.Equal(4, quarantined.Small.BuffersInUse + quarantined.Medium.BuffersInUse + quarantined.Large.BuffersInUse + quarantined.Huge.BuffersInUse);

        // Held for the idle delay (a Span of the leaked owner may still be running somewhere), then returned.
        // Ticks of a quarter delay, as a real clock would pass them (FakeTimeProvider.Advance runs every tick of a
        // long advance at its end time).
        for (int tick = 0; tick < 5; tick++)
        {
            time.Advance(TimeSpan.FromSeconds(2.5));
        }

        TieredMemoryPoolStatistics reclaimed = pool.GetStatistics();
        Assert.Equal(0, reclaimed.BytesInUse);
        Assert.Equal(reclaimed.Huge.Rents, reclaimed.Huge.Returns);

        // The reclaimed blocks are reused, not lost.
        foreach (int size in s_sizesAcrossTiers)
        {
            using IMemoryOwner<byte> owner = pool.Rent(size);
        }

        TieredMemoryPoolStatistics reused = pool.GetStatistics();
        Assert.Equal(4, reused.Small.CacheHits + reused.Medium.CacheHits + reused.Large.CacheHits + reused.Huge.CacheHits);
    }

    [Fact]
    public void ALeakIsReportedAsAnEvent()
    {
        using var listener = new PoolEventRecorder();
        using var pool = new TieredMemoryPool(new TieredMemoryPoolOptions { IdleReleaseDelay = System.Threading.Timeout.InfiniteTimeSpan });
        LeakOneBufferPerTier(pool);
        SafetyCases.CollectEverything();
        pool.Trim();

        (string Tier, int Bytes)[] leaks = [.. listener.Payloads("BufferLeaked").Select(payload => ((string)payload[0]!, (int)payload[1]!))];
        Assert.Contains(leaks, leak => leak == ("huge", 6 * 1024 * 1024));
        Assert.Contains(leaks, leak => leak == ("medium", 8192));

        // A trim does not shorten the quarantine: the leaked blocks are still held, and still count as in use.
        TieredMemoryPoolStatistics statistics = pool.GetStatistics();
        Assert.Equal(statistics.BytesInUse, statistics.BytesQuarantined);
        Assert.True(statistics.BytesQuarantined >= 6 * 1024 * 1024);
    }

    [MethodImpl(MethodImplOptions.NoInlining)]
    private static void LeakOneBufferPerTier(TieredMemoryPool pool)
    {
        foreach (int size in s_sizesAcrossTiers)
        {
            pool.Rent(size).Memory.Span.Fill(9);
        }
    }
}
