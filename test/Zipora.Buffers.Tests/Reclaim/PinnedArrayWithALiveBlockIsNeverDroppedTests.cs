using System;
using System.Buffers;
using System.Collections.Generic;
using System.Runtime.InteropServices;
using Microsoft.Extensions.Time.Testing;
using Zipora.Buffers.Native;

namespace Zipora.Buffers.Tests;

/// <summary>
/// Since a pinned array let go of has its pages dropped at once, one let go of while a block in it is still rented
/// would lose that block's bytes (before, the GC merely kept the array alive under it). In every tier, a buffer kept
/// rented while every other block of its array and of its size is returned keeps its array mapped and its bytes through
/// every way the pool lets go of arrays: trims, idle ticks past the delay, a pressure release, a rent at the cap that
/// lets go of waiting arrays, the pool's dispose; returned after the dispose, its array is let go of and dropped then.
/// </summary>
public sealed class PinnedArrayWithALiveBlockIsNeverDroppedTests
{
    private const int Cap = 24 * 1024 * 1024;

    public static TheoryData<int> Sizes => [.. SafetyCases.Sizes];

    [Theory]
    [MemberData(nameof(Sizes))]
    public void ARentedBlockKeepsItsPinnedArrayAndItsBytesThroughEveryLetGo(int size)
    {
        var pinned = (PinnedArrayPageAllocator)PageAllocator.PinnedArrays;
        var time = new FakeTimeProvider();
        var pool = new TieredMemoryPool(new TieredMemoryPoolOptions { UsePinnedArrays = true, TimeProvider = time, IdleReleaseDelay = SafetyCases.IdleDelay, MaxBytesInUse = Cap });

        // Neighbours first and after, so the kept block shares its array (a slab's) with returned ones; well within the cap.
        int count = Math.Clamp(Cap / 8 / size, 1, 8);
        List<IMemoryOwner<byte>> neighbours = RentFilled(pool, size, count, 0x11);
        IMemoryOwner<byte> kept = pool.Rent(size);
        kept.Memory.Span.Fill(0x77);
        neighbours.AddRange(RentFilled(pool, size, count, 0x22));
        Assert.True(MemoryMarshal.TryGetArray<byte>(kept.Memory, out ArraySegment<byte> segment));
        nint address = SafetyCases.RangeOf(kept).Start;
        neighbours.ForEach(owner => owner.Dispose());

        AssertKept(pinned, kept, segment, address, "after its neighbours were returned");
        pool.Trim();
        AssertKept(pinned, kept, segment, address, "after a trim");
        SafetyCases.Advance(time, 3 * SafetyCases.IdleDelay);
        AssertKept(pinned, kept, segment, address, "after idle ticks past the delay");
        ((IReclaimablePool)pool).TrimUnderPressure();
        AssertKept(pinned, kept, segment, address, "after a pressure release");

        // Rents of other lengths at the cap, returned within the delay: each lets go of the arrays waiting.
        long unmapCallsBefore = pool.GetStatistics().MunmapCalls;
        foreach (int other in new[] { 3 * 1024 * 1024, 5 * 1024 * 1024, 7 * 1024 * 1024, 2 * 1024 * 1024 })
        {
            List<IMemoryOwner<byte>> filling = RentFilled(pool, other, (Cap / 2) / other, 0x33);
            filling.ForEach(owner => owner.Dispose());
            pool.Trim();
        }

        Assert.True(pool.GetStatistics().MunmapCalls > unmapCallsBefore, "no rent at the cap let go of a waiting array");
        AssertKept(pinned, kept, segment, address, "after rents at the cap let go of waiting arrays");
        pool.Dispose();
        AssertKept(pinned, kept, segment, address, "after the pool's dispose");

        long droppedBefore = pinned.DroppedBytes;
        kept.Dispose();
        Assert.False(pinned.TryGetBackingArray(address, out _, out _), "returned to the disposed pool, its array was kept");
        if (OperatingSystem.IsLinux() && segment.Array!.Length >= 4 * Environment.SystemPageSize)
        {
            Assert.True(pinned.DroppedBytes > droppedBefore, "the array let go of at the late return dropped no pages");
        }
    }

    private static List<IMemoryOwner<byte>> RentFilled(TieredMemoryPool pool, int size, int count, byte fill)
    {
        var owners = new List<IMemoryOwner<byte>>();
        for (int i = 0; i < count; i++)
        {
            IMemoryOwner<byte> owner = pool.Rent(size);
            owner.Memory.Span.Fill(fill);
            owners.Add(owner);
        }

        return owners;
    }

    private static void AssertKept(PinnedArrayPageAllocator pinned, IMemoryOwner<byte> kept, ArraySegment<byte> segment, nint address, string when)
    {
        Assert.True(pinned.TryGetBackingArray(address, out byte[]? array, out int offset), $"{when}: the array of a rented block was let go of");
        Assert.Same(segment.Array, array);
        Assert.Equal(segment.Offset, offset);
        int wrong = kept.Memory.Span.IndexOfAnyExcept((byte)0x77);
        Assert.True(wrong < 0, $"{when}: the rented block lost its bytes at {wrong}");
    }
}
