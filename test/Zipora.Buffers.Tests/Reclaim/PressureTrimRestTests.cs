using System.Buffers;
using System.Collections.Generic;
using Microsoft.Extensions.Time.Testing;

namespace Zipora.Buffers.Tests;

/// <summary>
/// README: memory can stay short for good, and a trim under pressure that gave back all it could rests until the pool
/// is rented from or returned to: another would walk every free block again for nothing, once a second.
/// </summary>
public sealed class PressureTrimRestTests
{
    private const int BlockSize = 8000;

    [Fact]
    public void ATrimUnderPressureRestsUntilThePoolIsUsedAgain()
    {
        using var pool = new TieredMemoryPool(new TieredMemoryPoolOptions { UsePinnedArrays = true, TimeProvider = new FakeTimeProvider() });
        var owners = new List<IMemoryOwner<byte>>();
        for (int i = 0; i < 4; i++)
        {
            owners.Add(pool.Rent(BlockSize));
        }

        // One block stays rented: its slab, and the free blocks in it (pinned arrays: their pages cannot be dropped),
        // stay with the pool through a trim.
        for (int i = 1; i < owners.Count; i++)
        {
            owners[i].Dispose();
        }

        var reclaimable = (IReclaimablePool)pool;
        reclaimable.TrimUnderPressure();
        Assert.Equal(1, pool.GetStatistics().PressureTrims);
        Assert.True(pool.GetStatistics().BytesRetained > 0);

        // Still short, nothing rented or returned since: nothing new to give back.
        reclaimable.TrimUnderPressure();
        reclaimable.TrimUnderPressure();
        Assert.Equal(1, pool.GetStatistics().PressureTrims);

        // Used again: the next pressure trims again.
        pool.Rent(BlockSize).Dispose();
        reclaimable.TrimUnderPressure();
        Assert.Equal(2, pool.GetStatistics().PressureTrims);
        owners[0].Dispose();
    }
}
