using System;
using System.Buffers;
using System.Collections.Generic;
using Microsoft.Extensions.Time.Testing;
using Zipora.Buffers.Native;

namespace Zipora.Buffers.Tests;

/// <summary>
/// A stale <c>Span</c> over a buffer whose pinned array the pool let go of, its pages dropped: it reads the old bytes or
/// zeros, never another renter's; its writes stick; and as long as it lives, none of the pool's later buffers (of its size,
/// rented many times over after collections) lies in its memory, since the span keeps the array alive.
/// </summary>
public sealed class StaleSpanOverADroppedPinnedArrayTests
{
    public static TheoryData<int> Sizes => [.. SafetyCases.Sizes];

    [Theory]
    [MemberData(nameof(Sizes))]
    public void AStaleSpanOverADroppedArrayIsNeverSharedWithALaterRenter(int size)
    {
        var pinned = (PinnedArrayPageAllocator)PageAllocator.PinnedArrays;
        using var pool = new TieredMemoryPool(new TieredMemoryPoolOptions { UsePinnedArrays = true, TimeProvider = new FakeTimeProvider() });
        IMemoryOwner<byte> owner = pool.Rent(size);
        owner.Memory.Span.Fill(0x11);
        OwnerRange staleRange = SafetyCases.RangeOf(owner);
        WeakReference array = PinnedArrayOf.Weakly(owner);
        Span<byte> stale = owner.Memory.Span;
        owner.Dispose();

        // Let go of at once, its whole pages dropped; collected as garbage but for the span.
        ((IReclaimablePool)pool).TrimUnderPressure();
        Assert.Equal(0, pool.GetStatistics().BytesAwaitingRelease);
        Assert.False(pinned.TryGetBackingArray(staleRange.Start, out _, out _), "the buffer's array was not let go of");
        GC.Collect(GC.MaxGeneration, GCCollectionMode.Aggressive, blocking: true, compacting: true);
        Assert.True(stale.IndexOfAnyExcept((byte)0x11, (byte)0) < 0, "a stale span over a let-go array read bytes that were neither its own nor zeros");

        var later = new List<IMemoryOwner<byte>>();
        for (int round = 0; round < 4; round++)
        {
            for (int i = 0; i < Math.Clamp((64 * 1024 * 1024) / size, 2, 64); i++)
            {
                IMemoryOwner<byte> renter = pool.Rent(size);
                renter.Memory.Span.Fill(0x99);
                later.Add(renter);
            }

            stale.Fill(0x5A);
            foreach (IMemoryOwner<byte> renter in later)
            {
                OwnerRange range = SafetyCases.RangeOf(renter);
                Assert.False(range.Overlaps(staleRange), $"a later renter {range} was handed the stale span's memory {staleRange}");
                Assert.True(renter.Memory.Span.IndexOfAnyExcept((byte)0x99) < 0, "a later renter saw the stale span's writes");
            }

            Assert.True(stale.IndexOfAnyExcept((byte)0x5A) < 0, "the stale span's writes did not stick");
            Assert.True(array.IsAlive, "the array under a live stale span was collected");
            later.ForEach(renter => renter.Dispose());
            later.Clear();
            ((IReclaimablePool)pool).TrimUnderPressure();
            GC.Collect(GC.MaxGeneration, GCCollectionMode.Aggressive, blocking: true, compacting: true);
        }
    }
}
