using System.Buffers;
using System.Collections.Generic;
using System.Threading;

namespace Zipora.Buffers.Tests;

/// <summary>
/// A slab page a trim dropped while its slab was still being carved can receive a fresh block later: once that block
/// is written and returned, the next trim must drop the page again, not take it for still dropped.
/// </summary>
public sealed class SlabPageRedropTests
{
    private const int Size = 100;
    private const int ClassSize = 112;
    private const int PageSize = 4096;

    [Fact]
    public void ABlockCarvedOnceItsPageWasDroppedHasThatPageDroppedAgainByTheNextTrim()
    {
        using var pool = new TieredMemoryPool(new TieredMemoryPoolOptions { AdaptiveCaches = false, EnableHugepages = false, IdleReleaseDelay = Timeout.InfiniteTimeSpan });

        // 38 blocks of 112 B: blocks 0 to 35 lie on the slab's first page, 36 straddles the first two, 37 is on the
        // second, which is carved up to 4,256 B of the slab.
        var owners = new List<IMemoryOwner<byte>>();
        for (int i = 0; i < 38; i++)
        {
            owners.Add(pool.Rent(Size));
        }

        nint slab = OwnerAddress.Of(owners[0]);
        Assert.Equal(0, slab % PageSize);
        for (int i = 0; i < owners.Count; i++)
        {
            Assert.Equal(slab + (i * ClassSize), OwnerAddress.Of(owners[i]));
        }

        // Free: block 1 on the first page, 36 and 37; the rest stay live, so the slab stays and its second page is dropped.
        owners[1].Dispose();
        owners[36].Dispose();
        owners[37].Dispose();
        pool.Trim();
        long evictedAfterFirstTrim = pool.GetStatistics().Small.BytesEvicted;
        Assert.Equal(PageSize, evictedAfterFirstTrim);

        // This thread takes the three free blocks into its cache (handing out block 1), so another thread's rent
        // finds none and carves block 38, on the dropped second page, and writes it.
        IMemoryOwner<byte> reused = pool.Rent(Size);
        Assert.Equal(slab + ClassSize, OwnerAddress.Of(reused));
        nint carved = 0;
        var other = new Thread(() =>
        {
            IMemoryOwner<byte> fresh = pool.Rent(Size);
            carved = OwnerAddress.Of(fresh);
            fresh.Memory.Span.Fill(0xAB);
            fresh.Dispose();
        });
        other.Start();
        other.Join();
        Assert.Equal(slab + (38 * ClassSize), carved);
        if (ProcessMappings.CanRead)
        {
            Assert.True(ProcessMappings.ResidentPages(slab + PageSize, PageSize) == 1, "the written fresh block left its page not resident");
        }

        // Every block on the second page is free again: the trim drops the page (evicting it once more) and it leaves
        // resident memory.
        reused.Dispose();
        pool.Trim();
        long evicted = pool.GetStatistics().Small.BytesEvicted;
        Assert.True(evicted == 2 * PageSize, $"the second trim evicted {evicted - evictedAfterFirstTrim} B; the page written after its first drop is {PageSize} B");
        if (ProcessMappings.CanRead)
        {
            Assert.True(ProcessMappings.ResidentPages(slab + PageSize, PageSize) == 0, "the page under the written fresh block is still resident after the trim");
        }

        for (int i = 0; i < owners.Count; i++)
        {
            if (i is not 1 and not 36 and not 37)
            {
                owners[i].Dispose();
            }
        }
    }
}
