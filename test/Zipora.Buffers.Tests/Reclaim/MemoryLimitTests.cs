using System;
using System.Buffers;
using System.Collections.Generic;
using Microsoft.Extensions.Time.Testing;

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

    [Fact]
    public void ARentThatFillsTheCapExactlyIsServed()
    {
        const int LargeSize = 100_000;
        long region;
        using (var measuring = new TieredMemoryPool())
        {
            measuring.Rent(LargeSize).Dispose();
            region = measuring.GetStatistics().Large.BytesAllocated;
        }

        using var pool = new TieredMemoryPool(new TieredMemoryPoolOptions { MaxBytesInUse = region, EnableHugepages = false });
        using IMemoryOwner<byte> owner = pool.Rent(LargeSize);
        Assert.Equal(region, pool.GetStatistics().Large.BytesAllocated);
    }

    [Fact]
    public void AtTheCapARentReleasesIdleMemoryOfOtherTiersBeforeRefusing()
    {
        using var pool = new TieredMemoryPool(new TieredMemoryPoolOptions { MaxBytesInUse = 8 * Megabyte, EnableHugepages = false });
        pool.Rent(7 * Megabyte).Dispose();

        // 7 MB cached in the huge tier + a large buffer of nearly 2 MB is over the cap: the huge tier's region goes first.
        using IMemoryOwner<byte> owner = pool.Rent(1_900_000);
        TieredMemoryPoolStatistics statistics = pool.GetStatistics();
        Assert.True(
            statistics.Huge.BytesRetained == 0 && statistics.Large.BytesInUse > 0,
            $"{statistics.Huge.BytesRetained} bytes still cached in the huge tier, {statistics.Large.BytesInUse} in use in the large tier");
    }

    [Fact]
    public void ARefusalAtTheCapNamesTheBytesLetGoOfWhosePagesCouldNotBeDropped()
    {
        using var pool = new TieredMemoryPool(new TieredMemoryPoolOptions
        {
            MaxBytesInUse = Megabyte,
            EnableHugepages = false,
            PageAllocator = new ScriptedPageAllocator { RefuseAdvice = true },
        });
        pool.Rent(600_000).Dispose();

        // Let go of within its delay, its pages kept by the OS: it counts against the cap until its unmap.
        pool.Trim();
        var error = Assert.Throws<InsufficientMemoryException>(() => pool.Rent(500_000));
        Assert.Contains("could not be dropped", error.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void MapsTheOsRefusedGiveTheirBytesBackToTheCap()
    {
        bool refuse = true;
        using var pool = new TieredMemoryPool(new TieredMemoryPoolOptions
        {
            MaxBytesInUse = Megabyte,
            EnableHugepages = false,
            PageAllocator = new ScriptedPageAllocator { RefuseMap = (_, _) => refuse },
            FallbackPageAllocator = null,
        });
        Assert.Throws<InsufficientMemoryException>(() => pool.Rent(600_000));

        // Nothing was mapped: the whole cap is there for the next rent once the OS maps again.
        refuse = false;
        using IMemoryOwner<byte> owner = pool.Rent(600_000);
        owner.Memory.Span.Fill(1);
        Assert.Equal(1, pool.GetStatistics().Large.CacheMisses);
    }

    [Fact]
    public void ARegionUnmappedAfterItsDelayGivesItsBytesBackToTheCap()
    {
        var time = new FakeTimeProvider();
        using var pool = new TieredMemoryPool(new TieredMemoryPoolOptions
        {
            MaxBytesInUse = Megabyte,
            EnableHugepages = false,
            TimeProvider = time,
            IdleReleaseDelay = SafetyCases.IdleDelay,
        });
        pool.Rent(600_000).Dispose();
        SafetyCases.Advance(time, SafetyCases.IdleDelay * 2);
        Assert.Equal(1, pool.GetStatistics().MunmapCalls);

        // Unmapped, it holds nothing: a rent of another length has the whole cap.
        using IMemoryOwner<byte> owner = pool.Rent(500_000);
        Assert.Equal(2, pool.GetStatistics().MmapCalls);
    }
}
