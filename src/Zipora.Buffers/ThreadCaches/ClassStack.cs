using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
using Zipora.Buffers.Native;

namespace Zipora.Buffers;

/// <summary>
/// The free blocks of one size class of a slab tier (small or medium) in one thread's cache, with the counters the
/// class's statistics are derived from.
/// </summary>
/// <remarks>
/// <para>
/// The fast rent counts nothing: a block popped from the stack is a hit, and the hits are derived when the statistics
/// are read. Every block that enters or leaves the stack other than by a fast rent is counted: returns into it
/// (<see cref="Returns"/>), moves between it and the depot (<see cref="NetTransfers"/>) and blocks trims took from it
/// (<see cref="Drained"/>). Then <c>hits = Returns + NetTransfers - Drained - Count</c>.
/// </para>
/// <para>
/// The stack is kept newest-first: the newest block in <see cref="Newest"/>, beside the counts, and the older ones
/// in <see cref="Items"/> from slot 1 up, so a steady rent and return of one class touches the stack itself only, not
/// its slot array (one dependent load less on every rent than a slot 0 in the array; the region tiers' slots do the
/// same). Slot 0 of the array stays empty, except between <see cref="Compact"/> and <see cref="Settle"/>, which the
/// slow paths use to move the blocks as one span. Every slot not holding a block is cleared, as nothing in the pool
/// may keep a rented block reachable, or a leaked one would never be finalized.
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
    /// <summary>The slots of a class not cached per thread: one, never filled (its capacity is 0).</summary>
    public static readonly NativeMemoryManager[] NoSlots = new NativeMemoryManager[1];

    /// <summary>The newest block, if the stack holds one there (a rent took it otherwise).</summary>
    public NativeMemoryManager? Newest;

    /// <summary>
    /// The older blocks from slot 1 up: slots 1 to <see cref="Count"/> - 1 while <see cref="Newest"/> holds a block, 1 to
    /// <see cref="Count"/> while it is empty. As many slots as the class may ever hold on a thread;
    /// <see cref="NoSlots"/> when the class is not cached per thread.
    /// </summary>
    public NativeMemoryManager[] Items;

    /// <summary>How many blocks the stack holds, <see cref="Newest"/> included.</summary>
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

    /// <summary>Takes the newest block, else the newest of the older ones; false when the stack is empty.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public bool TryPop(out NativeMemoryManager block)
    {
        NativeMemoryManager? newest = Newest;
        if (newest is not null)
        {
            Newest = null;
            Count--;
            block = newest;
            return true;
        }

        // The newest of the older blocks is in slot Count, which must lie in 1 to Length - 1.
        int held = Count;
        NativeMemoryManager[] items = Items;
        if ((uint)(held - 1) < (uint)(items.Length - 1))
        {
            ref NativeMemoryManager top = ref Unsafe.Add(ref MemoryMarshal.GetArrayDataReference(items), held);
            block = top;
            top = null!;
            Count = held - 1;
            return true;
        }

        block = null!;
        return false;
    }

    /// <summary>
    /// Makes <paramref name="block"/> the newest, moving the one there to the end of the older ones; false when the
    /// stack holds its capacity.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public bool TryPush(NativeMemoryManager block)
    {
        int held = Count;
        if ((uint)held >= (uint)Capacity)
        {
            return false;
        }

        NativeMemoryManager? newest = Newest;
        if (newest is not null)
        {
            // Slot held is free and in bounds: the older blocks fill 1 to held - 1, and held is below the capacity,
            // which never exceeds the slots. Through a reference, the store skips the bounds and covariance checks.
            Unsafe.Add(ref MemoryMarshal.GetArrayDataReference(Items), held) = newest;
        }

        Newest = block;
        Count = held + 1;
        return true;
    }

    /// <summary>
    /// Moves the blocks into slots 0 to <see cref="Count"/> - 1 (the newest into slot 0, or, with none there, the newest
    /// older one), for the slow paths that move a stack's blocks as one span; <see cref="Settle"/> undoes it.
    /// </summary>
    public void Compact()
    {
        if (Newest is not null)
        {
            Items[0] = Newest;
            Newest = null;
        }
        else if (Count > 0)
        {
            Items[0] = Items[Count];
            Items[Count] = null!;
        }
    }

    /// <summary>After a slow path left the blocks in slots 0 to <see cref="Count"/> - 1: slot 0's block becomes the newest again.</summary>
    public void Settle()
    {
        if (Count > 0)
        {
            Newest = Items[0];
            Items[0] = null!;
        }
    }
}
