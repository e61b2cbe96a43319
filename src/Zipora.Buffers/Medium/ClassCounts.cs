namespace Zipora.Buffers;

/// <summary>The medium tier's counters of one size class, summed over every thread.</summary>
internal struct ClassCounts
{
    public long Size;

    public long Hits;

    public long Misses;

    public long Returns;

    /// <summary>Blocks held for reuse, in the thread caches and the depot.</summary>
    public long Cached;
}
