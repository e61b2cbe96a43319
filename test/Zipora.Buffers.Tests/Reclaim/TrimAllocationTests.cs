using Zipora.Buffers.Native;

namespace Zipora.Buffers.Tests;

/// <summary>
/// A trim finds a block listed twice (disposed twice under ReuseOwners) without a set of every block, which cost it about
/// 28 bytes of managed memory per block where memory is short: the blocks of a slab, sorted by address, keep one of each
/// in place. What a whole trim allocates is bounded in TrimAllocationBoundTests.
/// </summary>
public sealed class TrimAllocationTests
{
    [Fact]
    public void ABlockListedTwiceForATrimCountsOnceAndEveryOtherBlockStays()
    {
        var first = new NativeMemoryManager(0x1000, 16);
        var second = new NativeMemoryManager(0x2000, 16);
        var third = new NativeMemoryManager(0x9000, 16);

        // Two managers of one address are two blocks as far as the trim can tell: neither is dropped for the other.
        var sameAddress = new NativeMemoryManager(0x9000, 16);
        NativeMemoryManager[] run = [first, first, second, third, sameAddress, third];

        int kept = SlabHeap.KeepOneOfEach(run);

        Assert.Equal(4, kept);
        Assert.Same(first, run[0]);
        Assert.Same(second, run[1]);
        Assert.Contains(third, run[2..4]);
        Assert.Contains(sameAddress, run[2..4]);
        Assert.Null(run[4]);
        Assert.Null(run[5]);
    }
}
