namespace Zipora.Buffers;

/// <summary>The free arrays of one size class in one thread's cache, with the one counter its fast path keeps.</summary>
/// <remarks>
/// The stack's capacity is the length of <see cref="Items"/>, so a single unsigned compare of the count against that
/// length both tests for room (or for an array to pop) and proves the index in bounds.
/// </remarks>
internal struct ArrayClassStack
{
    /// <summary>
    /// The stack's slots: <see cref="ArrayThreadCache.NoStack"/> (no slots) until the class is first used on the
    /// thread, and from a trim abandoning them until the owner next reaches the class.
    /// </summary>
    public byte[][] Items;

    /// <summary>How many of <see cref="Items"/> hold arrays, from the bottom.</summary>
    public int Count;

    /// <summary>Arrays of the class returned on this thread, wherever they went.</summary>
    public long Returns;
}
