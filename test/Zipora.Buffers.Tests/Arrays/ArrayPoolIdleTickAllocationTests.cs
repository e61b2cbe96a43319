using System;
using Microsoft.Extensions.Time.Testing;

namespace Zipora.Buffers.Tests;

/// <summary>
/// The array pool's idle tick runs on the timer whatever the heap holds: at the GC heap limit any allocation throws, so
/// the tick that drops an idle class must allocate nothing, as the trims do (ArrayPoolTrimHeapLimitSafetyTests).
/// </summary>
public sealed class ArrayPoolIdleTickAllocationTests
{
    private static readonly TimeSpan s_delay = TimeSpan.FromSeconds(10);

    [Fact]
    public void IdleTicksAllocateNothingWhetherTheyDropAClassOrKeepABusyOne()
    {
        // With room first, on other clocks: the tick's first run compiles its methods and makes the ticker's own state.
        _ = AllocatedByTicks(new FakeTimeProvider(), withArrays: true);
        _ = AllocatedByTicks(new FakeTimeProvider(), withArrays: false);

        // The fake clock's timer allocates each time it is armed again (the system's does not): the same ticks over a
        // pool that never cached an array, whose tick returns at its first two reads, count that alone.
        long clockOnly = AllocatedByTicks(new FakeTimeProvider(), withArrays: false);
        long allocated = AllocatedByTicks(new FakeTimeProvider(), withArrays: true);
        Assert.True(allocated == clockOnly, $"ten idle ticks allocated {allocated - clockOnly} bytes beyond the fake clock's {clockOnly}");
    }

    /// <summary>
    /// Ten ticks over a pool with, when <paramref name="withArrays"/>, a busy class (used between ticks, never dropped)
    /// and an idle one (dropped at the fifth tick); the bytes the ticks allocated, the uses between them not counted.
    /// </summary>
    private static long AllocatedByTicks(FakeTimeProvider time, bool withArrays)
    {
        var pool = new TieredArrayPool(new TieredArrayPoolOptions { TimeProvider = time, IdleReleaseDelay = s_delay });
        byte[][] busy = new byte[withArrays ? 8 : 0][];
        byte[][] idle = new byte[withArrays ? 8 : 0][];
        RentAndReturn(pool, busy, 4096);
        RentAndReturn(pool, idle, 65_536);

        long allocated = 0;
        for (int tick = 0; tick < 10; tick++)
        {
            RentAndReturn(pool, busy, 4096);
            allocated += ThreadAllocations.During(() => time.Advance(s_delay / 4));
        }

        TieredArrayPoolStatistics statistics = pool.GetStatistics();
        Assert.True(statistics.BytesRetained == busy.Length * 4096, $"the idle class was not dropped: {statistics}");
        return allocated;
    }

    private static void RentAndReturn(TieredArrayPool pool, byte[][] arrays, int length)
    {
        for (int i = 0; i < arrays.Length; i++)
        {
            arrays[i] = pool.Rent(length);
        }

        for (int i = 0; i < arrays.Length; i++)
        {
            pool.Return(arrays[i]);
        }
    }
}
