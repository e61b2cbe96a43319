namespace Zipora.Buffers;

/// <summary>What a mapped region ended up backed by, after any fallbacks.</summary>
internal enum PageBacking
{
    /// <summary>Base pages from the OS.</summary>
    Plain,

    /// <summary>Base pages advised for transparent hugepages, on a 2 MB aligned range.</summary>
    TransparentHuge,

    /// <summary>Reserved 2 MB hugepages.</summary>
    HugeTlb2MB,

    /// <summary>Reserved 1 GB hugepages.</summary>
    HugeTlb1GB,

    /// <summary>The portable heap allocator, after the OS refused.</summary>
    Portable,
}
