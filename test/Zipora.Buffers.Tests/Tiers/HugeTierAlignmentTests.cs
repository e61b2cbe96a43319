using System.Buffers;
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

    [Fact]
    public void AHugeBufferIsTwoMegabyteAlignedThoughAWaitingMappingOfItsLengthIsNot()
    {
        using var pool = new TieredMemoryPool(new TieredMemoryPoolOptions
        {
            HugepageThreshold = 32 * 1024,
            EnableHugepages = false,
            TimeProvider = new FakeTimeProvider(),
        });

        // A small-tier slab of 64 KB, let go of within its delay: it waits, mapped, for a new mapping of its length.
        nint block;
        using (IMemoryOwner<byte> small = pool.Rent(100))
        {
            block = OwnerAddress.Of(small);
        }

        pool.Trim();
        Assert.Equal(SlabBytes, pool.GetStatistics().BytesAwaitingRelease);
        Skip.When((block & (HugePageSize - 1)) < SlabBytes, "the slab may be 2 MB-aligned by chance");

        using IMemoryOwner<byte> huge = pool.Rent(SlabBytes);
        Assert.Equal(0, OwnerAddress.Of(huge) & (HugePageSize - 1));
    }
}
