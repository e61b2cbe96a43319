namespace Zipora.Buffers;

/// <summary>One thread's free arrays of one size class, with that thread's counters for the class.</summary>
/// <remarks>
/// Only the owning thread writes it, except a trim, which empties it after the handshake on
/// <see cref="ArrayThreadCache.InUse"/>. The item array grows on demand up to <see cref="Capacity"/>, so a thread that
/// never uses a class pays nothing for it.
/// </remarks>
internal sealed class ArrayStack(int capacity)
{
    /// <summary>Most arrays this stack keeps; 0 sends every array of the class to the shared depot.</summary>
    public readonly int Capacity = capacity;

    public byte[][] Items = [];

    public int Count;

    public long Hits;

    public long Misses;

    public long Returns;
}
