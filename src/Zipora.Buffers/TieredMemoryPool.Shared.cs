using System;
using System.Runtime.CompilerServices;
using System.Threading;

namespace Zipora.Buffers;

/// <summary>The process-wide pool: made at its first read, made again if that failed, never disposed.</summary>
public sealed partial class TieredMemoryPool
{
    // Made at its first read (see MakeShared).
    private static TieredMemoryPool? s_shared;

    // Whether this is Shared, read by Dispose instead of s_shared: reading a static made a pool's first Dispose run the
    // type initializer, which built the shared pool and its real timer. Where that failed (no thread could start, the GC
    // heap at its limit) the type initializer failed for good, and every Dispose of every pool threw
    // TypeInitializationException from then on, the ticks that finish a dispose included (LockedMemoryLimitSafetyTests).
    private bool _isShared;

    /// <summary>The process-wide pool, with default options but its name (<see cref="SharedName"/>). Disposing it does nothing.</summary>
    /// <exception cref="OutOfMemoryException">Its first read found no managed memory to make it; a later read tries again.</exception>
    public static new TieredMemoryPool Shared => Volatile.Read(ref s_shared) ?? MakeShared();

    /// <summary>
    /// Makes <see cref="Shared"/> at its first read, and again at the next read if that failed: made by a static
    /// initializer, it failed for good where that ran out of managed memory (a container at its GC heap limit) or found
    /// no thread for its timer, and every later read, every default <see cref="SegmentedBufferWriter"/>'s and
    /// <see cref="SegmentedMemoryStream"/>'s included, threw TypeInitializationException
    /// (SharedPoolsAtTheHeapLimitSafetyTests). Two threads' first reads may both make one: the one that loses is
    /// disposed, having been marked shared only where nobody else could see it.
    /// </summary>
    [MethodImpl(MethodImplOptions.NoInlining)]
    private static TieredMemoryPool MakeShared()
    {
        var made = new TieredMemoryPool(new TieredMemoryPoolOptions { Name = SharedName }) { _isShared = true };
        TieredMemoryPool? first = Interlocked.CompareExchange(ref s_shared, made, null);
        if (first is null)
        {
            return made;
        }

        made._isShared = false;
        made.Dispose();
        return first;
    }
}
