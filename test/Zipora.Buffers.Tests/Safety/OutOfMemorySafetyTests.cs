using System;
using System.Threading;

namespace Zipora.Buffers.Tests;

/// <summary>
/// A process at its GC heap limit (a container's memory limit) throws <see cref="OutOfMemoryException"/> from whatever
/// allocates next. A return runs with its thread's cache marked busy: had it allocated there (the class's shared depot
/// growing as a burst overflowed the thread's stack), the exception would have left the cache marked, and the next trim
/// (the one memory pressure asks for) would have waited for it for ever, holding the tier's locks. So a return
/// allocates nothing at all: the depot's room is reserved as each block is made. (The region tiers' gate sections
/// allocate nothing either: their idle release makes its lists' room before taking the gate, and their statistics are
/// made after it.)
/// </summary>
public sealed class OutOfMemorySafetyTests
{
    public static TheoryData<int, bool> SizesAndModes
    {
        get
        {
            var cases = new TheoryData<int, bool>();
            foreach (int size in new[] { 64, 4096, 16384, 100_000, 3_000_000 })
            {
                cases.Add(size, false);
                cases.Add(size, true);
            }

            return cases;
        }
    }

    [Theory]
    [MemberData(nameof(SizesAndModes))]
    public void ReturningABurstAllocatesNothingSoNoReturnCanFailForWantOfManagedMemory(int size, bool reuseOwners)
    {
        using var pool = new TieredMemoryPool(new TieredMemoryPoolOptions { ReuseOwners = reuseOwners, IdleReleaseDelay = Timeout.InfiniteTimeSpan });
        // The slab tiers' bursts overflow the thread's stack into the depot; the region tiers' stay within their
        // caches (a return past the caches' caps lists the mapping to be unmapped after its delay, outside any lock).
        int count = size > 16384 ? 16 : 3_000;

        // Twice: the first burst makes the blocks; the second reuses them through the depots they overflowed into.
        for (int round = 0; round < 2; round++)
        {
            long allocated = DepotReservation.BytesAllocatedReturning(DepotReservation.Rent(pool, size, count));
            Assert.True(allocated == 0, $"returning {count} buffers of {size} bytes (round {round + 1}) allocated {allocated} bytes");
        }
    }

    [Fact]
    public void BlocksMadeAfterATrimFreedTheirSlabsStillFindRoomInTheDepot()
    {
        // The room reserved for the blocks of a slab let go of is given back: made again, they are reserved again,
        // and their return still allocates nothing (the depot neither grows for ever nor runs short).
        using var pool = new TieredMemoryPool(new TieredMemoryPoolOptions { IdleReleaseDelay = Timeout.InfiniteTimeSpan });
        for (int round = 0; round < 5; round++)
        {
            Assert.Equal(0, DepotReservation.BytesAllocatedReturning(DepotReservation.Rent(pool, 4096, 2_000)));
            pool.Trim();
            Assert.Equal(0, pool.GetStatistics().Medium.BytesRetained);

            // Every slab went with the trim, and the room of its blocks with it.
            Assert.Equal(0, DepotReservation.ReservedIn(pool, "_medium"));
        }
    }
}
