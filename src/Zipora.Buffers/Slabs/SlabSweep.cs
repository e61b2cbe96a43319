namespace Zipora.Buffers;

/// <summary>What a sweep of one slab found, in bytes.</summary>
/// <param name="Dropped">Carved bytes on dropped pages: free, and not committed.</param>
/// <param name="Fragmented">Free bytes on pages that hold a live block: committed, and beyond a trim's reach.</param>
/// <param name="Advised">Bytes this sweep newly dropped (whole pages), for the evicted count.</param>
internal readonly record struct SlabSweep(long Dropped, long Fragmented, long Advised);
