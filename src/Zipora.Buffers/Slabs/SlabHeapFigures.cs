namespace Zipora.Buffers;

/// <summary>
/// A slab heap's byte counts, read together under its lock (<see cref="SlabHeap.ReadFigures"/>): a trim moves a slab's
/// bytes from mapped to evicted, and the uncut rest out of <see cref="Uncarved"/>, in steps a reader of each figure on
/// its own saw halfway.
/// </summary>
/// <param name="Reserved">Bytes of slabs currently mapped.</param>
/// <param name="Uncarved">Bytes of mapped slabs not yet cut into blocks.</param>
/// <param name="Allocated">Bytes of slabs mapped so far.</param>
/// <param name="Evicted">Bytes given back to the OS so far (see <see cref="SlabHeap.EvictedBytes"/>).</param>
/// <param name="Dropped">Free bytes on dropped pages (see <see cref="SlabHeap.NotRetained"/>).</param>
/// <param name="Fragmented">Free bytes pinned by a live neighbour (see <see cref="SlabHeap.NotRetained"/>).</param>
internal readonly record struct SlabHeapFigures(long Reserved, long Uncarved, long Allocated, long Evicted, long Dropped, long Fragmented);
