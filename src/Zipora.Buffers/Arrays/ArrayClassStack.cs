using System.Runtime.CompilerServices;

namespace Zipora.Buffers;

/// <summary>The free arrays of one size class in one thread's cache, with the one counter its fast path keeps.</summary>
/// <remarks>
/// <para>
/// The slots are kept newest-first (see <see cref="NewestFirstSlots"/>): a steady rent and return touches slot 0
/// only. Every check is made against the length of the one slot array read, so a trim swapping it meanwhile never
/// makes an index go out of bounds.
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

    /// <summary>
    /// Takes slot 0's array, else the top of the older ones, from <paramref name="items"/>: <see cref="Items"/> as the
    /// fast path read it, or the slots the slow path installed, so a trim swapping <see cref="Items"/> meanwhile
    /// leaves the count consistent with the slots the operation used (the owner settles them later). False when the
    /// slots hold none. Only the owner calls it.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public bool TryPop(byte[][] items, out byte[] array) => NewestFirstSlots.TryPop(items, ref Count, out array);

    /// <summary>
    /// Puts an array in slot 0 of <paramref name="items"/> (see <see cref="TryPop"/>), moving the one there onto the
    /// older ones; false when full, or when the slots are <see cref="ArrayThreadCache.NoStack"/>. Only the owner calls it.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public bool TryPush(byte[][] items, byte[] array) =>
        NewestFirstSlots.TryPush(items, ref Count, items == ArrayThreadCache.NoStack ? 0 : items.Length, array);
}
