using System;
using System.Linq;
using System.Threading;

namespace Zipora.Buffers.Tests;

/// <summary>
/// The large and huge tiers' high-water mark was documented as exact, the most buffers of the class in use at once;
/// it counts the regions parked in threads' slots for their next rent as in use (the adaptive region cache sizes
/// itself from the same peak, and a slot's rent and return pay nothing for a count), so four threads that each rented
/// and returned one buffer, one after another, showed a high-water mark of four. The documents now say so.
/// </summary>
public sealed class RegionHighWaterMarkTests
{
    private const int Threads = 4;

    [Theory]
    [InlineData(100_000)]
    [InlineData(3 << 20)]
    public void ARegionParkedInAThreadsSlotCountsTowardsTheHighWaterMarkAsDocumented(int size)
    {
        using var pool = new TieredMemoryPool();
        using var done = new ManualResetEventSlim();
        using var parked = new CountdownEvent(Threads);
        Thread[] threads = [.. Enumerable.Range(0, Threads).Select(_ => new Thread(() =>
        {
            // One at a time: never more than one buffer is rented at once, but each thread keeps its returned
            // region parked in its slot while it lives.
            lock (pool)
            {
                for (int i = 0; i < 3; i++)
                {
                    pool.Rent(size).Dispose();
                }
            }

            parked.Signal();
            done.Wait();
        }))];
        Array.ForEach(threads, static thread => thread.Start());
        parked.Wait();
        TieredMemoryPoolStatistics statistics = pool.GetStatistics();
        done.Set();
        Array.ForEach(threads, static thread => thread.Join());

        SizeClassStatistics row = statistics.SizeHistogram.Single(static row => row.Tier is "large" or "huge");
        Assert.Equal(0, row.BuffersInUse);
        Assert.True(
            row.HighWaterMark == Threads && row.Cached == Threads,
            $"one buffer rented at a time by {Threads} threads that each keep a parked region: high-water mark {row.HighWaterMark} (documented: one per parked region), {row.Cached} cached");
    }
}
