using System;
using System.Buffers;
using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;

namespace Zipora.Buffers.Tests;

/// <summary>The array under a pinned-array pool's buffer, held weakly: whether the GC has collected it tells whether anything still holds it.</summary>
internal static class PinnedArrayOf
{
    /// <summary>A weak reference to the array <paramref name="owner"/>'s memory lies in (it must be an array's).</summary>
    [MethodImpl(MethodImplOptions.NoInlining)]
    public static WeakReference Weakly(IMemoryOwner<byte> owner)
    {
        Assert.True(MemoryMarshal.TryGetArray(owner.Memory, out ArraySegment<byte> segment));
        return new WeakReference(segment.Array);
    }
}
