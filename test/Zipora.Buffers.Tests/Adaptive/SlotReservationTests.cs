using System;
using System.Buffers;
using System.Collections.Generic;
using System.Linq;
using System.Threading;
using Microsoft.Extensions.Time.Testing;

namespace Zipora.Buffers.Tests;

/// <summary>
/// A region tier's thread slot reserves room in the shared cache's limits for the region it parks. These tests check
/// that the room follows what the slots hold, so the byte limit caps memory and not room no region uses.
/// </summary>
public sealed class SlotReservationTests
{
    private const int Big = 1024 * 1024;
    private const int Small = 20 * 1024;
    private const int Threads = 4;
    private const int BurstCount = 64;
    private static readonly TimeSpan s_delay = TimeSpan.FromSeconds(10);

    [Fact]
    public void ASlotThatOnceParkedABigRegionKeepsNoRoomForItOnceItParksOnlySmallOnes()
    {
        // Four threads each park a 1 MB region once, then only 20 KB ones, every quarter delay (their slots stay in use).
        // Their four 1 MB reservations filled the 4 MB cache limit for good: the shared cache then kept nothing, and a
        // burst of 64 regions of 20 KB (1.25 MB, a third of the limit) was mapped again at every quarter delay, as long
        // as those threads lived.
        var time = new FakeTimeProvider();
        using var pool = new TieredMemoryPool(new TieredMemoryPoolOptions
        {
            RegionCacheMaxBytes = Threads * Big,
            IdleReleaseDelay = s_delay,
            TimeProvider = time,
        });

        const int Quarters = 8;
        using var barrier = new Barrier(Threads + 1);
        Thread[] parkers = [.. Enumerable.Range(0, Threads).Select(_ => new Thread(() =>
        {
            barrier.SignalAndWait();
            pool.Rent(Big).Dispose();
            pool.Rent(Small).Dispose();
            barrier.SignalAndWait();
            for (int quarter = 0; quarter < Quarters; quarter++)
            {
                barrier.SignalAndWait();
                pool.Rent(Small).Dispose();
                barrier.SignalAndWait();
            }
        }))];
        foreach (Thread parker in parkers)
        {
            parker.Start();
        }

        barrier.SignalAndWait();
        barrier.SignalAndWait();
        for (int quarter = 0; quarter < Quarters; quarter++)
        {
            barrier.SignalAndWait();
            barrier.SignalAndWait();
            Burst(pool);
            Assert.InRange(pool.GetStatistics().Large.BytesRetained, 0, Threads * Big);
            time.Advance(s_delay / 4);
        }

        foreach (Thread parker in parkers)
        {
            parker.Join();
        }

        // The parkers' threads have exited, but nothing retired their slots yet: the last burst still meets them.
        long hitsBefore = pool.GetStatistics().Large.CacheHits;
        Burst(pool);
        TieredMemoryPoolStatistics statistics = pool.GetStatistics();
        Assert.Equal(BurstCount, statistics.Large.CacheHits - hitsBefore);
        Assert.InRange(statistics.Large.BytesRetained, 0, Threads * Big);
    }

    private static void Burst(TieredMemoryPool pool)
    {
        var held = new List<IMemoryOwner<byte>>();
        for (int i = 0; i < BurstCount; i++)
        {
            held.Add(pool.Rent(Small));
        }

        held.ForEach(static owner => owner.Dispose());
    }
}
