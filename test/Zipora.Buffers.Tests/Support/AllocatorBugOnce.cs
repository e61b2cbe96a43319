using System;
using System.Threading;

namespace Zipora.Buffers.Tests;

/// <summary>
/// A custom allocator's own bug, thrown from one of its calls once (an <see cref="InvalidOperationException"/>, not a
/// refusal): hooked on a <see cref="LiveMappingsAllocator"/>'s unmap or advice, it lets the pool meet an exception where
/// it gives memory back, and then go on.
/// </summary>
internal sealed class AllocatorBugOnce
{
    private int _thrown;

    /// <summary>1 once <see cref="Throw"/> threw, 0 before.</summary>
    public int Thrown => Volatile.Read(ref _thrown);

    /// <summary>Throws the first time it is called, from whichever thread; does nothing after.</summary>
    public void Throw()
    {
        if (Interlocked.Exchange(ref _thrown, 1) == 0)
        {
            throw new InvalidOperationException("the custom allocator's own bug, once");
        }
    }
}
