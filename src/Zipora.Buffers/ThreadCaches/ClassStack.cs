using Zipora.Buffers.Native;

namespace Zipora.Buffers;

/// <summary>
/// The free blocks of one size class of a slab tier (small or medium) in one thread's cache, with the counters the
/// class's statistics are derived from. One class's state fits in one cache line.
/// </summary>
/// <remarks>
/// <para>
/// The fast rent counts nothing: a block popped from the stack is a hit, and the hits are derived when the statistics
/// are read. Every block that enters or leaves the stack other than by a fast rent is counted: returns into it
/// (<see cref="Returns"/>), moves between it and the depot (<see cref="NetTransfers"/>) and blocks trims took from it
/// (<see cref="Drained"/>). Then <c>hits = Returns + NetTransfers - Drained - Count</c>.
/// </para>
/// <para>
/// Only the owning thread writes the stack, inside the tier's handshake, except a trim, which drains it while the
/// owner is kept out by that handshake. A trim writes no counter the owner writes: the owner counts its returns and
/// rents past a closed cache outside the handshake, so the trim's own count is <see cref="Drained"/>. The statistics
/// read it racily: exact when the pool is quiet, off by the operation in flight while it is busy.
/// </para>
/// </remarks>
internal struct ClassStack
{
    /// <summary>The slots, as many as the class may ever hold on a thread; empty when the class is not cached per thread.</summary>
    public NativeMemoryManager[] Items;

    /// <summary>How many of <see cref="Items"/> hold blocks, from the bottom.</summary>
    public int Count;

    /// <summary>How many blocks the stack may hold now, at most the length of <see cref="Items"/>: adaptive caches move it.</summary>
    public int Capacity;

    /// <summary>Blocks of the class returned on this thread, wherever they went.</summary>
    public long Returns;

    /// <summary>
    /// Blocks moved into the stack from the depot, less those moved out to it (by an overflow or a return past the
    /// stack). A rent served straight from the depot counts as moved in and popped. Only the owner writes it.
    /// </summary>
    public long NetTransfers;

    /// <summary>Blocks trims took from the stack. Only trims write it, while the owner is kept out.</summary>
    public long Drained;

    /// <summary>Rents of the class on this thread that found no free block and carved a new one.</summary>
    public long Misses;

    /// <summary>Bytes asked for by this thread's rents of the class (the sizes, not the class size).</summary>
    public long RequestedBytes;

    /// <summary>Overflows since the stack last ran empty: the adaptation shrinks a class that keeps overflowing.</summary>
    public int Overflows;

    /// <summary>The rents of the class on this thread that found a free block.</summary>
    public readonly long Hits => Returns + NetTransfers - Drained - Count;
}
