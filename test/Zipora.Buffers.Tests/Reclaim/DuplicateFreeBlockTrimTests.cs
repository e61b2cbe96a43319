using System.Buffers;
using Microsoft.Extensions.Time.Testing;
using Zipora.Buffers.Native;

namespace Zipora.Buffers.Tests;

/// <summary>
/// Under ReuseOwners the owner is the pooled block's manager, and its dispose checks and sets its state without a
/// lock: two threads disposing one owner at once can both return it, and the block then sits in the caches twice.
/// A trim must count it once. Counted twice, a slab whose other block is still rented looks all free: the trim lets
/// go of it and drops its pages under the live block (and the mapping, made reusable, may be handed out again).
/// The race is not forced here: its outcome is, by handing the disposed block to its tier a second time.
/// </summary>
public sealed class DuplicateFreeBlockTrimTests
{
    private const int Size = 4096;
    private const long Stamp = 0x5A17_0B10_C4ED_0001;

    [Fact]
    public void ABlockReturnedTwiceIsCountedOnceByATrimSoItsLiveNeighboursPagesStay()
    {
        var allocator = new AdviceCountingAllocator();
        TieredMemoryPoolOptions options = SafetyCases.Options(OwnerMode.ReuseOwners, new FakeTimeProvider());
        options.PageAllocator = allocator;
        options.EnableHugepages = false;
        using var pool = new TieredMemoryPool(options);

        // Two blocks carved from a fresh slab: one stays rented, the other is returned twice.
        IMemoryOwner<byte> live = pool.Rent(Size);
        var twice = Assert.IsType<NativeMemoryManager>(pool.Rent(Size));
        SafetyCases.Stamp(live, Stamp, "the live block");
        nint liveAt = OwnerAddress.Of(live);
        twice.Dispose();
        Assert.NotNull(twice.Releaser);
        twice.Releaser.Release(twice);

        pool.Trim();
        long advisedUnderLive = allocator.AdvisedBytesWithin(liveAt, Size);
        Assert.True(advisedUnderLive == 0, $"the trim advised {advisedUnderLive} B under the live block beside one returned twice: the copy was counted, and the slab taken for all free");
        Assert.True(SafetyCases.HasStamp(live, Stamp, "the live block"), "the live block lost its contents in the trim");

        // Only one copy went back: two rents get two blocks.
        IMemoryOwner<byte> first = pool.Rent(Size);
        IMemoryOwner<byte> second = pool.Rent(Size);
        SafetyCases.AssertDisjoint([live, first, second], "after a trim of a block returned twice");
        first.Dispose();
        second.Dispose();
        live.Dispose();
    }
}
