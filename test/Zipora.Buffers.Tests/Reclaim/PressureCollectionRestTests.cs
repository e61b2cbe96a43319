using System;
using System.Buffers;
using System.Collections.Generic;
using Microsoft.Extensions.Time.Testing;

namespace Zipora.Buffers.Tests;

/// <summary>
/// A trim under memory pressure asks for the aggressive collection that gives pinned arrays' pages back to the OS, and
/// with the short rest of <see cref="PinnedMemoryCollector.MinimumPressureInterval"/>, not the half minute a quiet tick
/// waits after the last collection: a collection a quiet tick asked for after the first part of a burst was let go of
/// must not keep the bulk, let go of under pressure seconds later, in the process while it runs into its limit.
/// </summary>
[Collection(nameof(HugepageTests))]
public sealed class PressureCollectionRestTests : IDisposable
{
    private const int Megabyte = 1024 * 1024;

    private readonly TimeSpan _interval = PinnedMemoryCollector.MinimumInterval;
    private readonly TimeSpan _pressureInterval = PinnedMemoryCollector.MinimumPressureInterval;

    public void Dispose()
    {
        PinnedMemoryCollector.MinimumInterval = _interval;
        PinnedMemoryCollector.MinimumPressureInterval = _pressureInterval;
    }

    [Fact]
    public void ATrimUnderPressureCollectsThePinnedArraysItLetGoOfThoughAQuietTickCollectedJustBefore()
    {
        // An allocator of its own: the process-wide one counts what every other pinned pool lets go of.
        var allocator = new Native.PinnedArrayPageAllocator();
        using var pool = new TieredMemoryPool(new TieredMemoryPoolOptions { PageAllocator = allocator, TimeProvider = new FakeTimeProvider() });

        // A collection now, as a quiet tick's after the first part of a burst; the tick's rest is then far from over.
        PinnedMemoryCollector.MinimumInterval = TimeSpan.Zero;
        Assert.True(PinnedMemoryCollector.AfterDrop(PinnedMemoryCollector.MinimumBytes));
        PinnedMemoryCollector.MinimumInterval = TimeSpan.FromHours(1);
        PinnedMemoryCollector.MinimumPressureInterval = TimeSpan.Zero;

        var owners = new List<IMemoryOwner<byte>>();
        for (int i = 0; i < 12; i++)
        {
            owners.Add(pool.Rent(Megabyte));
        }

        owners.ForEach(owner => owner.Dispose());
        long collections = PinnedMemoryCollector.Collections;

        // The bulk is let go of under pressure: unmapped at once, and collected though the tick's rest is not over.
        ((IReclaimablePool)pool).TrimUnderPressure();

        Assert.Equal(0, pool.GetStatistics().BytesAwaitingRelease);
        Assert.Equal(0, allocator.UnmappedBytes);
        Assert.True(PinnedMemoryCollector.Collections > collections);
    }

    [Fact]
    public void ATrimUnderPressureRestsAfterItsOwnCollectionAndSoDoesAQuietTick()
    {
        var allocator = new Native.PinnedArrayPageAllocator();
        using var pool = new TieredMemoryPool(new TieredMemoryPoolOptions { PageAllocator = allocator, TimeProvider = new FakeTimeProvider() });
        PinnedMemoryCollector.MinimumInterval = TimeSpan.FromHours(1);
        PinnedMemoryCollector.MinimumPressureInterval = TimeSpan.Zero;
        RentAndReturn(pool, 12);
        ((IReclaimablePool)pool).TrimUnderPressure();
        Assert.Equal(0, allocator.UnmappedBytes);

        // Short again at once: what this trim lets go of leaves the pool, but the collection waits out the rest, and so
        // does a quiet tick's, counted from the pressure's collection.
        PinnedMemoryCollector.MinimumPressureInterval = TimeSpan.FromHours(1);
        RentAndReturn(pool, 12);
        ((IReclaimablePool)pool).TrimUnderPressure();
        Assert.Equal(0, pool.GetStatistics().BytesAwaitingRelease);
        Assert.InRange(allocator.UnmappedBytes, 12L * Megabyte, long.MaxValue);
        Assert.False(PinnedMemoryCollector.AfterRelease(allocator));
        Assert.False(PinnedMemoryCollector.AfterPressureRelease(allocator));
    }

    private static void RentAndReturn(TieredMemoryPool pool, int megabytes)
    {
        var owners = new List<IMemoryOwner<byte>>();
        for (int i = 0; i < megabytes; i++)
        {
            owners.Add(pool.Rent(Megabyte));
        }

        owners.ForEach(owner => owner.Dispose());
    }
}
