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

    public HugeTier(PageSource pages, bool enableHugepages, int cacheMaxCount, long cacheMaxBytes)
        : base("huge", pages, cacheMaxCount, cacheMaxBytes)
    {
        _enableHugepages = enableHugepages;
        _transparentAvailable = pages.Allocator.SupportsAdvice && HugePageInfo.Read().TransparentHugePagesAvailable;
    }

    protected override nuint MappedLength(int size) => ((nuint)size + HugePageSize - 1) & ~(HugePageSize - 1);

    protected override int BufferLength(int size, nuint mappedLength) => (int)System.Math.Min(mappedLength, int.MaxValue);

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
