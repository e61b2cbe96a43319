using System;
using Zipora.Buffers.Native;

namespace Zipora.Buffers.Tests;

/// <summary>
/// A pinned array the pool lets go of gives its pages back to the OS at the unmap, not when the GC decommits its
/// region: the pinned heap is never compacted, so one live object left in a region (a block still rented from another
/// array, a runtime statics array) kept the whole region committed, and after Kestrel's burst 170-220 MB of freed
/// pinned heap stayed charged to the container while native memory grew into the OOM killer
/// (KestrelBurstContainerTests' held and capped modes, killed in 4 of 5 runs on the branch that made the burst genuine).
/// </summary>
public sealed class PinnedArraysLetGoOfDropTheirPagesTests
{
    private const int Length = 8 * 1024 * 1024;

    [Fact]
    public void AnUnmappedArraysWholePagesAreNoLongerResidentThoughTheArrayLives()
    {
        Skip.When(!OperatingSystem.IsLinux(), "pages are dropped on Linux only");
        var allocator = new PinnedArrayPageAllocator();
        int page = Environment.SystemPageSize;
        Assert.True(allocator.TryMap(Length, (nuint)page, PageKind.Normal, out nint address));
        Assert.True(allocator.TryGetBackingArray(address, out byte[]? array, out int offset));
        array!.AsSpan(offset, Length).Fill(0x5A);
        Assert.Equal(Length / page, ResidentPages(address, Length));

        Assert.True(allocator.Unmap(address, Length));

        // The array is still alive here (as under a stale span), yet only the pages at either end, which hold the
        // array's and the next object's headers, may stay.
        int resident = ResidentPages(address, Length);
        Assert.True(resident <= 2, $"{resident} of {Length / page} pages still resident after the unmap");
        Assert.True(allocator.DroppedBytes >= Length - (2L * page), $"{allocator.DroppedBytes} bytes dropped of {Length}");

        // A stale span reads zeros where the bytes were dropped, and what it writes holds.
        Span<byte> stale = array.AsSpan(offset, Length);
        Assert.Equal(0, stale[Length / 2]);
        stale[Length / 2] = 7;
        Assert.Equal(7, stale[Length / 2]);
        GC.KeepAlive(array);
    }

    private static int ResidentPages(nint address, int length)
    {
        int page = Environment.SystemPageSize;
        int resident = 0;
        for (int at = 0; at < length; at += page)
        {
            Assert.Equal(0, Libc.Mincore(address + at, (nuint)page, out byte residency));
            resident += residency & 1;
        }

        return resident;
    }
}
