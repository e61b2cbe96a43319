namespace Zipora.Buffers;

/// <summary>
/// The size classes of one thread-cached slab tier, as static members of a struct: <see cref="CachedSlabTier{TClasses}"/>
/// is compiled once per struct, so these calls are direct and inlined into its fast paths.
/// </summary>
internal interface ISlabClasses
{
    /// <summary>The tier's name in statistics, metrics and leak reports.</summary>
    static abstract string Name { get; }

    /// <summary>
    /// The thread's last-used cache of this tier: one thread-static per tier, so a thread renting from both slab tiers
    /// does not evict one tier's cache to find the other's.
    /// </summary>
    static abstract ref ThreadCache? LastCache { get; }

    /// <summary>The class that serves a request of <paramref name="size"/> bytes, which the pool has checked is in the tier's range.</summary>
    static abstract int ClassIndexOfRequest(int size);

    /// <summary>The class of a block of <paramref name="length"/> bytes (a class size).</summary>
    static abstract int ClassIndexOfBlock(int length);

    /// <summary>The block size of class <paramref name="classIndex"/>.</summary>
    static abstract int ClassSize(int classIndex);

    /// <summary>The bytes of the slabs blocks of class <paramref name="classIndex"/> are carved from.</summary>
    static abstract int SlabBytes(int classIndex);
}
