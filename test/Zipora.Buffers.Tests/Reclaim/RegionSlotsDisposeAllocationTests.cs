using System.Buffers;
using System.Collections.Generic;
using Microsoft.Extensions.Time.Testing;

namespace Zipora.Buffers.Tests;

/// <summary>
/// A pool's dispose allocates no managed memory (DisposeAtTheHeapLimitSafetyTests), whatever the threads that used its
/// large and huge tiers left in their slots: the dispose takes every parked region out of its slot to unmap it. Before,
/// the regions went on a list that grew past the room any trim had given it (4 slots), and the slot of a thread that
/// had exited was retired onto a list made for it; at the GC heap limit either threw partway through the dispose.
/// </summary>
public sealed class RegionSlotsDisposeAllocationTests
{
    private const int LargeSize = 100_000;
    private const int HugeSize = 3_000_000;

    // More threads than the room the tier's list of emptied slots was made with.
    private const int ParkingThreads = 6;

    [Theory]
    [InlineData(OwnerMode.Default)]
    [InlineData(OwnerMode.ReuseOwners)]
    public void DisposingAPoolWithRegionsParkedByManyLiveThreadsAllocatesNothing(OwnerMode mode)
    {
        // The process's first dispose compiles its methods and initializes their types; a later one allocates its own.
        _ = DisposeWithParkedRegions(mode, threadsExited: false);
        long allocated = DisposeWithParkedRegions(mode, threadsExited: false);
        Assert.True(allocated == 0, $"the dispose allocated {allocated} bytes of managed memory");
    }

    [Theory]
    [InlineData(OwnerMode.Default)]
    [InlineData(OwnerMode.ReuseOwners)]
    public void DisposingAPoolWithRegionsParkedByThreadsThatExitedAllocatesNothing(OwnerMode mode)
    {
        _ = DisposeWithParkedRegions(mode, threadsExited: true);
        long allocated = DisposeWithParkedRegions(mode, threadsExited: true);
        Assert.True(allocated == 0, $"the dispose allocated {allocated} bytes of managed memory");
    }

    /// <summary>
    /// Has each of the threads park a large and a huge region in its slots (and leave them alive, or let them exit),
    /// disposes the pool on this thread and checks every region is unmapped once its delay is over; returns the bytes the
    /// dispose allocated.
    /// </summary>
    private static long DisposeWithParkedRegions(OwnerMode mode, bool threadsExited)
    {
        var time = new FakeTimeProvider();
        TieredMemoryPoolOptions options = SafetyCases.Options(mode, time);
        options.EnableHugepages = false;
        var pool = new TieredMemoryPool(options);
        long allocated;
        if (threadsExited)
        {
            for (int index = 0; index < ParkingThreads; index++)
            {
                Assert.Null(FreshThread.Run(() => RentAndParkBoth(pool)));
            }

            allocated = ThreadAllocations.During(pool.Dispose);
        }
        else
        {
            using var threads = new KeptThreads(ParkingThreads);
            threads.RunOnEach(_ => RentAndParkBoth(pool));
            allocated = ThreadAllocations.During(pool.Dispose);
        }

        SafetyCases.AssertDrainedThreeDelaysLater(pool, time);
        TieredMemoryPoolStatistics drained = pool.GetStatistics();
        Assert.True(drained.MmapCalls == drained.MunmapCalls, $"every parked region was unmapped: {drained}");
        return allocated;
    }

    private static void RentAndParkBoth(TieredMemoryPool pool)
    {
        var owners = new List<IMemoryOwner<byte>> { pool.Rent(LargeSize), pool.Rent(HugeSize) };
        owners.ForEach(static owner => owner.Memory.Span.Fill(1));
        owners.ForEach(static owner => owner.Dispose());
    }
}
