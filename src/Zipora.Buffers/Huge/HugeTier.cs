using System.Numerics;
using Zipora.Buffers.Native;

namespace Zipora.Buffers;

/// <summary>
/// Requests above the hugepage threshold: 2 MB aligned arenas in size classes four per doubling (2.5, 3, 3.5, 4, 5 MB,
/// ...), so a buffer is at most 25% larger than asked. Each arena tries reserved 1 GB pages (when the class is a whole
/// number of them), then reserved 2 MB pages, then transparent hugepages (a 2 MB aligned mapping advised with
/// MADV_HUGEPAGE), then plain pages; each step down is counted.
/// </summary>
/// <remarks>
/// Reserved hugepages can only be mapped in whole pages, so those arenas round the class up to 2 MB (or 1 GB); the
/// others map the class rounded to base pages, and the kernel backs every whole 2 MB of it with a transparent
/// hugepage when it can.
/// </remarks>
internal sealed class HugeTier : RegionTier
{
    private const nuint HugePageSize = (nuint)HugePageInfo.Size2MB;
    private const nuint GigaPageSize = (nuint)HugePageInfo.Size1GB;

    private readonly int _minSizeLog2;
    private readonly bool _enableHugepages;
    private readonly bool _transparentAvailable;

    public HugeTier(PageSource pages, IdleClock clock, LeakQuarantine quarantine, DeferredUnmaps unmaps, bool guardPages, int hugepageThreshold, int maxBufferSize, bool enableHugepages, int cacheMaxCount, long cacheMaxBytes, bool adaptive)
        : base("huge", pages, clock, quarantine, unmaps, guardPages, BitOperations.Log2((uint)hugepageThreshold), ClassCount(hugepageThreshold, maxBufferSize), cacheMaxCount, cacheMaxBytes, adaptive)
    {
        _minSizeLog2 = BitOperations.Log2((uint)hugepageThreshold);
        _enableHugepages = enableHugepages;
        _transparentAvailable = pages.Allocator.SupportsAdvice && HugePageInfo.Read().TransparentHugePagesAvailable;
    }

    protected override int BufferLength(int classIndex) => (int)long.Min(ClassSize(classIndex), int.MaxValue);

    protected override bool TryMapRegion(int classIndex, out nint address, out nuint mappedLength, out PageBacking backing)
    {
        nuint classSize = (nuint)ClassSize(classIndex);
        if (_enableHugepages && TryMapReserved(classSize, out address, out mappedLength, out backing))
        {
            return true;
        }

        mappedLength = PageSource.RoundUp(classSize, PageAllocator.PageSize);
        if (!_enableHugepages)
        {
            return Pages.TryMapPlain(mappedLength, HugePageSize, out address, out backing);
        }

        if (!_transparentAvailable)
        {
            // No transparent hugepages on this system: base pages are the next step down.
            Pages.CountFallback(FallbackStep.NoTransparentHugepages);
            return Pages.TryMapPlain(mappedLength, HugePageSize, out address, out backing);
        }

        if (!TryMapPrepared(new AdvisedMapping(mappedLength), out address, out backing, out bool advised))
        {
            return Pages.TryMapPlain(mappedLength, HugePageSize, out address, out backing);
        }

        if (advised)
        {
            backing = PageBacking.TransparentHuge;
            return true;
        }

        // Mapped, but the kernel refused the advice: the range works on base pages.
        Pages.CountFallback(FallbackStep.HugepageAdviceRefused);
        backing = PageBacking.Plain;
        return true;
    }

    /// <summary>Quarter-step classes from the threshold up to the class that holds the largest buffer.</summary>
    private static int ClassCount(int hugepageThreshold, int maxBufferSize) => maxBufferSize <= hugepageThreshold
        ? 1
        : SizeClasses.QuarterStepIndex(maxBufferSize, BitOperations.Log2((uint)hugepageThreshold)) + 1;

    private long ClassSize(int classIndex) => SizeClasses.QuarterStepSize(classIndex, _minSizeLog2);

    private bool TryMapReserved(nuint classSize, out nint address, out nuint mappedLength, out PageBacking backing)
    {
        address = 0;
        backing = PageBacking.HugeTlb2MB;
        mappedLength = PageSource.RoundUp(classSize, HugePageSize);
        if (!Pages.Allocator.SupportsHugeTlb)
        {
            Pages.CountFallback(FallbackStep.NoReservedHugepages);
            return false;
        }

        if (classSize % GigaPageSize == 0)
        {
            if (Pages.TryMap(classSize, GigaPageSize, PageKind.HugeTlb1GB, out address))
            {
                mappedLength = classSize;
                backing = PageBacking.HugeTlb1GB;
                return true;
            }

            Pages.CountFallback(FallbackStep.No1GBHugepages);
        }

        if (Pages.TryMap(mappedLength, HugePageSize, PageKind.HugeTlb2MB, out address))
        {
            return true;
        }

        // The usual case: no hugepages reserved (vm.nr_hugepages = 0) makes MAP_HUGETLB fail with ENOMEM.
        Pages.CountFallback(FallbackStep.NoReservedHugepages);
        return false;
    }
}
