namespace Zipora.Buffers;

/// <summary>The counters of one size class, summed over every thread's cache (medium tier, array pool).</summary>
internal struct ClassCounts
{
    public long Size;

    public long Hits;

    public long Misses;

    public long Returns;

    /// <summary>Buffers held for reuse, in the thread caches and the depot.</summary>
    public long Cached;
}
