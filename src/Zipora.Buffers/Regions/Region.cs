using Zipora.Buffers.Native;

namespace Zipora.Buffers;

/// <summary>One mapping of the large or huge tier, with the manager that hands it out and its places in the cache's lists.</summary>
internal sealed class Region : INativeMemoryReleaser
{
    public Region(RegionTier tier, PageSource pages, int classIndex, nint mappingAddress, nuint mappedLength, nint address, int bufferLength, PageBacking backing)
    {
        Tier = tier;
        ClassIndex = classIndex;
        MappingAddress = mappingAddress;
        Address = address;
        MappedLength = mappedLength;
        Backing = backing;
        Buffer = pages.CreateManager(address, bufferLength, this, backing);
    }

    public RegionTier Tier { get; }

    /// <summary>The tier's size class: regions of one class have the same length and can stand in for each other.</summary>
    public int ClassIndex { get; }

    /// <summary>Start of the mapping: the buffer's start, or the guard page before it in diagnostic mode.</summary>
    public nint MappingAddress { get; }

    /// <summary>Start of the buffer.</summary>
    public nint Address { get; }

    /// <summary>Bytes mapped from the OS (the buffer's length rounded up to the page or hugepage size, plus any guard pages).</summary>
    public nuint MappedLength { get; }

    public PageBacking Backing { get; }

    public NativeMemoryManager Buffer { get; }

    // Links of the cache's two intrusive lists while the region is cached: all regions by return time, and the
    // regions of the same length by return time.
    public Region? Older;
    public Region? Newer;
    public Region? SameSizeOlder;
    public Region? SameSizeNewer;

    /// <summary>
    /// The next region an emptying of the slots took out to unmap (under the tier's trim lock, see
    /// <c>RegionTier.EmptySlots</c>): chained through the regions, the emptying needs no list that could grow.
    /// </summary>
    public Region? NextEmptied;

    /// <summary>
    /// The idle clock's tick when the region was last returned. A region parked in a thread's slot has it written as it
    /// leaves the slot unrented; until then the slot's <see cref="RegionThreadCache.LastParkAt"/> holds it.
    /// </summary>
    public long ReturnedAt;

    /// <summary>
    /// Set under the tier's gate while the idle release drops the cached region's pages outside it (one region at a
    /// time): the cache neither hands it out nor evicts it meanwhile (see <see cref="RegionCache.TakeNewest"/>).
    /// </summary>
    public bool DroppingPages;

    /// <summary>Whether the region is in its tier's cache now (written by the cache, under the tier's gate).</summary>
    public bool IsCached;

    /// <summary>Whether the region's pages were dropped since it was last handed out (they are not advised twice).</summary>
    public bool PagesDropped;

    /// <summary>The region that <paramref name="buffer"/>, one of a region tier's buffers, hands out.</summary>
    public static Region Of(NativeMemoryManager buffer) => (Region)buffer.Releaser!;

    public void Release(NativeMemoryManager buffer) => Tier.Return(this, buffer);

    public void Reclaim(NativeMemoryManager buffer) => Tier.Reclaim(this);
}
