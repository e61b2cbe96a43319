using System;
using System.Collections.Generic;
using Microsoft.Extensions.Time.Testing;

namespace Zipora.Buffers.Tests;

/// <summary>
/// The idle tick gives back an array pool's idle classes on a timer, whatever the heap holds: in a container, at the GC
/// heap limit, the arrays it drops are the room the process needs. A tick there must drop them, not fail before the drop
/// and leave them cached until their class is used again.
/// </summary>
[Collection(HeapFiller.AtTheHeapLimit)]
public sealed class ArrayPoolIdleTickHeapLimitSafetyTests
{
    private const int ArrayLength = 64 * 1024;
    private const int ArraysCached = 16;
    private static readonly TimeSpan s_delay = TimeSpan.FromSeconds(10);

    [Fact]
    public void AnIdleTickAtTheHeapLimitDropsTheIdleClassesArrays()
    {
        if (IsolatedProcess.RunsElsewhereAtHeapLimit(typeof(ArrayPoolIdleTickHeapLimitSafetyTests), nameof(AnIdleTickAtTheHeapLimitDropsTheIdleClassesArrays)))
        {
            return;
        }

        var filler = new List<byte[]>(400_000);
        long backgroundFailures = BackgroundFailures.Count;
        var time = new FakeTimeProvider();
        TieredArrayPool pool = null!;

        // With room: the same ticks over another pool on its own clock (so nothing is compiled first at the limit), counting
        // those before the one that drops its arrays; then the arrays cached and those ticks. At the limit: the tick that
        // drops them. Only that one: the fake clock's timer allocates to be armed again, so no tick follows it there.
        Exception? thrown = HeapFiller.ThrownOnAFreshThread(
            () =>
            {
                var warmTime = new FakeTimeProvider();
                var warm = new TieredArrayPool(new TieredArrayPoolOptions { TimeProvider = warmTime, IdleReleaseDelay = s_delay });
                CachedArrays.Fill(warm, ArraysCached, ArrayLength);
                int ticksBefore = 0;
                while (warm.GetStatistics().BytesRetained != 0)
                {
                    Assert.True(ticksBefore < 12, "the warm pool's arrays were never dropped");
                    ticksBefore++;
                    warmTime.Advance(s_delay / 4);
                }

                pool = new TieredArrayPool(new TieredArrayPoolOptions { TimeProvider = time, IdleReleaseDelay = s_delay });
                CachedArrays.Fill(pool, ArraysCached, ArrayLength);
                for (int tick = 1; tick < ticksBefore; tick++)
                {
                    time.Advance(s_delay / 4);
                }

                Assert.Equal((long)ArraysCached * ArrayLength, pool.GetStatistics().BytesRetained);
            },
            () => time.Advance(s_delay / 4),
            filler);
        filler.Clear();
        GC.Collect();

        long failures = BackgroundFailures.Count - backgroundFailures;
        BackgroundFailureWatch.ProvokedSince(backgroundFailures);
        long retained = pool.GetStatistics().BytesRetained;
        Assert.True(
            thrown is null && retained == 0,
            $"after the idle tick at the heap limit {retained} bytes of arrays were still cached; {failures} background failures were reported ({BackgroundFailures.Last.Work}); thrown: {thrown}");
    }
}
