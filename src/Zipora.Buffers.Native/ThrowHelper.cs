using System;
using System.Diagnostics.CodeAnalysis;

namespace Zipora.Buffers.Native;

/// <summary>Throws for the uncommon paths, kept out of line so the hot callers stay small enough to inline.</summary>
internal static class ThrowHelper
{
    [DoesNotReturn]
    public static void ThrowObjectDisposed(object instance) =>
        throw new ObjectDisposedException(instance.GetType().FullName, "The buffer was returned to its pool; its memory must not be used any more.");

    [DoesNotReturn]
    public static void ThrowArgumentOutOfRange(string name) => throw new ArgumentOutOfRangeException(name);

    [DoesNotReturn]
    public static void ThrowArgumentNull(string name) => throw new ArgumentNullException(name);

    [DoesNotReturn]
    public static void ThrowMisplacedMapping(Type allocator, nuint length, nuint alignment, nint address, bool givenBack, Exception? unmapFailure) =>
        throw new InvalidOperationException(
            $"{allocator.FullName}.TryMapCore reported a mapping of {length} bytes at " +
            (address == 0 ? "address zero, which no memory is at" : $"0x{address:x}, which is not aligned to the {alignment} bytes asked for") +
            ": a PageAllocator must return a nonzero address that is a multiple of the alignment. " +
            (address == 0 ? "Nothing was given back." : givenBack ? "The mapping was given back with Unmap." : unmapFailure is null ? "Its Unmap refused to give the mapping back." : "Its Unmap threw giving the mapping back (the inner exception)."),
            unmapFailure);
}
