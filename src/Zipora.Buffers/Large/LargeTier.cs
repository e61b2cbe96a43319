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

    public LargeTier(PageSource pages, int mmapThreshold, int cacheMaxCount, long cacheMaxBytes)
        : base("large", pages, cacheMaxCount, cacheMaxBytes)
    {
        _minSizeLog2 = BitOperations.Log2((uint)mmapThreshold);
    }

    protected override nuint MappedLength(int size) => RoundToPages((nuint)SizeClasses.QuarterStepRound(size, _minSizeLog2));

    protected override int BufferLength(int size, nuint mappedLength) => (int)SizeClasses.QuarterStepRound(size, _minSizeLog2);

    protected override bool TryMapRegion(nuint mappedLength, out nint address, out PageBacking backing) =>
        Pages.TryMapPlain(mappedLength, PageAllocator.PageSize, out address, out backing);

    private static nuint RoundToPages(nuint length) => (length + PageAllocator.PageSize - 1) & ~(PageAllocator.PageSize - 1);
}
