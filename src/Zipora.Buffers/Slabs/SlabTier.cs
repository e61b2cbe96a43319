namespace Zipora.Buffers;

/// <summary>
/// A tier carved from slabs (small, medium). Blocks are too small to date one by one, so idleness is judged per
/// tier: once no buffer was rented or returned for the whole delay, the tier trims itself, and not again until it
/// is used. Returns count as activity because they are what turns memory idle.
/// </summary>
internal abstract class SlabTier : BufferTier
{
    private long _activitySeen = -1;
    private long _lastActive;
    private bool _trimmedSinceActive;

    /// <summary>
    /// Trims the tier when <paramref name="activity"/> (rents plus returns so far: it changes whenever the tier is
    /// used) has not moved for the whole delay. Each tier's <see cref="BufferTier.ReleaseIdle"/> calls it with the
    /// figure it has just summed for its own statistics, so the counters are read once per tick.
    /// </summary>
    protected void TrimIfIdle(long now, long delayInTicks, long activity)
    {
        // Only the idle releaser's timer calls this, one tick at a time, so the fields need no lock.
        if (activity != _activitySeen)
        {
            _activitySeen = activity;
            _lastActive = now;
            _trimmedSinceActive = false;
            return;
        }

        if (!_trimmedSinceActive && now - _lastActive >= delayInTicks)
        {
            _trimmedSinceActive = true;
            Trim();
        }
    }

    /// <summary>The statistics of a slab tier: what is mapped and not handed out is retained.</summary>
    protected static TierStatistics Snapshot(string name, long hits, long misses, long returns, long bytesInUse, long bytesRented, long bytesRequested, SlabHeap heap) => new()
    {
        Name = name,
        BytesRented = bytesRented,
        BytesRequested = bytesRequested,
        BytesAllocated = heap.AllocatedBytes,
        BytesEvicted = heap.EvictedBytes,
        Rents = hits + misses,
        Returns = returns,
        CacheHits = hits,
        CacheMisses = misses,
        BytesInUse = bytesInUse,
        BytesRetained = heap.ReservedBytes - bytesInUse,
    };
}
