using System;
using System.Buffers;
using System.Runtime.CompilerServices;
using Microsoft.Extensions.Time.Testing;

namespace Zipora.Buffers.Tests;

/// <summary>
/// Under memory pressure a pool lets go at once of the pinned arrays a trim let go of, instead of keeping them for the
/// idle delay against stale writes: a stale <c>Span</c> over a pinned array keeps that array alive (the GC follows it),
/// so it writes into memory nobody else is given. Native memory that could not drop its pages has no such guard and
/// keeps waiting out the delay: unmapped under a stale <c>Span</c>, it would fault.
/// </summary>
public sealed class PinnedArrayPressureReleaseTests
{
    private const int RegionSize = 100_000;
    private const long RegionBytes = 114_688;

    [Fact]
    public void NativeMemoryThatCouldNotDropItsPagesStaysMappedThroughATrimUnderPressure()
    {
        var allocator = new ScriptedPageAllocator { RefuseAdvice = true };
        using var pool = new TieredMemoryPool(new TieredMemoryPoolOptions { PageAllocator = allocator, TimeProvider = new FakeTimeProvider() });
        IMemoryOwner<byte> owner = pool.Rent(RegionSize);
        nint region = OwnerAddress.Of(owner);
        owner.Dispose();

        // Let go of (its pages kept: the advice was refused, so it counts and waits), then memory runs short.
        pool.Trim();
        ((IReclaimablePool)pool).TrimUnderPressure();

        Assert.Equal(RegionBytes, pool.GetStatistics().BytesAwaitingRelease);
        Assert.Equal(0, allocator.Unmaps);
        if (ProcessMappings.CanRead)
        {
            Assert.True(ProcessMappings.IsMapped(region, RegionSize), ProcessMappings.Describe(region, RegionSize));
        }
    }

    [Fact]
    public void APinnedArrayLetGoOfUnderPressureLivesOnUnderAStaleSpanAndIsCollectedAfterIt()
    {
        using var pool = new TieredMemoryPool(new TieredMemoryPoolOptions { UsePinnedArrays = true, TimeProvider = new FakeTimeProvider() });
        WeakReference array = WriteThroughAStaleSpanAcrossAPressureRelease(pool);

        // The span is gone: nothing holds the array any more, so the release did give it up.
        SafetyCases.CollectEverything();
        Assert.False(array.IsAlive);
    }

    [Fact]
    public void PinnedArraysAnEarlierTrimLetGoOfGoUnderPressureThoughThereIsNothingLeftToTrim()
    {
        using var pool = new TieredMemoryPool(new TieredMemoryPoolOptions { UsePinnedArrays = true, TimeProvider = new FakeTimeProvider() });
        pool.Rent(RegionSize).Dispose();
        pool.Trim();
        Assert.Equal(0, pool.GetStatistics().BytesRetained);
        Assert.True(pool.GetStatistics().BytesAwaitingRelease > 0);

        // The pressure trim rests (nothing retained), but what waits still goes: the rest is for the trim's walk.
        ((IReclaimablePool)pool).TrimUnderPressure();
        Assert.Equal(0, pool.GetStatistics().BytesAwaitingRelease);
    }

    [MethodImpl(MethodImplOptions.NoInlining)]
    private static WeakReference WriteThroughAStaleSpanAcrossAPressureRelease(TieredMemoryPool pool)
    {
        IMemoryOwner<byte> owner = pool.Rent(RegionSize);
        WeakReference array = PinnedArrayOf.Weakly(owner);
        Span<byte> stale = owner.Memory.Span;
        owner.Dispose();
        owner = null!;

        // Cached, then trimmed and let go of at once: nothing waits for the delay any more.
        ((IReclaimablePool)pool).TrimUnderPressure();
        Assert.Equal(0, pool.GetStatistics().BytesAwaitingRelease);

        // The stale span is the array's only reference left, and the GC keeps the array for it.
        GC.Collect(GC.MaxGeneration, GCCollectionMode.Aggressive, blocking: true, compacting: true);
        Assert.True(array.IsAlive);
        stale.Fill(0x5A);
        Assert.True(stale.IndexOfAnyExcept((byte)0x5A) < 0);
        return array;
    }
}
