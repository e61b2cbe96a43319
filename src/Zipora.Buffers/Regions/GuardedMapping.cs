using Zipora.Buffers.Native;

namespace Zipora.Buffers;

/// <summary>
/// Diagnostic mode's region: base pages with an inaccessible page on each side, the buffer ending right at the second,
/// so a write one byte past the buffer faults at once instead of corrupting a neighbour. For classes that are whole
/// pages the buffer also starts right after the first, so a write one byte before it faults too.
/// </summary>
internal readonly struct GuardedMapping : IPreparedMapping
{
    public GuardedMapping(int bufferLength)
    {
        nuint page = PageAllocator.PageSize;
        Length = PageSource.RoundUp((nuint)bufferLength, page) + (2 * page);
    }

    public nuint Length { get; }

    // Never a mapping waiting out its delay: its guard pages would make a stale write into the old holder's memory
    // fault, where the delay promises it never does (GuardedMappingReuseTests).
    public bool TryMap(PageSource pages, out nint address, out PageBacking backing) =>
        pages.TryMapPlain(Length, PageAllocator.PageSize, out address, out backing, takeWaiting: false);

    /// <summary>Protects the first and the last page; <see langword="false"/> when either was refused.</summary>
    public bool TryPrepare(PageSource pages, nint address, PageBacking backing)
    {
        nuint page = PageAllocator.PageSize;
        bool before = pages.TryProtect(address, page, PageProtection.None, backing);
        bool after = pages.TryProtect(address + (nint)(Length - page), page, PageProtection.None, backing);
        return before && after;
    }
}
