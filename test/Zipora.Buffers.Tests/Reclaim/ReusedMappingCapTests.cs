using System;
using System.Buffers;
using Microsoft.Extensions.Time.Testing;

namespace Zipora.Buffers.Tests;

/// <summary>
/// A mapping let go of within its idle delay has its pages dropped and no longer counts against
/// <see cref="TieredMemoryPoolOptions.MaxBytesInUse"/> while it waits; a new region that takes it (rather than mapping
/// anew) holds its memory again, so it counts again: the cap is a hard one on the bytes the pool holds from the OS.
/// </summary>
public sealed class ReusedMappingCapTests
{
    private const int RegionSize = 100_000;
    private const long RegionBytes = 114_688;

    [Fact]
    public void ARegionThatTakesAWaitingMappingWhosePagesWereDroppedCountsAgainstTheCapAgain()
    {
        using var pool = new TieredMemoryPool(new TieredMemoryPoolOptions { MaxBytesInUse = (2 * RegionBytes) + (RegionBytes / 2), TimeProvider = new FakeTimeProvider() });
        pool.Rent(RegionSize).Dispose();

        // Let go of within the delay: its pages dropped, it waits out the delay uncounted.
        pool.Trim();
        Assert.Equal(RegionBytes, pool.GetStatistics().BytesAwaitingRelease);

        using IMemoryOwner<byte> first = pool.Rent(RegionSize);
        Assert.Equal(1, pool.GetStatistics().MappingsReused);
        using IMemoryOwner<byte> second = pool.Rent(RegionSize);

        // Two regions held, and a third would cross the cap.
        Assert.Throws<InsufficientMemoryException>(() => pool.Rent(RegionSize));
        Assert.Equal(2 * RegionBytes, pool.GetStatistics().BytesInUse);
    }
}
