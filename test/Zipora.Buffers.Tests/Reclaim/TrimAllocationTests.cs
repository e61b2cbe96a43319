using System;
using System.Buffers;
using Zipora.Buffers.Native;

namespace Zipora.Buffers.Tests;

/// <summary>
/// A trim runs when memory is short (a cgroup near its limit, a pool at its cap), so the managed memory it needs for
/// its lists of free blocks is counted: a set of every block to find those listed twice cost it about 28 bytes per
/// block, and a pressure trim of half a million free blocks pushed a process at 87% of its cgroup's limit over it.
/// </summary>
public sealed class TrimAllocationTests
{
    private const int Blocks = 400_000;

    [Fact]
    public void ATrimNeedsAtMost36BytesOfManagedMemoryPerFreeBlock()
    {
        using var pool = new TieredMemoryPool(new TieredMemoryPoolOptions { ThreadCacheMaxBuffers = 0, EnableHugepages = false });
        var owners = new IMemoryOwner<byte>[Blocks];
        for (int i = 0; i < owners.Length; i++)
        {
            owners[i] = pool.Rent(16);
        }

        // Every other block returned: each slab keeps a rented neighbour, so the trim walks every free block and keeps it.
        for (int i = 0; i < owners.Length; i += 2)
        {
            owners[i].Dispose();
        }

        pool.Trim();
        long before = GC.GetAllocatedBytesForCurrentThread();
        pool.Trim();
        double perBlock = (GC.GetAllocatedBytesForCurrentThread() - before) / (Blocks / 2.0);

        Assert.True(perBlock <= 36, $"a trim of {Blocks / 2} free blocks allocated {perBlock:F1} bytes per block");
        for (int i = 1; i < owners.Length; i += 2)
        {
            owners[i].Dispose();
        }
    }

    [Fact]
    public void ABlockListedTwiceForATrimCountsOnceAndEveryOtherBlockStays()
    {
        var first = new NativeMemoryManager(0x1000, 16);
        var second = new NativeMemoryManager(0x2000, 16);
        var third = new NativeMemoryManager(0x9000, 16);

        // Two managers of one address are two blocks as far as the trim can tell: neither is dropped for the other.
        var sameAddress = new NativeMemoryManager(0x9000, 16);
        NativeMemoryManager[] bySlab = [first, second, first, third, sameAddress, third];
        int[] firstBySlab = [0, 3, 3, 6];

        SlabHeap.RemoveDuplicates(bySlab, firstBySlab);

        Assert.Equal([0, 2, 2, 4], firstBySlab);
        Assert.Same(first, bySlab[0]);
        Assert.Same(second, bySlab[1]);
        Assert.Contains(third, bySlab[2..4]);
        Assert.Contains(sameAddress, bySlab[2..4]);
        Assert.Null(bySlab[4]);
        Assert.Null(bySlab[5]);
    }
}
