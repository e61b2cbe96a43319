using System.Buffers;
using System.Collections.Generic;
using System.Linq;

namespace Zipora.Buffers.Tests;

public sealed class ThreadCacheTests
{
    private const int MediumSize = 4096;

    [Fact]
    public void APoolCreatedAfterAnotherWasDisposedUsesItsOwnThreadCacheThoughItTakesTheSameSlot()
    {
        var first = new TieredMemoryPool(new TieredMemoryPoolOptions { EnableHugepages = false });
        for (int i = 0; i < 3; i++)
        {
            first.Rent(MediumSize).Dispose();
        }

        first.Dispose();

        // The thread's table still holds the first pool's cache at the slot the second pool is given back.
        using var second = new TieredMemoryPool(new TieredMemoryPoolOptions { EnableHugepages = false });
        IMemoryOwner<byte> missed = second.Rent(MediumSize);
        missed.Dispose();
        second.Rent(MediumSize).Dispose();

        TierStatistics medium = second.GetStatistics().Medium;
        Assert.Equal(2, medium.Rents);
        Assert.Equal(1, medium.CacheMisses);
        Assert.Equal(1, medium.CacheHits);
        Assert.Equal(2, medium.Returns);
        Assert.Equal(0, medium.BytesInUse);
    }

    [Fact]
    public void TwoPoolsTakingTurnsOnOneThreadEachServeFromTheirOwnCache()
    {
        using var left = new TieredMemoryPool(new TieredMemoryPoolOptions { EnableHugepages = false });
        using var right = new TieredMemoryPool(new TieredMemoryPoolOptions { EnableHugepages = false });
        var fromLeft = new HashSet<nint>();
        var fromRight = new HashSet<nint>();
        for (int turn = 0; turn < 10; turn++)
        {
            using (IMemoryOwner<byte> owner = left.Rent(MediumSize))
            {
                fromLeft.Add(AddressOf(owner));
            }

            using (IMemoryOwner<byte> owner = right.Rent(MediumSize))
            {
                fromRight.Add(AddressOf(owner));
            }
        }

        // Each pool hands the same block back every turn, and never one of the other's.
        Assert.Single(fromLeft);
        Assert.Single(fromRight);
        Assert.NotEqual(fromLeft.Single(), fromRight.Single());
        foreach (TieredMemoryPool pool in new[] { left, right })
        {
            TierStatistics medium = pool.GetStatistics().Medium;
            Assert.Equal(10, medium.Rents);
            Assert.Equal(9, medium.CacheHits);
            Assert.Equal(10, medium.Returns);
        }
    }

    private static unsafe nint AddressOf(IMemoryOwner<byte> owner)
    {
        fixed (byte* start = owner.Memory.Span)
        {
            return (nint)start;
        }
    }
}
