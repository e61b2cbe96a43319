using System;
using System.Collections.Generic;
using System.Threading;

namespace Zipora.Buffers.Tests;

/// <summary>
/// A <see cref="TieredArrayPool"/> holds managed memory, and the managed heap's hard limit is where its trims matter
/// most: the pressure watch trims it when the heap nears the limit, and a heap that grew past that between two checks
/// meets the trim at the limit itself. A trim there must drop every cached array (from the threads' stacks and the
/// depots) and throw nothing: the arrays it drops are the room the process needs.
/// </summary>
[Collection(HeapFiller.AtTheHeapLimit)]
public sealed class ArrayPoolTrimHeapLimitSafetyTests
{
    private const int ArrayLength = 64 * 1024;

    // Returns past a thread's stack go to the class's depot: both places are trimmed.
    private const int StackArrays = 4;
    private const int ArraysCached = 16;

    [Fact]
    public void ATrimAtTheHeapLimitDropsEveryCachedArrayAndNeverThrows()
    {
        if (IsolatedProcess.RunsElsewhereAtHeapLimit(typeof(ArrayPoolTrimHeapLimitSafetyTests), nameof(ATrimAtTheHeapLimitDropsEveryCachedArrayAndNeverThrows)))
        {
            return;
        }

        var failures = new List<string>();
        var filler = new List<byte[]>(400_000);
        object[] crumbs = new object[2_000_000];
        long backgroundFailures = BackgroundFailures.Count;
        foreach (bool underPressure in new[] { false, true })
        {
            string what = underPressure ? "the pressure watch's trim" : "Trim()";
            var options = new TieredArrayPoolOptions { ThreadCacheMaxArrays = StackArrays, IdleReleaseDelay = Timeout.InfiniteTimeSpan };
            var pool = new TieredArrayPool(options);

            // With room: the same trim of another pool (so nothing is compiled first at the limit), then the arrays
            // cached on the thread that trims at the limit.
            Exception? thrown = PoolTrims.RunAtTheHeapLimit(
                pool,
                underPressure,
                () =>
                {
                    var warm = new TieredArrayPool(options);
                    CachedArrays.Fill(warm, ArraysCached, ArrayLength);
                    PoolTrims.Run(warm, underPressure);
                    CachedArrays.Fill(pool, ArraysCached, ArrayLength);
                },
                filler,
                crumbs);

            TieredArrayPoolStatistics after = pool.GetStatistics();
            if (thrown is not null)
            {
                failures.Add($"{what} threw at the heap limit, with {after.BytesRetained} bytes of arrays still cached: {thrown.GetType().Name} at {thrown.StackTrace?.Split('\n')[0].Trim()}");
            }
            else if (after.BytesRetained != 0)
            {
                failures.Add($"{what} at the heap limit left {after.BytesRetained} bytes of arrays cached");
            }
        }

        // A collection at the limit may have made the pressure watcher's own read run out of memory (reported, skipped).
        BackgroundFailureWatch.ProvokedSince(backgroundFailures);
        Assert.True(failures.Count == 0, string.Join("\n", failures));
    }

    [Fact]
    public void TrimsAllocateNothing()
    {
        // What makes the trims safe at the limit, counted exactly: no managed allocation at all, so none can fail.
        var options = new TieredArrayPoolOptions { ThreadCacheMaxArrays = StackArrays, IdleReleaseDelay = Timeout.InfiniteTimeSpan };
        foreach (bool underPressure in new[] { false, true })
        {
            var warm = new TieredArrayPool(options);
            CachedArrays.Fill(warm, ArraysCached, ArrayLength);
            PoolTrims.Run(warm, underPressure);

            var pool = new TieredArrayPool(options);
            CachedArrays.Fill(pool, ArraysCached, ArrayLength);
            long allocated = ThreadAllocations.During(() => PoolTrims.Run(pool, underPressure));
            Assert.True(allocated == 0, $"{(underPressure ? "the pressure watch's trim" : "Trim()")} allocated {allocated} bytes");
            Assert.Equal(0, pool.GetStatistics().BytesRetained);
        }
    }
}
