using System;
using System.Buffers;
using Microsoft.Extensions.Time.Testing;
using Zipora.Buffers.Native;

namespace Zipora.Buffers.Tests;

public sealed class FallbackTests
{
    private const int EightMegabytes = 8 * 1024 * 1024;

    [Fact]
    public void WithoutReservedHugepagesTheHugeTierFallsBackAndCountsIt()
    {
        var allocator = new ScriptedPageAllocator { RefuseMap = static (_, kind) => kind != PageKind.Normal };
        using var pool = new TieredMemoryPool(new TieredMemoryPoolOptions { PageAllocator = allocator });
        using IMemoryOwner<byte> owner = pool.Rent(EightMegabytes);
        owner.Memory.Span.Fill(7);

        TieredMemoryPoolStatistics statistics = pool.GetStatistics();
        Assert.Equal(1, allocator.HugeTlbRequests);
        Assert.True(statistics.FallbackAllocations >= 1);
        Assert.Equal(1, statistics.Huge.CacheMisses);
    }

    [Fact]
    public void WhenTheKernelRefusesTransparentHugepagesTheBufferStillWorksOnBasePages()
    {
        var allocator = new ScriptedPageAllocator { RefuseMap = static (_, kind) => kind != PageKind.Normal, RefuseAdvice = true };
        using var pool = new TieredMemoryPool(new TieredMemoryPoolOptions { PageAllocator = allocator });
        using IMemoryOwner<byte> owner = pool.Rent(EightMegabytes);
        owner.Memory.Span.Fill(7);

        TieredMemoryPoolStatistics statistics = pool.GetStatistics();
        Assert.Equal(2, statistics.FallbackAllocations);
        Assert.Equal(0, statistics.HugepageBytes);
    }

    [Fact]
    public void WhenTheOSRefusesPagesThePoolFallsBackToThePortableAllocator()
    {
        var allocator = new ScriptedPageAllocator { RefuseMap = static (_, _) => true, HugeTlbSupported = false };
        using var pool = new TieredMemoryPool(new TieredMemoryPoolOptions { PageAllocator = allocator, EnableHugepages = false });
        foreach (int size in new[] { 100, 4096, 100_000, EightMegabytes })
        {
            using IMemoryOwner<byte> owner = pool.Rent(size);
            owner.Memory.Span.Fill(3);
            Assert.Equal(3, owner.Memory.Span[^1]);
        }

        Assert.Equal(4, pool.GetStatistics().FallbackAllocations);
    }

    [Fact]
    public void WhenEveryBackendRefusesRentThrowsInsufficientMemoryAndThePoolStaysUsable()
    {
        bool refuse = true;
        var allocator = new ScriptedPageAllocator(PageAllocator.Portable) { RefuseMap = (_, _) => refuse, HugeTlbSupported = false };
        using var pool = new TieredMemoryPool(new TieredMemoryPoolOptions { PageAllocator = allocator, FallbackPageAllocator = allocator, EnableHugepages = false });

        foreach (int size in new[] { 100, 4096, 100_000, EightMegabytes })
        {
            var error = Assert.Throws<InsufficientMemoryException>(() => pool.Rent(size));
            Assert.Contains("tier", error.Message, StringComparison.Ordinal);
        }

        TieredMemoryPoolStatistics failed = pool.GetStatistics();
        Assert.Equal(0, failed.BytesInUse);
        Assert.Equal(0, failed.Small.Rents + failed.Medium.Rents + failed.Large.Rents + failed.Huge.Rents);

        refuse = false;
        foreach (int size in new[] { 100, 4096, 100_000, EightMegabytes })
        {
            using IMemoryOwner<byte> owner = pool.Rent(size);
            owner.Memory.Span.Fill(1);
        }

        Assert.Equal(0, pool.GetStatistics().BytesInUse);
    }

    [Fact]
    public void WhenTheOSRunsOutTheRegionCacheIsGivenBackBeforeGivingUp()
    {
        int mapsAllowed = int.MaxValue;
        var allocator = new ScriptedPageAllocator(PageAllocator.Portable) { RefuseMap = (_, _) => mapsAllowed-- <= 0, HugeTlbSupported = false };
        var time = new FakeTimeProvider();
        using var pool = new TieredMemoryPool(new TieredMemoryPoolOptions { PageAllocator = allocator, FallbackPageAllocator = null, EnableHugepages = false, TimeProvider = time });
        pool.Rent(EightMegabytes).Dispose();
        Assert.Equal(EightMegabytes, pool.GetStatistics().Huge.BytesRetained);

        // The next mapping fails once; the pool gives its cached 8 MB region up and the retry succeeds. The region
        // was returned a moment ago, so it is unmapped only once it has been returned for a full idle delay.
        mapsAllowed = 0;
        allocator.RefuseMap = (_, _) => mapsAllowed++ == 0;
        using IMemoryOwner<byte> owner = pool.Rent(2 * EightMegabytes);
        Assert.Equal(0, pool.GetStatistics().Huge.BytesRetained);
        Assert.Equal(EightMegabytes, pool.GetStatistics().BytesAwaitingRelease);
        Assert.Equal(0, allocator.Unmaps);
        for (int tick = 0; tick < 6; tick++)
        {
            time.Advance(TimeSpan.FromSeconds(2.5));
        }

        Assert.Equal(1, allocator.Unmaps);
        Assert.Equal(0, pool.GetStatistics().BytesAwaitingRelease);
    }
}
