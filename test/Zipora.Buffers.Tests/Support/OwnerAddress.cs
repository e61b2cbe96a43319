using System;
using System.Buffers;
using System.Runtime.CompilerServices;

namespace Zipora.Buffers.Tests;

/// <summary>Where an owner's memory starts, whichever owner the pool's mode hands out.</summary>
internal static class OwnerAddress
{
    public static unsafe nint Of(IMemoryOwner<byte> owner) => (nint)Unsafe.AsPointer(ref owner.Memory.Span[0]);

    /// <summary>Whether two owners' memory shares a byte.</summary>
    public static bool Overlap(IMemoryOwner<byte> first, IMemoryOwner<byte> second) => first.Memory.Span.Overlaps(second.Memory.Span);
}
