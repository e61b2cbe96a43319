using System;
using System.Buffers;
using System.Collections.Generic;
using Microsoft.Extensions.Time.Testing;

namespace Zipora.Buffers.Tests;

/// <summary>
/// The global cap on idle memory settles: a page is dropped once and not again until a block on it is used, what a
/// live neighbour pins is fragmentation rather than retained memory, and over the cap the pool trims once and then
/// rests until it is used again. Counted on a fake clock, one tick at a time, through the page allocator's calls.
/// </summary>
public sealed class RetainedCapTests
{
    private const int Slabs = 32;
    private const long Cap = 64 * 1024;

    public static TheoryData<int, int> Layouts => new()
    {
        { 512, 64 * 1024 },
        { 8192, 128 * 1024 },
    };

    [Theory]
    [MemberData(nameof(Layouts))]
    public void OverTheCapAFragmentedPoolDropsEachFreePageOnceAndThenDoesNothingAtIdleTicks(int blockSize, int slabBytes)
    {
        var time = new FakeTimeProvider();
        var allocator = new ScriptedPageAllocator();
        using TieredMemoryPool pool = Pool(time, allocator);
        List<IMemoryOwner<byte>> live = FragmentedLayout.Rent(pool, blockSize, slabBytes / blockSize, Slabs, out _);

        // Past the delay, so the tier's own idle trim has run as well as the cap's.
        SafetyCases.Advance(time, SafetyCases.IdleDelay * 2);
        TierStatistics settled = FragmentedLayout.TierOf(pool.GetStatistics(), blockSize);
        int advised = allocator.Advice.Count;
        FragmentedLayout.AssertAddsUp(settled, blockSize, slabBytes, Slabs);

        SafetyCases.Advance(time, SafetyCases.IdleDelay * 10);
        TierStatistics idle = FragmentedLayout.TierOf(pool.GetStatistics(), blockSize);
        Assert.Equal(advised, allocator.Advice.Count);
        Assert.Equal(settled.BytesEvicted, idle.BytesEvicted);
        FragmentedLayout.AssertAddsUp(idle, blockSize, slabBytes, Slabs);
        live.ForEach(owner => owner.Dispose());
    }

    [Fact]
    public void WhenTheOsRefusesToDropPagesTheCapTrimsOnceAndRestsUntilThePoolIsUsedAgain()
    {
        var time = new FakeTimeProvider();
        var allocator = new ScriptedPageAllocator { RefuseAdvice = true };
        using TieredMemoryPool pool = Pool(time, allocator);
        List<IMemoryOwner<byte>> live = FragmentedLayout.Rent(pool, 8192, 16, Slabs, out _);

        SafetyCases.Advance(time, SafetyCases.IdleDelay * 2);
        int advised = allocator.Advice.Count;
        TieredMemoryPoolStatistics settled = pool.GetStatistics();
        Assert.True(advised > 0, "the pool never tried to drop a page");
        Assert.True(settled.BytesRetained > Cap, $"nothing could be dropped, so the pool stays over its cap\n{settled}");
        Assert.Equal(0, settled.Medium.BytesEvicted);

        SafetyCases.Advance(time, SafetyCases.IdleDelay * 10);
        Assert.Equal(advised, allocator.Advice.Count);

        // Used again: the next tick tries once more (and the tier's own idle release once the delay has passed), then
        // the pool rests again.
        pool.Rent(8192).Dispose();
        SafetyCases.Advance(time, SafetyCases.IdleDelay / 4);
        Assert.True(allocator.Advice.Count > advised, "a pool used again over its cap should try again at the next tick");
        SafetyCases.Advance(time, SafetyCases.IdleDelay * 2);
        int retried = allocator.Advice.Count;
        SafetyCases.Advance(time, SafetyCases.IdleDelay * 10);
        Assert.Equal(retried, allocator.Advice.Count);
        live.ForEach(owner => owner.Dispose());
    }

