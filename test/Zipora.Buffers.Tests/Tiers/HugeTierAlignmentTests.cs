using System.Buffers;
using System.Collections.Generic;
using Microsoft.Extensions.Time.Testing;

namespace Zipora.Buffers.Tests;

/// <summary>
/// README: the huge tier's buffers come from 2 MB-aligned arenas. A new mapping may be served by one let go of within
/// its delay (the mapping reuse), and a slab of the small tier is as long as the smallest huge class when the hugepage
/// threshold is low: only a waiting mapping already so aligned may serve the huge tier.
/// </summary>
public sealed class HugeTierAlignmentTests
{
    private const int SlabBytes = 64 * 1024;
    private const long HugePageSize = 2 * 1024 * 1024;

    // Slabs that landed 2 MB-aligned by chance are kept mapped while the next pool maps its own, which the OS then
    // places elsewhere: the test once skipped itself instead, in 1 of 3 runs of the suite.
    private const int MostPools = 8;

    [Fact]
    public void AHugeBufferIsTwoMegabyteAlignedThoughAWaitingMappingOfItsLengthIsNot()
    {
        var alignedByChance = new List<(TieredMemoryPool Pool, IMemoryOwner<byte> Block)>();
        try
        {
            for (int attempt = 0; attempt < MostPools; attempt++)
            {
                var pool = new TieredMemoryPool(new TieredMemoryPoolOptions
                {
                    HugepageThreshold = 32 * 1024,
                    EnableHugepages = false,
                    TimeProvider = new FakeTimeProvider(),
                });

                // A small-tier slab of 64 KB: let go of within its delay, it waits, mapped, for a new mapping of its length.
                IMemoryOwner<byte> small = pool.Rent(100);
                nint block = OwnerAddress.Of(small);
                if ((block & (HugePageSize - 1)) < SlabBytes)
                {
                    alignedByChance.Add((pool, small));
                    continue;
                }

                using (pool)
                {
                    small.Dispose();
                    pool.Trim();
                    Assert.Equal(SlabBytes, pool.GetStatistics().BytesAwaitingRelease);

                    using IMemoryOwner<byte> huge = pool.Rent(SlabBytes);
                    Assert.Equal(0, OwnerAddress.Of(huge) & (HugePageSize - 1));
                    return;
                }
            }

            Assert.Fail($"the small tier's slab was 2 MB-aligned in each of {MostPools} pools");
        }
        finally
        {
            foreach ((TieredMemoryPool pool, IMemoryOwner<byte> block) in alignedByChance)
            {
                block.Dispose();
                pool.Dispose();
            }
        }
    }
}
