using System.Buffers;
using System.Collections.Generic;
using System.Linq;
using Microsoft.Extensions.Time.Testing;

namespace Zipora.Buffers.Tests;

/// <summary>
/// An adaptive tier gives back a class that went cold on its own, while the others stay busy. That trim holds only the
/// cold class's free blocks, so it must leave the other classes' slabs alone: swept with none of their free blocks,
/// every block looks live, and their pages dropped before are taken for committed again, to be advised (and counted as
/// evicted) a second time by the next trim.
/// </summary>
public sealed class ClassTrimSweepTests
{
    private const int BusySize = 4096;
    private const int ColdSize = 1024;
    private const int PageSize = 4096;

    // A medium slab is 64 KB: 16 blocks of 4 KB, one page each.
    private const int SlabBytes = 64 * 1024;
    private const int BlocksPerSlab = SlabBytes / BusySize;

    [Fact]
    public void AClassTrimmedForIdlenessLeavesTheDroppedPagesOfOtherClassesDropped()
    {
        var time = new FakeTimeProvider();
        var allocator = new AdviceCountingAllocator();
        using var pool = new TieredMemoryPool(new TieredMemoryPoolOptions
        {
            EnableHugepages = false,
            IdleReleaseDelay = SafetyCases.IdleDelay,
            TimeProvider = time,
            PageAllocator = allocator,
        });

        // One slab of the busy class, every block but the first returned: the trim drops the other 15 pages and the
        // slab stays, pinned by the live block.
        List<IMemoryOwner<byte>> owners = [.. Enumerable.Range(0, BlocksPerSlab).Select(_ => pool.Rent(BusySize))];
        nint slab = owners.Min(OwnerAddress.Of);
        Assert.All(owners, owner => Assert.InRange(OwnerAddress.Of(owner), slab, slab + SlabBytes - BusySize));
        owners.Skip(1).ToList().ForEach(static owner => owner.Dispose());
        pool.Trim();
        long droppedAtFirst = allocator.AdvisedBytesWithin(slab, SlabBytes);
        Assert.Equal((BlocksPerSlab - 1) * PageSize, droppedAtFirst);

        // Another class's burst, which then goes cold for two delays while the busy class rents and returns one block
        // at each tick: the cold class alone is trimmed for idleness.
        List<IMemoryOwner<byte>> burst = [.. Enumerable.Range(0, 16).Select(_ => pool.Rent(ColdSize))];
        burst.ForEach(static owner => owner.Dispose());
        for (int tick = 0; tick < 8; tick++)
        {
            pool.Rent(BusySize).Dispose();
            SafetyCases.Advance(time, SafetyCases.IdleDelay / 4);
        }

        Assert.Equal(0, pool.GetStatistics().SizeHistogram.Single(static row => row.Tier == "medium" && row.ClassSize == ColdSize).Cached);
        Assert.NotEqual(0, pool.GetStatistics().SizeHistogram.Single(static row => row.Tier == "medium" && row.ClassSize == BusySize).Cached);

        // The one block rented since put its page back in use: only that page is due again.
        pool.Trim();
        long advisedAgain = allocator.AdvisedBytesWithin(slab, SlabBytes) - droppedAtFirst;
        Assert.True(
            advisedAgain == PageSize,
            $"the trim after the cold class's idle trim advised {advisedAgain} B of the busy class's slab again; only the page of the one block rented since its drop ({PageSize} B) was due");
        owners[0].Dispose();
    }
}
