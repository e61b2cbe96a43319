using Zipora.Buffers.Native;

namespace Zipora.Buffers;

/// <summary>One thread's stack of free blocks of one medium size class, with that thread's counters for the class.</summary>
/// <remarks>Only the owning thread writes it, so the fields are plain; the statistics read them racily (64-bit reads do not tear).</remarks>
internal sealed class SizeClassCache
{
    public SizeClassCache(int capacity) => Items = new NativeMemoryManager[capacity];

    /// <summary>Free blocks; the top of the stack (the most recently returned, so the warmest) is at <c>Count - 1</c>.</summary>
    public readonly NativeMemoryManager[] Items;

    public int Count;

    public long Hits;

    public long Misses;

    public long Returns;
}
