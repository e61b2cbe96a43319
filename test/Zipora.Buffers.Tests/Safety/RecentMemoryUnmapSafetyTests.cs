using System;
using System.Buffers;
using Microsoft.Extensions.Time.Testing;

namespace Zipora.Buffers.Tests;

/// <summary>
/// The pool never unmaps memory returned less than one idle delay ago, whatever it is asked to do (a trim, its own
/// dispose): a stale Span still running somewhere writes to a mapped (maybe freshly zeroed) page instead of faulting.
/// Once the delay has passed the memory does go back to the OS, a disposed pool's too.
/// </summary>
/// <remarks>Reads the process's mappings and asserts ranges were unmapped, so it runs alone (no other test maps into the hole).</remarks>
[Collection(nameof(HugepageTests))]
public sealed class RecentMemoryUnmapSafetyTests
{
    /// <summary>How the pool comes to let go of a buffer its owner disposed properly.</summary>
    public enum LetGo
    {
        Trim,
        DisposeThePool,
        TrimThenDisposeThePool,
        ReturnAfterDisposingThePool,

        /// <summary>MaxRetainedBytes = 0: the idle releaser's next tick trims everything the pool holds idle.</summary>
        RetainedBytesCap,
    }

    public static TheoryData<int, OwnerMode, LetGo> TiersModesAndWaysToLetGo
    {
        get
        {
            var data = new TheoryData<int, OwnerMode, LetGo>();
            foreach (int size in SafetyCases.OneSizePerTier)
            {
                foreach (OwnerMode mode in SafetyCases.BothOwnerModes)
                {
                    foreach (LetGo letGo in Enum.GetValues<LetGo>())
                    {
                        data.Add(size, mode, letGo);
                    }
                }
            }

            return data;
        }
    }

    [Theory]
    [MemberData(nameof(TiersModesAndWaysToLetGo))]
    public void ReturnedMemoryStaysMappedUntilOneDelayHasPassed(int size, OwnerMode mode, LetGo letGo)
    {
        Skip.Unless(ProcessMappings.CanRead, "reads /proc/self/maps, which only Linux has");
        var time = new FakeTimeProvider();
        TieredMemoryPoolOptions options = SafetyCases.Options(mode, time);
        if (letGo == LetGo.RetainedBytesCap)
        {
            options.MaxRetainedBytes = 0;
        }

        using var pool = new TieredMemoryPool(options);
        IMemoryOwner<byte> owner = pool.Rent(size);
        owner.Memory.Span.Fill(0x11);
        OwnerRange block = SafetyCases.RangeOf(owner);

        switch (letGo)
        {
            case LetGo.Trim:
                owner.Dispose();
                pool.Trim();
                SafetyCases.AssertMappedAndWritable(block, "right after a trim, the block returned just before");
                break;
            case LetGo.DisposeThePool:
                owner.Dispose();
                pool.Dispose();
                break;
            case LetGo.TrimThenDisposeThePool:
                owner.Dispose();
                pool.Trim();
                SafetyCases.AssertMappedAndWritable(block, "right after a trim, the block returned just before");
                pool.Dispose();
                break;
            case LetGo.ReturnAfterDisposingThePool:
                pool.Dispose();
                SafetyCases.AssertMappedAndWritable(block, "a block still rented when its pool was disposed");
                owner.Dispose();
                break;
            case LetGo.RetainedBytesCap:
                owner.Dispose();
                SafetyCases.Advance(time, SafetyCases.IdleDelay / 4);
                break;
        }

        SafetyCases.AssertMappedAndWritable(block, $"right after {letGo}, the block returned just before");
        Assert.True(pool.GetStatistics().BytesAwaitingRelease > 0, $"after {letGo}: BytesAwaitingRelease is 0 while a returned block waits out its delay");

        SafetyCases.Advance(time, TimeSpan.FromSeconds(9));
        SafetyCases.AssertMappedAndWritable(block, $"9 s after {letGo}");
        Assert.True(pool.GetStatistics().BytesAwaitingRelease > 0, $"9 s after {letGo}: BytesAwaitingRelease is 0 while a returned block waits out its delay");

        // Past the delay plus a tick of the idle releaser (a quarter delay): back to the OS.
        SafetyCases.Advance(time, TimeSpan.FromSeconds(4));
        Assert.False(ProcessMappings.IsMapped(block.Start, block.Length), $"13 s after {letGo} the block is still mapped: {ProcessMappings.Describe(block.Start, block.Length)}");
        Assert.Equal(0, pool.GetStatistics().BytesAwaitingRelease);
        GC.KeepAlive(pool);
    }

