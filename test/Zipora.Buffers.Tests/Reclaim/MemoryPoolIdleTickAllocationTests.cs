using System;
using System.Buffers;
using System.Reflection;
using Microsoft.Extensions.Time.Testing;

namespace Zipora.Buffers.Tests;

/// <summary>
/// The memory pool's idle tick runs on the timer whatever the heap holds, four times per delay for the pool's life. Each
/// tier's part of a steady tick (memory cached and kept, or none cached) reads its counters into tables it owns.
/// </summary>
public sealed class MemoryPoolIdleTickAllocationTests
{
    private static readonly TimeSpan s_delay = TimeSpan.FromSeconds(10);

    [Theory]
    [InlineData("_small")]
    [InlineData("_medium")]
    [InlineData("_large")]
    [InlineData("_huge")]
    public void ATiersSteadyIdleTickAllocatesNothingWithMemoryCachedOrNone(string tierField)
    {
        foreach (bool cached in new[] { true, false })
        {
            var time = new FakeTimeProvider();
            using var pool = new TieredMemoryPool(new TieredMemoryPoolOptions { TimeProvider = time, IdleReleaseDelay = s_delay });
            if (cached)
            {
                RentAndReturn(pool, [100, 8192, 100_000, 6_000_000]);
            }

            var tier = (BufferTier)typeof(TieredMemoryPool).GetField(tierField, BindingFlags.NonPublic | BindingFlags.Instance)!.GetValue(pool)!;
            long retained = pool.GetStatistics().BytesRetained;

            // The same tick, with the clock where it is: the first compiles and dates the counts, the second is steady.
            // A delay no span reaches keeps the memory: what is measured is the tick that finds nothing to give back.
            tier.ReleaseIdle(0, long.MaxValue);
            long allocated = ThreadAllocations.During(() => tier.ReleaseIdle(0, long.MaxValue));

            Assert.True(allocated == 0, $"the {tierField} tier's idle tick allocated {allocated} bytes ({(cached ? "memory cached" : "none cached")})");
            Assert.Equal(retained, pool.GetStatistics().BytesRetained);
        }
    }

    private static void RentAndReturn(TieredMemoryPool pool, int[] sizes)
    {
        foreach (int size in sizes)
        {
            var held = new IMemoryOwner<byte>[8];
            for (int i = 0; i < held.Length; i++)
            {
                held[i] = pool.Rent(size);
            }

            Array.ForEach(held, owner => owner.Dispose());
        }
    }
}
