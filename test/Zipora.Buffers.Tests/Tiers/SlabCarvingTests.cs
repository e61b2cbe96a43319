using System.Buffers;
using System.Collections.Generic;
using System.Threading;

namespace Zipora.Buffers.Tests;

/// <summary>Slabs are cut into blocks to the end: no slab is left half-carved because two threads mapped at once.</summary>
public sealed class SlabCarvingTests
{
    private const int SmallSlabBytes = 64 * 1024;
    private const int MediumSlabBytes = 64 * 1024;

    [Theory]
    [InlineData(100, SmallSlabBytes)]
    [InlineData(4096, MediumSlabBytes)]
    [InlineData(12_000, 4 * MediumSlabBytes)]
    public void ConcurrentBurstsCutEveryMappedSlabBeforeMappingMore(int size, int slabBytes)
    {
        const int Threads = 8;
        const int Rounds = 4;
        const int RentsPerThread = 1_500;
        using var pool = new TieredMemoryPool(new TieredMemoryPoolOptions { ThreadCacheMaxBuffers = 0 });
        var held = new List<IMemoryOwner<byte>>[Threads];
        using var start = new Barrier(Threads);

        // Every rent is held, so every one cuts a fresh block and every slab filled makes its class map another: the
        // threads keep finding the class's slab full at the same moment.
        var threads = new Thread[Threads];
        for (int t = 0; t < Threads; t++)
        {
            int thread = t;
            threads[t] = new Thread(() =>
            {
                var mine = new List<IMemoryOwner<byte>>(Rounds * RentsPerThread);
                for (int round = 0; round < Rounds; round++)
                {
                    start.SignalAndWait();
                    for (int i = 0; i < RentsPerThread; i++)
                    {
                        mine.Add(pool.Rent(size));
                    }
                }

                held[thread] = mine;
            });
            threads[t].Start();
        }

        foreach (Thread thread in threads)
        {
            thread.Join();
        }

        TieredMemoryPoolStatistics statistics = pool.GetStatistics();
        TierStatistics tier = size < 1024 ? statistics.Small : statistics.Medium;

        // A slab mapped by a thread that lost the race is kept and cut later, so at most one slab per thread that
        // raced is still being cut. Abandoning the loser's room lost most of a slab at each race.
        Assert.True(tier.BytesUncarved <= Threads * (long)slabBytes, statistics.ToString());
        Assert.Equal(tier.BytesAllocated, tier.BytesInUse + tier.BytesRetained + tier.BytesUncarved);
        foreach (List<IMemoryOwner<byte>> mine in held)
        {
            mine.ForEach(owner => owner.Dispose());
        }
    }

    [Fact]
    public void UncarvedRoomIsReportedApartFromRetainedBuffers()
    {
        using var pool = new TieredMemoryPool();
        var owners = new List<IMemoryOwner<byte>> { pool.Rent(4096), pool.Rent(4096), pool.Rent(4096) };
        owners[0].Dispose();

        TierStatistics medium = pool.GetStatistics().Medium;
        Assert.Equal(MediumSlabBytes, medium.BytesAllocated);
        Assert.Equal(MediumSlabBytes - (3 * 4096), medium.BytesUncarved);
        Assert.Equal(4096, medium.BytesRetained);
        Assert.Equal(2 * 4096, medium.BytesInUse);

        owners[1].Dispose();
        owners[2].Dispose();
        pool.Trim();
        Assert.Equal(0, pool.GetStatistics().BytesUncarved);
    }

    [Fact]
    public void AFullSlabHasNothingUncarvedItsTailIsJudgedWithItsLastPage()
    {
        // A class whose blocks do not divide the slab: once it is full, what is left fits no block of the class and is
        // retained with the blocks of its page (fragmented while one of them is rented).
        using var pool = new TieredMemoryPool();
        var owners = new List<IMemoryOwner<byte>> { pool.Rent(100) };
        int classSize = owners[0].Memory.Length;
        int capacity = SmallSlabBytes / classSize;
        Assert.NotEqual(0, SmallSlabBytes % classSize);
        while (owners.Count < capacity)
        {
            owners.Add(pool.Rent(100));
        }

        TierStatistics small = pool.GetStatistics().Small;
        Assert.Equal(SmallSlabBytes, small.BytesAllocated);
        Assert.Equal(0, small.BytesUncarved);
        Assert.Equal(SmallSlabBytes % classSize, small.BytesRetained);
        owners.ForEach(owner => owner.Dispose());
    }
}
