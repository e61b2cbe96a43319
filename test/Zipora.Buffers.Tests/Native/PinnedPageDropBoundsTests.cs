using System;
using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
using Zipora.Buffers.Native;

namespace Zipora.Buffers.Tests;

/// <summary>
/// The pages a let-go pinned array drops are exactly the whole pages of its elements past their first 32 bytes (where the
/// GC writes its free object's links): the page with the array's header and those bytes, and the last partial page with
/// the next object's header, keep their bytes, whatever the array's length and where its data falls in a page; arrays
/// too short to hold a whole such page drop nothing. The pinned arrays allocated on either side keep theirs.
/// </summary>
public sealed class PinnedPageDropBoundsTests
{
    private const byte Fill = 0xAB;
    private const byte Neighbour = 0x3C;

    public static TheoryData<int, int> Lengths()
    {
        int page = Environment.SystemPageSize;
        var data = new TheoryData<int, int>();
        foreach (int length in new[] { 1, 31, 32, 33, page - 48, page - 17, page - 16, page, page + 1, 2 * page - 1, 2 * page, 2 * page + 1, 3 * page, (1024 * 1024) + 3 })
        {
            data.Add(length, 1);
            data.Add(length, page);
        }

        return data;
    }

    [Theory]
    [MemberData(nameof(Lengths))]
    public unsafe void AnUnmappedPinnedArrayDropsOnlyTheWholePagesPastItsFirstBytesAndKeepsItsNeighbours(int length, int alignment)
    {
        Skip.When(!OperatingSystem.IsLinux(), "pages are dropped on Linux only");
        var allocator = new PinnedArrayPageAllocator();
        nuint page = (nuint)Environment.SystemPageSize;
        byte[] before = GC.AllocateUninitializedArray<byte>(length, pinned: true);
        Assert.True(allocator.TryMap((nuint)length, (nuint)alignment, PageKind.Normal, out nint address));
        byte[] after = GC.AllocateUninitializedArray<byte>(length, pinned: true);
        Assert.True(allocator.TryGetBackingArray(address, out byte[]? array, out _));
        before.AsSpan().Fill(Neighbour);
        after.AsSpan().Fill(Neighbour);
        Assert.NotNull(array);
        array.AsSpan().Fill(Fill);

        Assert.True(allocator.Unmap(address, (nuint)length));

        // Where the drop must start and end in the array, by the rule the GC's writes call for.
        nuint data = (nuint)Unsafe.AsPointer(ref MemoryMarshal.GetArrayDataReference(array));
        nuint first = (data + 32 + page - 1) & ~(page - 1);
        nuint end = (data + (nuint)array.Length) & ~(page - 1);
        int from = end > first ? (int)(first - data) : array.Length;
        int to = end > first ? (int)(end - data) : array.Length;
        Assert.Equal(to - from, allocator.DroppedBytes);
        Assert.True(array.AsSpan(0, from).IndexOfAnyExcept(Fill) < 0, $"the bytes before the first whole page past the first 32 ({from}) changed");
        Assert.True(array.AsSpan(from, to - from).IndexOfAnyExcept((byte)0) < 0, "a dropped page did not read back as zeros");
        Assert.True(array.AsSpan(to).IndexOfAnyExcept(Fill) < 0, $"the bytes of the last partial page (from {to}) changed");
        Assert.True(before.AsSpan().IndexOfAnyExcept(Neighbour) < 0, "the pinned array allocated before it lost its bytes");
        Assert.True(after.AsSpan().IndexOfAnyExcept(Neighbour) < 0, "the pinned array allocated after it lost its bytes");

        // Its header was kept: the array is whole to the GC, and written through, its dropped pages fault fresh pages in.
        array.AsSpan().Fill(Fill);
        GC.Collect(GC.MaxGeneration, GCCollectionMode.Forced, blocking: true);
        Assert.True(array.AsSpan().IndexOfAnyExcept(Fill) < 0);
        GC.KeepAlive(array);
    }
}
