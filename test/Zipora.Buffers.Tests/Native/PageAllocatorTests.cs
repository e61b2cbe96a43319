using System;
using Zipora.Buffers.Native;

namespace Zipora.Buffers.Tests;

public sealed unsafe class PageAllocatorTests
{
    public static TheoryData<string> Allocators => new() { "default", "portable" };

    [Theory]
    [MemberData(nameof(Allocators))]
    public void MapsAlignedWritableMemoryAndUnmapsIt(string which)
    {
        PageAllocator allocator = which == "portable" ? PageAllocator.Portable : PageAllocator.Default;
        foreach (nuint alignment in new nuint[] { PageAllocator.PageSize, 64 * 1024, 2 * 1024 * 1024 })
        {
            nuint length = 3 * 1024 * 1024;
            Assert.True(allocator.TryMap(length, alignment, PageKind.Normal, out nint address));
            Assert.Equal(0, (long)((nuint)address % alignment));
            new Span<byte>((void*)address, (int)length).Fill(0xEE);
            Assert.True(allocator.Unmap(address, length));
        }
    }

    [Fact]
    public void DontNeedDropsThePagesSoTheyReadAsZeros()
    {
        PageAllocator allocator = PageAllocator.Default;
        if (!allocator.SupportsAdvice)
        {
            Skip.Because("this platform's allocator takes no advice");
        }

        nuint length = 16 * PageAllocator.PageSize;
        Assert.True(allocator.TryMap(length, PageAllocator.PageSize, PageKind.Normal, out nint address));
        var span = new Span<byte>((void*)address, (int)length);
        span.Fill(0x77);
        Assert.True(allocator.TryAdvise(address, length, PageAdvice.DontNeed));
        Assert.True(span.IndexOfAnyExcept((byte)0) < 0);
        Assert.True(allocator.Unmap(address, length));
    }

    [Fact]
    public void ThePortableAllocatorRefusesHugetlbAndAdvice()
    {
        PageAllocator portable = PageAllocator.Portable;
        Assert.False(portable.TryMap(2 * 1024 * 1024, 2 * 1024 * 1024, PageKind.HugeTlb2MB, out nint address));
        Assert.Equal(0, address);
        Assert.False(portable.SupportsAdvice);
        Assert.False(portable.SupportsHugeTlb);
    }

    [Theory]
    [MemberData(nameof(Allocators))]
    public void BadMapArgumentsThrowBeforeReachingTheOS(string which)
    {
        PageAllocator allocator = which == "portable" ? PageAllocator.Portable : PageAllocator.Default;
        Assert.Equal("length", Assert.Throws<ArgumentOutOfRangeException>(() => allocator.TryMap(0, 4096, PageKind.Normal, out _)).ParamName);
        Assert.Equal("alignment", Assert.Throws<ArgumentOutOfRangeException>(() => allocator.TryMap(4096, 3000, PageKind.Normal, out _)).ParamName);
        Assert.Equal("alignment", Assert.Throws<ArgumentOutOfRangeException>(() => allocator.TryMap(4096, 0, PageKind.Normal, out _)).ParamName);
        Assert.Equal("kind", Assert.Throws<ArgumentOutOfRangeException>(() => allocator.TryMap(4096, 4096, (PageKind)42, out _)).ParamName);
    }
}
