using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;

namespace Zipora.Buffers;

/// <summary>The free arrays of one size class in one thread's cache, with the one counter its fast path keeps.</summary>
/// <remarks>
/// <para>
/// The stack's newest array is in slot 0, the others below it from slot 1 up. A steady rent and return of one array
/// then touches only slot 0, whose address needs no count: when the count stored by one call had to be read back
/// before the next could find its array, that dependency cost each pair about two nanoseconds against the runtime
/// pool's one array per thread.
/// </para>
/// <para>
/// <see cref="Count"/> is every array held, slot 0's too, so the older arrays are in slots 1 to <see cref="Count"/>
/// while slot 0 is empty (a rent took it), and 1 to <see cref="Count"/> - 1 while it is taken. Every check below is made against the
/// length of the one slot array read, so a trim swapping it meanwhile never makes an index go out of bounds.
/// </para>
/// </remarks>
internal struct ArrayClassStack
{
    /// <summary>
    /// The stack's slots: <see cref="ArrayThreadCache.NoStack"/> (one slot, always empty) until the class is first used
    /// on the thread, for a class the thread does not cache, and from a trim abandoning them until the owner next
    /// reaches the class.
    /// </summary>
    public byte[][] Items;

    /// <summary>How many of <see cref="Items"/> hold arrays: slot 0 if taken, and the stack from slot 1 up.</summary>
    public int Count;

    /// <summary>Arrays of the class returned on this thread, wherever they went.</summary>
    public long Returns;

    /// <summary>Takes slot 0's array, else the top of the stack; false when the slots hold none. Only the owner calls it.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public bool TryPop(out byte[] array)
    {
        byte[][] items = Items;

        // Every slot array has a slot 0 (NoStack too, where it stays empty), so it is read without a bounds check.
        ref byte[] first = ref MemoryMarshal.GetArrayDataReference(items);
        array = first;
        if (array is not null)
        {
            first = null!;
            Count--;
            return true;
        }

        // Slot 0 empty: the stack's top is slot Count, which must lie in 1 to Length - 1.
        int count = Count;
        if ((uint)(count - 1) < (uint)(items.Length - 1))
        {
            ref byte[] top = ref Unsafe.Add(ref first, count);
            array = top;
            top = null!;
            Count = count - 1;
            return true;
        }

        return false;
    }

    /// <summary>Puts an array in slot 0, moving the one there onto the stack; false when full (or the slots are NoStack). Only the owner calls it.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public bool TryPush(byte[] array)
    {
        byte[][] items = Items;
        ref byte[] first = ref MemoryMarshal.GetArrayDataReference(items);
        if (first is null && items != ArrayThreadCache.NoStack)
        {
            // Through a reference: the store skips the covariance check of a byte[][] element store.
            first = array;
            Count++;
            return true;
        }

        // Slot 0 taken: its array moves onto the stack (the next free slot is slot Count, which must lie in 1 to
        // Length - 1) and the new one takes its place, so the newest array is always the next one rented.
        int count = Count;
        if ((uint)(count - 1) < (uint)(items.Length - 1))
        {
            Unsafe.Add(ref first!, count) = first!;
            first = array;
            Count = count + 1;
            return true;
        }

        return false;
    }
}
