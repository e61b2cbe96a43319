using System.Runtime.CompilerServices;
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
/// The slots are kept newest-first (see <see cref="NewestFirstSlots"/>): a steady rent and return touches slot 0
/// only. Every slot not holding a block is cleared, as nothing in the pool may keep a rented block reachable, or a
/// leaked one would never be finalized.
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
    /// <summary>The slots of a class not cached per thread: one, never filled (its capacity is 0), so slot 0 can always be read.</summary>
    public static readonly NativeMemoryManager[] NoSlots = new NativeMemoryManager[1];

    /// <summary>The slots, as many as the class may ever hold on a thread; <see cref="NoSlots"/> when the class is not cached per thread.</summary>
    public NativeMemoryManager[] Items;

    /// <summary>How many of <see cref="Items"/> hold blocks: slot 0 if taken, and the older ones from slot 1 up.</summary>
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

    /// <summary>Takes slot 0's block, else the newest of the older ones; false when the stack is empty.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public bool TryPop(out NativeMemoryManager block) => NewestFirstSlots.TryPop(Items, ref Count, out block);

    /// <summary>Puts a block in slot 0, moving the one there onto the older ones; false when the stack holds its capacity.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public bool TryPush(NativeMemoryManager block) => NewestFirstSlots.TryPush(Items, ref Count, Capacity, block);

    /// <summary>Moves the blocks into slots 0 to <see cref="Count"/> - 1, for the slow paths that move them as a span.</summary>
    public readonly void Compact() => NewestFirstSlots.Compact(Items, Count);
}
