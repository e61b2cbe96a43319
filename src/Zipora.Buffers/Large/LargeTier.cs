using System.Numerics;
using Zipora.Buffers.Native;

namespace Zipora.Buffers;

/// <summary>
/// Requests above the mmap threshold up to the hugepage threshold: one page-aligned mapping per buffer, in size
/// classes four per doubling (20, 24, 28, 32, 40 KB, ...), so a buffer is at most 25% larger than asked.
/// </summary>
internal sealed class LargeTier : RegionTier
{
    private readonly int _minSizeLog2;

    public LargeTier(PageSource pages, IdleClock clock, LeakQuarantine quarantine, DeferredUnmaps unmaps, bool guardPages, int mmapThreshold, int hugepageThreshold, int cacheMaxCount, long cacheMaxBytes, bool adaptive)
        : base("large", pages, clock, quarantine, unmaps, guardPages, BitOperations.Log2((uint)mmapThreshold), ClassCount(mmapThreshold, hugepageThreshold), cacheMaxCount, cacheMaxBytes, adaptive)
    {
        _minSizeLog2 = BitOperations.Log2((uint)mmapThreshold);
    }

    protected override int BufferLength(int classIndex) => (int)SizeClasses.QuarterStepSize(classIndex, _minSizeLog2);

    /// <summary>Four classes per doubling between the two thresholds (both powers of two).</summary>
    private static int ClassCount(int mmapThreshold, int hugepageThreshold) =>
        4 * (BitOperations.Log2((uint)hugepageThreshold) - BitOperations.Log2((uint)mmapThreshold));

    protected override bool TryMapRegion(int classIndex, out nint address, out nuint mappedLength, out PageBacking backing)
    {
        mappedLength = PageSource.RoundUp((nuint)BufferLength(classIndex), PageAllocator.PageSize);
        return Pages.TryMapPlain(mappedLength, PageAllocator.PageSize, out address, out backing);
    }
}
