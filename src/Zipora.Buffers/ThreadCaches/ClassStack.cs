using System;
using System.Diagnostics;
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
/// <para>
/// The slots are made short (<see cref="InitialSlots"/> at most) and grow with the owner's rents, not with the
/// capacity: a capacity set to millions would otherwise cost every thread megabytes of slots on its first rent. They
/// grow only on a rent's slow path, never on a return, which must not allocate (see
/// <see cref="SizeClassDepot{T}.ReserveOne"/>); the larger array is made before the handshake, and the blocks move
/// into it inside, where no trim can take them meanwhile. A trim gives grown slots back with the blocks.
/// </para>
/// </remarks>
internal struct ClassStack
{
    /// <summary>
    /// The most slots a stack starts with: the default <see cref="TieredMemoryPoolOptions.ThreadCacheMaxBuffers"/>, so
    /// with the default options every stack has its whole capacity from the start (1 KB of slots per class at most).
    /// </summary>
    public const int InitialSlots = 128;

    /// <summary>The slots of a class not cached per thread: one, never filled (its capacity is 0).</summary>
    public static readonly NativeMemoryManager[] NoSlots = new NativeMemoryManager[1];

    /// <summary>The newest block, if the stack holds one there (a rent took it otherwise).</summary>
    public NativeMemoryManager? Newest;

    /// <summary>
    /// The older blocks from slot 1 up: slots 1 to <see cref="Count"/> - 1 while <see cref="Newest"/> holds a block, 1 to
    /// <see cref="Count"/> while it is empty. Fewer slots than the capacity at first, made longer by <see cref="GrowInto"/>;
    /// <see cref="NoSlots"/> when the class is not cached per thread.
    /// </summary>
    public NativeMemoryManager[] Items;

    /// <summary>How many blocks the stack holds, <see cref="Newest"/> included.</summary>
    public int Count;

    /// <summary>How many blocks the stack may hold now: adaptive caches move it. May exceed the slots until they grow.</summary>
    public int Capacity;

    /// <summary>
    /// How many blocks a push may put in the stack: <see cref="Capacity"/>, or the length of <see cref="Items"/> while
    /// that is shorter. The fast push compares against it alone, so a stack whose slots have not grown yet costs it
    /// nothing; <see cref="SetCapacity"/> and <see cref="GrowInto"/> keep it in step.
    /// </summary>
    public int PushLimit;

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
        if ((uint)held >= (uint)PushLimit)
        {
            return false;
        }

        NativeMemoryManager? newest = Newest;
        if (newest is not null)
        {
            // Slot held is free and in bounds: the older blocks fill 1 to held - 1, and held is below the push limit,
            // which never exceeds the slots. Through a reference, the store skips the bounds and covariance checks.
            Unsafe.Add(ref MemoryMarshal.GetArrayDataReference(Items), held) = newest;
        }

        Newest = block;
        Count = held + 1;
        return true;
    }

    /// <summary>Sets the capacity, and the push limit with it: the capacity, within the slots there are.</summary>
    public void SetCapacity(int capacity)
    {
        Debug.Assert(capacity == 0 || Items != NoSlots, "a cached class has slots of its own");
        Capacity = capacity;
        PushLimit = Math.Min(capacity, Items.Length);
    }

    /// <summary>
    /// Moves the blocks into <paramref name="slots"/>, longer than <see cref="Items"/>, each at its index, and takes
    /// them as the stack's slots. The owner, inside its handshake: a trim never sees the stack half moved.
    /// </summary>
    public void GrowInto(NativeMemoryManager[] slots)
    {
        Debug.Assert(slots.Length > Items.Length, "slots only grow");

        // The old slots go to the GC with the stack's references to blocks still in them: nothing reaches them now.
        Items.AsSpan().CopyTo(slots);
        Items = slots;
        PushLimit = Math.Min(Capacity, slots.Length);
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
