using System;
using System.Buffers;
using Microsoft.Extensions.Time.Testing;

namespace Zipora.Buffers.Tests;

/// <summary>
/// A mapping let go of within its delay has its pages dropped and stops counting against
/// <see cref="TieredMemoryPoolOptions.MaxBytesInUse"/> then; its unmap a delay later must not subtract its bytes a
/// second time. Subtracted twice, the pool's count of mapped bytes fell below what it holds, and the cap let that much
/// more be mapped for the pool's life (the unmap's <c>counted</c> flag is what prevents it).
/// </summary>
public sealed class DeferredUnmapCapTests
{
    private const int RegionSize = 100_000;
    private const long RegionBytes = 114_688;

    [Fact]
    public void AMappingUnmappedAfterItsPagesWereDroppedGivesTheCapNoRoomTwice()
    {
        var time = new FakeTimeProvider();
        TieredMemoryPoolOptions options = SafetyCases.Options(OwnerMode.Default, time);
        options.MaxBytesInUse = (2 * RegionBytes) + (RegionBytes / 2);
        using var pool = new TieredMemoryPool(options);

        // Let go of within the delay (its pages dropped, uncounted), then unmapped once the delay has passed.
        pool.Rent(RegionSize).Dispose();
        pool.Trim();
        Assert.Equal(RegionBytes, pool.GetStatistics().BytesAwaitingRelease);
        SafetyCases.Advance(time, SafetyCases.IdleDelay * 2);
        Assert.Equal(0, pool.GetStatistics().BytesAwaitingRelease);

        // Two regions fill the cap, as in a fresh pool: a third would cross it.
        using IMemoryOwner<byte> first = pool.Rent(RegionSize);
        using IMemoryOwner<byte> second = pool.Rent(RegionSize);
        IMemoryOwner<byte>? third = null;
        Exception? refusal = Record.Exception(() => third = pool.Rent(RegionSize));
        TieredMemoryPoolStatistics statistics = pool.GetStatistics();
        third?.Dispose();
        Assert.True(refusal is InsufficientMemoryException, $"a third region was {(third is null ? "refused with " + refusal?.GetType().Name : "served")} under a cap of two and a half, with {statistics.BytesInUse} bytes in use\n{statistics}");
    }
}