    [Theory]
    [MemberData(nameof(Layouts))]
    public void ABlockUsedAgainIsDroppedAgainOnceAndLiveNeighboursKeepTheirBytes(int blockSize, int slabBytes)
    {
        var allocator = new ScriptedPageAllocator();
        using var pool = new TieredMemoryPool(new TieredMemoryPoolOptions { PageAllocator = allocator, IdleReleaseDelay = System.Threading.Timeout.InfiniteTimeSpan });
        int blocksPerSlab = slabBytes / blockSize;
        List<IMemoryOwner<byte>> live = FragmentedLayout.Rent(pool, blockSize, blocksPerSlab, Slabs, out _);
        long freeBytes = (long)Slabs * (blocksPerSlab - 1) * blockSize;
        long droppable = freeBytes - (Slabs * FragmentedLayout.PinnedBesideEachLiveBlock(blockSize));

        pool.Trim();
        TierStatistics first = FragmentedLayout.TierOf(pool.GetStatistics(), blockSize);
        Assert.Equal(droppable, first.BytesEvicted);
        FragmentedLayout.AssertAddsUp(first, blockSize, slabBytes, Slabs);

        // Nothing was used since: a second trim drops nothing again and counts nothing again.
        int advised = allocator.Advice.Count;
        pool.Trim();
        Assert.Equal(advised, allocator.Advice.Count);
        Assert.Equal(droppable, FragmentedLayout.TierOf(pool.GetStatistics(), blockSize).BytesEvicted);

        // Every free block rented, written and returned: all of it is committed and retained again, dropped once more
        // by the next trim, and counted once more.
        var again = new List<IMemoryOwner<byte>>();
        for (int i = 0; i < Slabs * (blocksPerSlab - 1); i++)
        {
            IMemoryOwner<byte> owner = pool.Rent(blockSize);
            owner.Memory.Span.Fill(0xEE);
            again.Add(owner);
        }

        again.ForEach(owner => owner.Dispose());
        TierStatistics reused = FragmentedLayout.TierOf(pool.GetStatistics(), blockSize);
        Assert.Equal(freeBytes, reused.BytesRetained);
        Assert.Equal(0, reused.BytesFragmented);

        pool.Trim();
        TierStatistics second = FragmentedLayout.TierOf(pool.GetStatistics(), blockSize);
        Assert.Equal(2 * droppable, second.BytesEvicted);
        Assert.Equal(0, second.BytesRetained);
        Assert.Equal(Slabs * FragmentedLayout.PinnedBesideEachLiveBlock(blockSize), second.BytesFragmented);
        Assert.All(live, owner => Assert.True(owner.Memory.Span.IndexOfAnyExcept((byte)0x4C) < 0, "a live block lost its contents to a trim"));
        live.ForEach(owner => owner.Dispose());
    }

    private static TieredMemoryPool Pool(FakeTimeProvider time, ScriptedPageAllocator allocator) => new(new TieredMemoryPoolOptions
    {
        PageAllocator = allocator,
        TimeProvider = time,
        IdleReleaseDelay = SafetyCases.IdleDelay,
        MaxRetainedBytes = Cap,
        EnableHugepages = false,
    });

    [Fact]
    public void IdleMemoryExactlyAtTheCapIsKept()
    {
        const int LargeSize = 100_000;
        long region;
        using (var measuring = new TieredMemoryPool(new TieredMemoryPoolOptions { TimeProvider = new FakeTimeProvider() }))
        {
            measuring.Rent(LargeSize).Dispose();
            region = measuring.GetStatistics().BytesRetained;
        }

        var time = new FakeTimeProvider();
        using var pool = new TieredMemoryPool(new TieredMemoryPoolOptions { TimeProvider = time, IdleReleaseDelay = SafetyCases.IdleDelay, MaxRetainedBytes = region });
        pool.Rent(LargeSize).Dispose();
        SafetyCases.Advance(time, SafetyCases.IdleDelay / 4);

        TieredMemoryPoolStatistics statistics = pool.GetStatistics();
        Assert.True(
            statistics.BytesRetained == region && statistics.BytesAwaitingRelease == 0,
            $"{statistics.BytesRetained} bytes retained and {statistics.BytesAwaitingRelease} let go of at a tick, with {region} idle and MaxRetainedBytes = {region}");
    }
}
