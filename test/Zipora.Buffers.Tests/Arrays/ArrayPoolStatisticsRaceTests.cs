using System.Diagnostics;
using System.Threading;

namespace Zipora.Buffers.Tests;

/// <summary>
/// Statistics read while a thread settles the stack a trim abandoned (on its next rent or return of the class): the
/// count it clears and the trimmed count it clears must never be read one old and one new, which counted every array
/// the trim evicted a second time.
/// </summary>
public sealed class ArrayPoolStatisticsRaceTests
{
    [Fact]
    public void StatisticsReadWhileAnOwnerSettlesATrimmedStackNeverCountItsArraysEvictedTwice()
    {
        var pool = new TieredArrayPool(new TieredArrayPoolOptions { MaxArrayLength = 16, IdleReleaseDelay = Timeout.InfiniteTimeSpan });
        const int Depth = 64;
        int stop = 0;
        var owner = new Thread(() =>
        {
            var held = new byte[Depth][];
            while (Volatile.Read(ref stop) == 0)
            {
                for (int i = 0; i < Depth; i++)
                {
                    held[i] = pool.Rent(16);
                }

                for (int i = 0; i < Depth; i++)
                {
                    pool.Return(held[i]);
                }
            }
        });
        owner.Start();

        string? overshoot = null;
        var watch = Stopwatch.StartNew();
        while (watch.ElapsedMilliseconds < 1500 && overshoot is null)
        {
            pool.Trim();
            for (int read = 0; read < 20 && overshoot is null; read++)
            {
                TierStatistics arrays = pool.GetStatistics().Arrays;

                // Every array evicted was allocated first: evicted bytes past the allocated ones were counted twice.
                if (arrays.BytesEvicted > arrays.BytesAllocated)
                {
                    overshoot = $"{arrays.BytesEvicted} bytes evicted of {arrays.BytesAllocated} allocated ({arrays.BytesInUse} in use, {arrays.BytesRetained} retained)";
                }
            }
        }

        Volatile.Write(ref stop, 1);
        owner.Join();
        Assert.True(overshoot is null, overshoot);
    }
}
