using System;
using System.Buffers;
using Microsoft.Extensions.Time.Testing;

namespace Zipora.Buffers.Tests;

/// <summary>A disposed pool's memory is unmapped once its delay is over, also when a buffer comes back long after the dispose.</summary>
public sealed class DisposedPoolDrainTests
{
    [Theory]
    [InlineData(100)]
    [InlineData(4096)]
    [InlineData(100_000)]
    [InlineData(3_000_000)]
    public void ABufferReturnedLongAfterThePoolWasDisposedIsUnmappedOneDelayLater(int size)
    {
        var time = new FakeTimeProvider();
        var pool = new TieredMemoryPool(new TieredMemoryPoolOptions { TimeProvider = time });
        IMemoryOwner<byte> late = pool.Rent(size);
        pool.Rent(size).Dispose();
        pool.Dispose();

        // The cached buffer waits out its delay, then goes; the timer pauses with nothing left to wait for.
        AdvanceTicks(time, 6);
        TieredMemoryPoolStatistics drained = pool.GetStatistics();
        Assert.Equal(0, drained.BytesAwaitingRelease);
        long unmapsBefore = drained.MunmapCalls;
        long pausedAt = pool.IdleTicks;

        // A minute later the last buffer comes back: its memory is let go of at once, and unmapped a delay later.
        AdvanceTicks(time, 24);
        Assert.Equal(pausedAt, pool.IdleTicks);
        late.Dispose();
        Assert.True(pool.GetStatistics().BytesAwaitingRelease > 0);
        AdvanceTicks(time, 6);
        Assert.True(pool.IdleTicks > pausedAt + 4, "the late return woke the paused timer");
        TieredMemoryPoolStatistics final = pool.GetStatistics();
        Assert.Equal(0, final.BytesAwaitingRelease);
        Assert.Equal(0, final.BytesInUse);
        Assert.True(final.MunmapCalls > unmapsBefore, final.ToString());
    }

    [Theory]
    [InlineData(100)]
    [InlineData(4096)]
    public void ABufferReturnedAfterATrimOfTheDisposedPoolIsStillUnmappedOneDelayLater(int size)
    {
        var time = new FakeTimeProvider();
        var pool = new TieredMemoryPool(new TieredMemoryPoolOptions { TimeProvider = time });
        IMemoryOwner<byte> late = pool.Rent(size);
        pool.Dispose();
        long unmapsBefore = pool.GetStatistics().MunmapCalls;

        // A trim after the dispose (a caller's, memory pressure's) must leave the slab tier's caches closed: reopened,
        // the late return lands in this thread's cache of a tier that is gone, and its slab is never let go of.
        pool.Trim();
        late.Dispose();
        Assert.True(pool.GetStatistics().BytesAwaitingRelease > 0, $"the late return's slab was not let go of\n{pool.GetStatistics()}");
        AdvanceTicks(time, 6);
        TieredMemoryPoolStatistics final = pool.GetStatistics();
        Assert.Equal(0, final.BytesAwaitingRelease);
        Assert.True(final.MunmapCalls > unmapsBefore, final.ToString());
    }

    private static void AdvanceTicks(FakeTimeProvider time, int ticks)
    {
        for (int tick = 0; tick < ticks; tick++)
        {
            time.Advance(TimeSpan.FromSeconds(2.5));
        }
    }
}