    [Theory]
    [MemberData(nameof(SafetyCases.TiersInBothOwnerModes), MemberType = typeof(SafetyCases))]
    public void AReturnToADisposedPoolWhoseTimerHadNothingLeftStaysMappedForADelayThenIsUnmapped(int size, OwnerMode mode)
    {
        Skip.Unless(ProcessMappings.CanRead, "reads /proc/self/maps, which only Linux has");
        var time = new FakeTimeProvider();
        using TieredMemoryPool pool = SafetyCases.Pool(mode, time);
        IMemoryOwner<byte> owner = pool.Rent(size);
        OwnerRange block = SafetyCases.RangeOf(owner);

        // The disposed pool's timer finds nothing waiting (the owner is still out) and may stop ticking meanwhile.
        pool.Dispose();
        SafetyCases.Advance(time, SafetyCases.IdleDelay * 2);
        owner.Dispose();
        SafetyCases.AssertMappedAndWritable(block, "right after a late return to a disposed pool");
        Assert.True(pool.GetStatistics().BytesAwaitingRelease > 0, "a late return to a disposed pool is not counted as awaiting release");
        SafetyCases.Advance(time, TimeSpan.FromSeconds(9.9));
        SafetyCases.AssertMappedAndWritable(block, "9.9 s after a late return to a disposed pool");

        SafetyCases.Advance(time, TimeSpan.FromSeconds(13 - 9.9));
        Assert.False(ProcessMappings.IsMapped(block.Start, block.Length), $"13 s after a late return to a disposed pool the block is still mapped: {ProcessMappings.Describe(block.Start, block.Length)}");
        Assert.Equal(0, pool.GetStatistics().BytesAwaitingRelease);
    }

    [Theory]
    [InlineData(100_000, OwnerMode.Default)]
    [InlineData(100_000, OwnerMode.ReuseOwners)]
    [InlineData(3_000_000, OwnerMode.Default)]
    [InlineData(3_000_000, OwnerMode.ReuseOwners)]
    public void ABlockEvictedFromAFullRegionCacheStaysMappedUntilOneDelayHasPassed(int size, OwnerMode mode)
    {
        Skip.Unless(ProcessMappings.CanRead, "reads /proc/self/maps, which only Linux has");
        var time = new FakeTimeProvider();
        TieredMemoryPoolOptions options = SafetyCases.Options(mode, time);
        options.RegionCacheMaxBytes = 0;
        options.HugeRegionCacheMaxBytes = 0;
        using var pool = new TieredMemoryPool(options);
        IMemoryOwner<byte> owner = pool.Rent(size);
        OwnerRange block = SafetyCases.RangeOf(owner);

        // Nothing may be cached: the return evicts the region at once.
        owner.Dispose();
        Assert.Equal(0, pool.GetStatistics().BytesRetained);
        SafetyCases.AssertMappedAndWritable(block, "right after its return evicted it");
        SafetyCases.Advance(time, TimeSpan.FromSeconds(9.9));
        SafetyCases.AssertMappedAndWritable(block, "9.9 s after its return evicted it");

        SafetyCases.Advance(time, TimeSpan.FromSeconds(13 - 9.9));
        Assert.False(ProcessMappings.IsMapped(block.Start, block.Length), $"13 s after it was evicted the block is still mapped: {ProcessMappings.Describe(block.Start, block.Length)}");
        Assert.Equal(0, pool.GetStatistics().BytesAwaitingRelease);
    }

    [Theory]
    [MemberData(nameof(SafetyCases.TiersInBothOwnerModes), MemberType = typeof(SafetyCases))]
    public void MemoryReturnedJustBeforeATickStaysMappedForAFullDelay(int size, OwnerMode mode)
    {
        Skip.Unless(ProcessMappings.CanRead, "reads /proc/self/maps, which only Linux has");
        var time = new FakeTimeProvider();
        using TieredMemoryPool pool = SafetyCases.Pool(mode, time);
        IMemoryOwner<byte> owner = pool.Rent(size);
        OwnerRange block = SafetyCases.RangeOf(owner);

        // The idle releaser ticks every quarter delay (2.5 s); return the block just before the first tick.
        SafetyCases.Advance(time, TimeSpan.FromSeconds(2.4));
        owner.Dispose();
        SafetyCases.Advance(time, TimeSpan.FromSeconds(9.9));
        SafetyCases.AssertMappedAndWritable(block, "9.9 s after the block was returned");

        SafetyCases.Advance(time, TimeSpan.FromSeconds(13 - 9.9));
        Assert.False(ProcessMappings.IsMapped(block.Start, block.Length), $"13 s after it was returned to an idle pool the block is still mapped: {ProcessMappings.Describe(block.Start, block.Length)}");
    }
}
