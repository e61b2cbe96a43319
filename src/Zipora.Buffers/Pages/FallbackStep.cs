namespace Zipora.Buffers;

/// <summary>The ways a mapping steps down to a lesser backend.</summary>
internal enum FallbackStep
{
    /// <summary>No 1 GB hugepages were free for a class of whole gigabytes.</summary>
    No1GBHugepages,

    /// <summary>MAP_HUGETLB failed (no 2 MB pages reserved or free) or the OS has no hugetlb pages.</summary>
    NoReservedHugepages,

    /// <summary>Transparent hugepages are off or missing on this system.</summary>
    NoTransparentHugepages,

    /// <summary>The kernel refused MADV_HUGEPAGE for the range.</summary>
    HugepageAdviceRefused,

    /// <summary>The OS refused pages; the portable allocator served them.</summary>
    OSRefusedToPortable,
}
