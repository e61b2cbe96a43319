using Zipora.Buffers.Native;

namespace Zipora.Buffers;

/// <summary>
/// Requests above the hugepage threshold: 2 MB aligned arenas rounded to whole 2 MB pages. Each arena tries reserved
/// 1 GB pages (when the length is a whole number of them), then reserved 2 MB pages, then transparent hugepages
/// (a 2 MB aligned mapping advised with MADV_HUGEPAGE), then plain pages; each step down is counted.
/// </summary>
internal sealed class HugeTier : RegionTier
{
    private const nuint HugePageSize = (nuint)HugePageInfo.Size2MB;
    private const nuint GigaPageSize = (nuint)HugePageInfo.Size1GB;

    private readonly bool _enableHugepages;
    private readonly bool _transparentAvailable;

    public HugeTier(PageSource pages, int maxBufferSize, bool enableHugepages, int cacheMaxCount, long cacheMaxBytes)
        : base("huge", pages, ClassIndexOf(maxBufferSize) + 1, cacheMaxCount, cacheMaxBytes)
    {
        _enableHugepages = enableHugepages;
        _transparentAvailable = pages.Allocator.SupportsAdvice && HugePageInfo.Read().TransparentHugePagesAvailable;
    }

    /// <summary>Class <c>c</c> is <c>c + 1</c> whole 2 MB pages.</summary>
    protected override int ClassIndex(int size) => ClassIndexOf(size);

    protected override nuint MappedLength(int classIndex) => (nuint)(classIndex + 1) * HugePageSize;

    protected override int BufferLength(int classIndex) => (int)System.Math.Min(MappedLength(classIndex), int.MaxValue);

    private static int ClassIndexOf(int size) => (int)(((nuint)size - 1) / HugePageSize);

    protected override bool TryMapRegion(nuint mappedLength, out nint address, out PageBacking backing)
    {
        if (_enableHugepages)
        {
            if (TryMapReserved(mappedLength, out address, out backing))
            {
                return true;
            }

            if (_transparentAvailable)
            {
                if (!Pages.TryMap(mappedLength, HugePageSize, PageKind.Normal, out address))
                {
                    return Pages.TryMapPlain(mappedLength, HugePageSize, out address, out backing);
                }

                if (Pages.TryAdvise(address, mappedLength, PageAdvice.HugePage))
                {
                    backing = PageBacking.TransparentHuge;
                    return true;
                }

                // Mapped, but the kernel refused the advice: the range works on base pages.
                Pages.CountFallback();
                backing = PageBacking.Plain;
                return true;
            }

            // No transparent hugepages on this system: base pages are the next step down.
            Pages.CountFallback();
        }

        return Pages.TryMapPlain(mappedLength, HugePageSize, out address, out backing);
    }

    private bool TryMapReserved(nuint mappedLength, out nint address, out PageBacking backing)
    {
        backing = PageBacking.HugeTlb2MB;
        address = 0;
        if (!Pages.Allocator.SupportsHugeTlb)
        {
            Pages.CountFallback();
            return false;
        }

        if (mappedLength % GigaPageSize == 0)
        {
            if (Pages.TryMap(mappedLength, GigaPageSize, PageKind.HugeTlb1GB, out address))
            {
                backing = PageBacking.HugeTlb1GB;
                return true;
            }

            Pages.CountFallback();
        }

        if (Pages.TryMap(mappedLength, HugePageSize, PageKind.HugeTlb2MB, out address))
        {
            return true;
        }

        // The usual case: no hugepages reserved (vm.nr_hugepages = 0) makes MAP_HUGETLB fail with ENOMEM.
        Pages.CountFallback();
        return false;
    }
}
