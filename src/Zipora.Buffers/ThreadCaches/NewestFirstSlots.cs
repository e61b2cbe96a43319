using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;

namespace Zipora.Buffers;

/// <summary>
/// A thread stack kept newest-first in a slot array: the newest item in slot 0, the older ones from slot 1 up, and a
/// count of every item held, slot 0's too. The array pool's thread stacks use it (the slab tiers' keep their newest block
/// beside the count instead, see <see cref="ClassStack"/>).
/// </summary>
/// <remarks>
/// <para>
/// A steady rent and return of one item touches slot 0 only, whose address needs no count. When a rent had to read
/// back the count the last return stored before it could load the item at that index (which the same return had
/// also just stored), the two store-to-load forwardings in a row cost every pair about two nanoseconds against the
/// runtime pool's one array per thread.
/// </para>
/// <para>
/// The older items are in slots 1 to count while slot 0 is empty (a rent took it), 1 to count - 1 while it is taken.
/// Every slot array has a slot 0 (a class with no stack gets a one-slot array that is never written), so slot 0 is
/// read without a bounds check; every other index is checked against the array read or the capacity, which never
/// exceeds it.
/// </para>
/// </remarks>
internal static class NewestFirstSlots
{
    /// <summary>Takes slot 0's item, else the newest of the older ones; false when the slots hold none.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static bool TryPop<T>(T[] items, ref int count, out T item)
        where T : class
    {
        ref T first = ref MemoryMarshal.GetArrayDataReference(items);
        item = first;
        if (item is not null)
        {
            first = null!;
            count--;
            return true;
        }

        // Slot 0 empty: the newest older item is in slot count, which must lie in 1 to Length - 1.
        int held = count;
        if ((uint)(held - 1) < (uint)(items.Length - 1))
        {
            ref T top = ref Unsafe.Add(ref first, held);
            item = top;
            top = null!;
            count = held - 1;
            return true;
        }

        return false;
    }

    /// <summary>
    /// Puts an item in slot 0, moving the one there to the end of the older ones, so the newest item is always the
    /// next one taken; false when the slots hold <paramref name="capacity"/> items (at most their length).
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static bool TryPush<T>(T[] items, ref int count, int capacity, T item)
        where T : class
    {
        int held = count;
        if ((uint)held >= (uint)capacity)
        {
            return false;
        }

        // In bounds: held is below the capacity. Through references, the stores skip the bounds and covariance checks.
        ref T first = ref MemoryMarshal.GetArrayDataReference(items);
        if (first is not null)
        {
            Unsafe.Add(ref first!, held) = first!;
        }

        first = item;
        count = held + 1;
        return true;
    }

    /// <summary>
    /// Moves the items into slots 0 to <paramref name="count"/> - 1 (the newest older one into an empty slot 0), for the
    /// slow paths that move a stack's items out as one span.
    /// </summary>
    public static void Compact<T>(T[] items, int count)
        where T : class
    {
        if (items[0] is null && count > 0)
        {
            items[0] = items[count];
            items[count] = null!;
        }
    }
}
