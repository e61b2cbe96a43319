using Zipora.Buffers.Native;

namespace Zipora.Buffers.Tests;

/// <summary>
/// A length so close to the top of the address space that adding the alignment slack wraps it past zero: the pinned
/// array allocator sized its array from the wrapped sum, and reported the whole length mapped over an empty array.
/// </summary>
public sealed class PinnedArraysWrappedLengthTests
{
    [Theory]
    [InlineData(2)]
    [InlineData(4096)]
    public void TryMapOfALengthThatWrapsWithTheAlignmentRefusesIt(int alignment)
    {
        // length + alignment - 1 is exactly 2^64: zero once wrapped.
        nuint length = nuint.MaxValue - (nuint)alignment + 2;

        bool mapped = PageAllocator.PinnedArrays.TryMap(length, (nuint)alignment, PageKind.Normal, out nint address);
        if (mapped)
        {
            // Given back before the assertion, so a failure leaves no empty array behind in the allocator.
            PageAllocator.PinnedArrays.Unmap(address, length);
        }

        Assert.False(mapped, $"TryMap reported {length} bytes mapped at 0x{address:x}");
        Assert.Equal(0, address);
    }
}
