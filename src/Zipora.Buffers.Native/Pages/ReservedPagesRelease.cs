namespace Zipora.Buffers.Native;

/// <summary>What became of a hugetlb mapping whose reserved pages were to go back without unmapping it.</summary>
internal enum ReservedPagesRelease
{
    /// <summary>Refused: the mapping is still there whole, with its reserved pages and their charge.</summary>
    Kept,

    /// <summary>The range is mapped on fresh base pages now; the reserved pages and their charge went back.</summary>
    Replaced,

    /// <summary>The kernel unmapped the range and it could not be mapped again: nothing of it is left to unmap.</summary>
    Lost,
}
