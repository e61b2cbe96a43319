using System;
using System.Buffers;
using Microsoft.Extensions.Time.Testing;
using Zipora.Buffers.Native;

namespace Zipora.Buffers.Tests;

/// <summary>
/// A region returned to a disposed pool after its timer paused, whose page drop throws in a custom allocator (its
/// bug, passed to the owner's dispose), is listed to be unmapped later: that listing wakes the paused timer, as any
/// late return does. Before, the exception left before the wake, and the mapping stayed mapped and counted as
/// awaiting release for the life of the process, or until some other late return woke the timer.
/// </summary>
public sealed class LateReturnThatThrowsWakeTests
{
    [Theory]
    [InlineData(100_000)]
    [InlineData(3_000_000)]
    public void ARegionListedAfterItsPageDropThrewIsUnmappedByTheDisposedPoolsTimer(int size)
    {
        var time = new FakeTimeProvider();
        var allocator = new LiveMappingsAllocator(mostLive: 64);
        var pool = new TieredMemoryPool(allocator.PoolOptions(OwnerMode.Default, time));
        IMemoryOwner<byte> late = pool.Rent(size);
        pool.Dispose();

        // Nothing else waits: the timer pauses, and only the late return can wake it.
        SafetyCases.Advance(time, SafetyCases.IdleDelay * 2);
        long pausedAt = pool.IdleTicks;
        SafetyCases.Advance(time, SafetyCases.IdleDelay);
        Assert.True(pool.IdleTicks == pausedAt, $"the disposed pool's timer did not pause: {pausedAt} ticks, then {pool.IdleTicks}");
        (nint Address, nuint Length, long MappedAt, int Tag) region = Assert.Single(allocator.Live());

        // Returned within no delay, its pages are dropped before a later unmap: the drop throws, once.
        bool thrown = false;
        allocator.BeforeAdvise = advice =>
        {
            if (advice == PageAdvice.DontNeed && !thrown)
            {
                thrown = true;
                throw new InvalidOperationException("the custom allocator's own bug, once");
            }
        };
        _ = Assert.Throws<InvalidOperationException>(late.Dispose);
        allocator.BeforeAdvise = null;
        Assert.True(pool.GetStatistics().BytesAwaitingRelease > 0, $"the region whose page drop threw was not listed\n{pool.GetStatistics()}");

        // Two delays on, its unmap is due at the first tick past one: seen from outside the pool, nothing is left mapped.
        SafetyCases.Advance(time, SafetyCases.IdleDelay * 2);
        TieredMemoryPoolStatistics statistics = pool.GetStatistics();
        string maps = ProcessMappings.CanRead ? ProcessMappings.Describe(region.Address, (long)region.Length) : "maps unreadable";
        Assert.True(
            allocator.Live().Length == 0,
            $"{size} B: still mapped two delays after the late return whose page drop threw ({maps}); timer ticks {pausedAt} at the pause, {pool.IdleTicks} now\n{statistics}");
        Assert.Equal(0, statistics.BytesAwaitingRelease);
        Assert.Equal(statistics.MmapCalls, statistics.MunmapCalls);
    }
}
