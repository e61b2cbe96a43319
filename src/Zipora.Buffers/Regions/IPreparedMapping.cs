namespace Zipora.Buffers;

/// <summary>
/// A region tier's new mapping that is prepared before its region is made (diagnostic guard pages, transparent hugepage
/// advice): how it is mapped, and how prepared. <c>RegionTier.TryMapPrepared</c> runs the two and owns the mapping
/// when the preparation throws. Implemented by structs, so the generic method is compiled for each: no allocation and
/// no indirect call on a rent's miss.
/// </summary>
internal interface IPreparedMapping
{
    /// <summary>The mapping's length.</summary>
    nuint Length { get; }

    /// <summary>Maps <see cref="Length"/> bytes; <see langword="false"/> when refused (nothing mapped).</summary>
    bool TryMap(PageSource pages, out nint address, out PageBacking backing);

    /// <summary>
    /// Prepares the mapping; <see langword="false"/> when refused, and the mapping then serves unprepared. A throw is a
    /// custom allocator's bug, which the caller passes on after letting go of the mapping.
    /// </summary>
    bool TryPrepare(PageSource pages, nint address, PageBacking backing);
}
