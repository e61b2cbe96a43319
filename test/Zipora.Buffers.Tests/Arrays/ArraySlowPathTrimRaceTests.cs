using System;
using System.Collections.Concurrent;
using System.Diagnostics;
using System.Threading;

namespace Zipora.Buffers.Tests;

/// <summary>
/// A trim abandoning a class's slots between the slow path's <c>SlotsOf</c> and its push or pop: the slow path must
/// neither throw, nor put a null into the depot, nor lose the array it was given, and the counts must add up.
/// </summary>
public sealed class ArraySlowPathTrimRaceTests
{
    [Theory]
    [InlineData(1)]
    [InlineData(2)]
    [InlineData(4)]
    public void SlowPathsRacingTrimsNeverThrowNorLoseAnArray(int threadCacheMaxArrays)
    {
        var pool = new TieredArrayPool(new TieredArrayPoolOptions
        {
            ThreadCacheMaxArrays = threadCacheMaxArrays,
            MaxArrayLength = 64,
            IdleReleaseDelay = Timeout.InfiniteTimeSpan,
        });
        var other = new TieredArrayPool(new TieredArrayPoolOptions { MaxArrayLength = 64, IdleReleaseDelay = Timeout.InfiniteTimeSpan });
        var failures = new ConcurrentQueue<string>();
        int stop = 0;

        var trimmer = new Thread(() =>
        {
            try
            {
                while (Volatile.Read(ref stop) == 0)
                {
                    pool.Trim();
                }
            }
            catch (Exception exception)
            {
                failures.Enqueue("Trim: " + exception);
            }
        });
        var owner = new Thread(() =>
        {
            try
            {
                var watch = Stopwatch.StartNew();
                while (watch.ElapsedMilliseconds < 2000 && failures.IsEmpty)
                {
                    // The other pool used last: each call below takes the slow path.
                    other.Return(other.Rent(16));
                    byte[] array = pool.Rent(16);
                    if (array is null)
                    {
                        failures.Enqueue("Rent returned null");
                        return;
                    }

                    other.Return(other.Rent(16));
                    pool.Return(array);
                }
            }
            catch (Exception exception)
            {
                failures.Enqueue(exception.ToString());
            }
            finally
            {
                Volatile.Write(ref stop, 1);
            }
        });
        trimmer.Start();
        owner.Start();
        owner.Join();
        trimmer.Join();

        Assert.True(failures.IsEmpty, string.Join(Environment.NewLine, failures));
        pool.Trim();
        TierStatistics arrays = pool.GetStatistics().Arrays;
        Assert.Equal(arrays.Rents, arrays.CacheHits + arrays.CacheMisses);
        Assert.Equal(arrays.Rents, arrays.Returns);
        Assert.Equal(0, arrays.BytesInUse);
        Assert.Equal(arrays.BytesAllocated, arrays.BytesInUse + arrays.BytesRetained + arrays.BytesEvicted);
        GC.KeepAlive(other);
    }
}
