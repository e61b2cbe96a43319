using Zipora.Buffers.Native;

namespace Zipora.Buffers;

/// <summary>
/// The huge tier's transparent hugepage region: base pages 2 MB aligned (so the kernel can back each whole 2 MB with a
/// hugepage), advised with MADV_HUGEPAGE.
/// </summary>
internal readonly struct AdvisedMapping : IPreparedMapping
{
    public AdvisedMapping(nuint length) => Length = length;

    public nuint Length { get; }

    // No fallback to the portable allocator here: the huge tier maps plain pages itself when this is refused. A
    // mapping waiting out its delay may serve, one advised before too, since this advises it anyway.
    public bool TryMap(PageSource pages, out nint address, out PageBacking backing)
    {
        backing = PageBacking.Plain;
        return pages.TryMap(Length, (nuint)HugePageInfo.Size2MB, PageKind.Normal, out address);
    }

    /// <summary>Advises the mapping for transparent hugepages; <see langword="false"/> when the kernel refused.</summary>
    public bool TryPrepare(PageSource pages, nint address, PageBacking backing) =>
        pages.TryAdvise(address, Length, PageAdvice.HugePage, backing);
}
