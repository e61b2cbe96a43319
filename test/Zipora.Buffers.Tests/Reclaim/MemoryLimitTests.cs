using System;
using System.Buffers;
using System.Collections.Generic;

namespace Zipora.Buffers.Tests;

public sealed class MemoryLimitTests
{
    private const int Megabyte = 1024 * 1024;

    [Fact]
    public void ARentPastTheCapThrowsInsufficientMemoryNamingTheOptionAndThePoolStaysUsable()
    {
        using var pool = new TieredMemoryPool(new TieredMemoryPoolOptions { MaxBytesInUse = 8 * Megabyte, EnableHugepages = false });
        IMemoryOwner<byte> first = pool.Rent(6 * Megabyte);

        var error = Assert.Throws<InsufficientMemoryException>(() => pool.Rent(6 * Megabyte));
        Assert.Contains(nameof(TieredMemoryPoolOptions.MaxBytesInUse), error.Message, StringComparison.Ordinal);
        TieredMemoryPoolStatistics statistics = pool.GetStatistics();
        Assert.Equal(6 * Megabyte, statistics.BytesInUse);
        Assert.Equal(1, statistics.Huge.Rents);

        first.Dispose();
        using IMemoryOwner<byte> again = pool.Rent(6 * Megabyte);
        again.Memory.Span.Fill(1);
        Assert.Equal(1, pool.GetStatistics().Huge.CacheHits);
    }

    [Fact]
    public void AtTheCapThePoolReleasesItsIdleMemoryBeforeRefusing()
    {
        using var pool = new TieredMemoryPool(new TieredMemoryPoolOptions { MaxBytesInUse = 8 * Megabyte, EnableHugepages = false });
        pool.Rent(6 * Megabyte).Dispose();
        for (int i = 0; i < 64; i++)
        {
            pool.Rent(16 * 1024).Dispose();
        }

        // 6 MB cached + 7 MB asked is over the cap: the cached region goes first, then the rent fits.
        using IMemoryOwner<byte> owner = pool.Rent(7 * Megabyte);
        TieredMemoryPoolStatistics statistics = pool.GetStatistics();
        Assert.Equal(0, statistics.Huge.BytesRetained);
        Assert.Equal(7 * Megabyte, statistics.Huge.BytesInUse);
    }

    [Fact]
    public void EveryTierRespectsTheCap()
    {
        using var pool = new TieredMemoryPool(new TieredMemoryPoolOptions { MaxBytesInUse = 4 * Megabyte, EnableHugepages = false });
        foreach (int size in new[] { 100, 4096, 100_000 })
        {
            var owners = new List<IMemoryOwner<byte>>();
            Assert.Throws<InsufficientMemoryException>(() => RentUntilRefused(pool, size, owners));

            TieredMemoryPoolStatistics statistics = pool.GetStatistics();
            Assert.InRange(statistics.BytesInUse + statistics.BytesRetained, 1, 4 * Megabyte);
            owners.ForEach(owner => owner.Dispose());
            pool.Trim();
        }
    }

    [Fact]
    public void ANegativeCapIsRejected()
    {
        var error = Assert.Throws<ArgumentException>(() => new TieredMemoryPool(new TieredMemoryPoolOptions { MaxBytesInUse = -1 }));
        Assert.Equal(nameof(TieredMemoryPoolOptions.MaxBytesInUse), error.ParamName);
    }

    private static void RentUntilRefused(TieredMemoryPool pool, int size, List<IMemoryOwner<byte>> owners)
    {
        for (int i = 0; i < 1_000_000; i++)
        {
            owners.Add(pool.Rent(size));
        }
    }
}
