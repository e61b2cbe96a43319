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

    /// <summary>
    /// Raises the hits to the rents the returns imply. The threads' counters are read one after another while they
    /// run: a buffer rented on a thread already read and returned on one read later shows as a return without its
    /// rent, and a return is counted just after its buffer enters the stack the hits are derived from; so under
    /// cross-thread traffic a class's hits and buffers in use fell below zero. Every return had its rent, so the rents
    /// are at least the returns; when the pool is quiet the counts are exact and this changes nothing.
    /// </summary>
    public void CountTheRentsOfEveryReturn() => Hits = HitsCoveringEveryReturn(Hits, Misses, Returns);

    /// <summary>The hits raised to the rents <paramref name="returns"/> imply (see <see cref="CountTheRentsOfEveryReturn"/>), never below zero.</summary>
    public static long HitsCoveringEveryReturn(long hits, long misses, long returns) => System.Math.Max(System.Math.Max(hits, 0), returns - misses);
}
