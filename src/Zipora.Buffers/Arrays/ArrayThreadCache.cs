using System;
using System.Threading;

namespace Zipora.Buffers;

/// <summary>The arrays one thread keeps for one <see cref="TieredArrayPool"/>: a stack per size class, and the thread's counters.</summary>
/// <remarks>
/// Only the owning thread writes it, except a trim, which empties it after the handshake on <see cref="InUse"/>. The
/// stacks share one array, class <c>c</c> owning the slots from the pool's offset of <c>c</c>, and the counts live
/// inline, so the fast path follows one reference from the cache to the array it hands out.
/// </remarks>
internal sealed class ArrayThreadCache(TieredArrayPool pool, int slots, bool closed)
{
    /// <summary>The pool the cache belongs to: the thread-static last-used cache may be another pool's.</summary>
    public readonly TieredArrayPool Pool = pool;

    /// <summary>The thread that owns the cache; once it has exited, its arrays move to the depots.</summary>
    public readonly Thread Owner = Thread.CurrentThread;

    public readonly byte[][] Items = new byte[slots][];

    public ArrayClassValues<int> Counts;

    public ArrayClassValues<long> Hits;

    public ArrayClassValues<long> Misses;

    public ArrayClassValues<long> Returns;

    /// <summary>
    /// 1 while the owner is inside a rent or return. With the trimming thread's process-wide barrier this forms an
    /// asymmetric Dekker handshake: the owner pays two plain stores, the rare trim pays the barrier.
    /// </summary>
    public int InUse;

    /// <summary>Set while a trim empties the caches: the owner then goes to the depots and leaves its stacks alone.</summary>
    public volatile bool Closed = closed;

    /// <summary>The whole stack of a class, free slots included.</summary>
    public Span<byte[]> Stack(int offset, int capacity) => Items.AsSpan(offset, capacity);
}
