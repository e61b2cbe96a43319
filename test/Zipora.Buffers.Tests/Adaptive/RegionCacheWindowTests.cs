using System.Buffers;
using System.Collections.Generic;
using System.Linq;
using Microsoft.Extensions.Time.Testing;

namespace Zipora.Buffers.Tests;

/// <summary>
/// The adaptive region cache's count limit follows the larger of the last two demand windows' peaks (a window is one
/// idle delay): a burst just before a window turns over must keep its regions cached, pages and all, just after, not
/// see the new window's first moment, with nothing in use, shrink the cache to its configured limit and evict them
/// (their pages dropped at once, to be faulted in again by the next burst).
/// </summary>
public sealed class RegionCacheWindowTests
{
    private const int Size = 64 * 1024;
    private const int Burst = 256;

    [Fact]
    public void ABurstJustBeforeAWindowTurnsOverKeepsItsRegionsCachedThroughTheTurn()
    {
        var time = new FakeTimeProvider();
        var allocator = new AdviceCountingAllocator();
        TieredMemoryPoolOptions options = SafetyCases.Options(OwnerMode.Default, time);
        options.PageAllocator = allocator;
        using var pool = new TieredMemoryPool(options);

        // The first window runs from the pool's start for one delay; the burst comes in its last quarter, well above
        // the configured limit of 64 regions.
        SafetyCases.Advance(time, SafetyCases.IdleDelay * 0.8);
        List<IMemoryOwner<byte>> held = [.. Enumerable.Range(0, Burst).Select(_ => pool.Rent(Size))];
        held.ForEach(static owner => owner.Dispose());
        long advisedBefore = allocator.Advised;

        // Past the window's end: the regions have waited a quarter delay, not the three quarters that would make their
        // pages due to be dropped, so nothing is advised, and every one stays cached.
        SafetyCases.Advance(time, SafetyCases.IdleDelay / 4);
        long advised = allocator.Advised - advisedBefore;
        Assert.True(
            advised == 0,
            $"{Burst} regions returned just before a window's end had {advised} pieces of advice at its turn: the cache's limit forgot the last window's peak and evicted them");
        Assert.Equal((long)Burst * Size, pool.GetStatistics().Large.BytesRetained);

        // The same burst again finds every region cached.
        long hitsBefore = pool.GetStatistics().Large.CacheHits;
        held = [.. Enumerable.Range(0, Burst).Select(_ => pool.Rent(Size))];
        held.ForEach(static owner => owner.Dispose());
        Assert.Equal(Burst, pool.GetStatistics().Large.CacheHits - hitsBefore);
    }
}
