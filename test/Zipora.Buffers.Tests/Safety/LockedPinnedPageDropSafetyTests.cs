using System;
using System.Buffers;
using System.Collections.Generic;
using Microsoft.Extensions.Time.Testing;
using Zipora.Buffers.Native;

namespace Zipora.Buffers.Tests;

/// <summary>
/// Under <c>mlockall</c> the kernel refuses MADV_DONTNEED (EINVAL) on the pages of a pinned array let go of: the unmap
/// still lets go of the array (it is the GC's, counted as unmapped for the collection to come), counts none of its bytes
/// as dropped, and the array keeps its bytes under a stale span; a pinned pool let go of at every trim, pressure release
/// and dispose keeps its figures balanced.
/// </summary>
public sealed class LockedPinnedPageDropSafetyTests
{
    private const int Length = 4 * 1024 * 1024;

    [Fact]
    public void AnUnmappedPinnedArrayWhoseDropTheKernelRefusesKeepsItsBytesAndCountsNoneDropped()
    {
        if (IsolatedProcess.RunsElsewhere(typeof(LockedPinnedPageDropSafetyTests), nameof(AnUnmappedPinnedArrayWhoseDropTheKernelRefusesKeepsItsBytesAndCountsNoneDropped)))
        {
            return;
        }

        LockedMemoryAdviceSafetyTests.LockOrSkip();
        var allocator = new PinnedArrayPageAllocator();
        Assert.True(allocator.TryMap(Length, (nuint)Environment.SystemPageSize, PageKind.Normal, out nint address));
        Assert.True(allocator.TryGetBackingArray(address, out byte[]? array, out int offset));
        Assert.NotNull(array);
        array.AsSpan(offset, Length).Fill(0x5A);

        Assert.True(allocator.Unmap(address, Length));

        Assert.Equal(0, allocator.DroppedBytes);
        Assert.Equal(array.Length, allocator.UnmappedBytes);
        Assert.False(allocator.TryGetBackingArray(address, out _, out _));
        Assert.True(array.AsSpan(offset, Length).IndexOfAnyExcept((byte)0x5A) < 0, "a refused drop lost the array's bytes");
        GC.KeepAlive(array);
        ProcessLimits.UnlockAll();
    }

    [Fact]
    public void APinnedPoolUnderMlockallLetsGoOfItsArraysWithItsFiguresBalanced()
    {
        if (IsolatedProcess.RunsElsewhere(typeof(LockedPinnedPageDropSafetyTests), nameof(APinnedPoolUnderMlockallLetsGoOfItsArraysWithItsFiguresBalanced)))
        {
            return;
        }

        LockedMemoryAdviceSafetyTests.LockOrSkip();
        var pinned = (PinnedArrayPageAllocator)PageAllocator.PinnedArrays;
        long droppedBefore = pinned.DroppedBytes;
        var time = new FakeTimeProvider();
        var pool = new TieredMemoryPool(new TieredMemoryPoolOptions { UsePinnedArrays = true, TimeProvider = time, IdleReleaseDelay = SafetyCases.IdleDelay });
        IMemoryOwner<byte> kept = pool.Rent(100_000);
        kept.Memory.Span.Fill(0x77);
        for (int round = 0; round < 3; round++)
        {
            var owners = new List<IMemoryOwner<byte>>();
            foreach (int size in SafetyCases.Sizes)
            {
                for (int i = 0; i < 8; i++)
                {
                    IMemoryOwner<byte> owner = pool.Rent(size);
                    owner.Memory.Span.Fill((byte)i);
                    owners.Add(owner);
                }
            }

            owners.ForEach(owner => owner.Dispose());
            pool.Trim();
            ((IReclaimablePool)pool).TrimUnderPressure();
            SafetyCases.Advance(time, SafetyCases.IdleDelay + (SafetyCases.IdleDelay / 4));
            TieredMemoryPoolStatistics statistics = pool.GetStatistics();
            Assert.Null(SafetyCases.NegativeFigures(statistics));
            Assert.Equal(0, statistics.BytesAwaitingRelease);
            Assert.Equal(kept.Memory.Length, statistics.BytesInUse);
        }

        Assert.True(kept.Memory.Span.IndexOfAnyExcept((byte)0x77) < 0, "the buffer held throughout lost its bytes");
        Assert.Equal(droppedBefore, pinned.DroppedBytes);
        kept.Dispose();
        pool.Dispose();
        Assert.Equal(0, pool.GetStatistics().BytesAwaitingRelease);
        ProcessLimits.UnlockAll();
    }
}
