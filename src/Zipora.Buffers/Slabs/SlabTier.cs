using System;
using System.Threading;

namespace Zipora.Buffers;

/// <summary>
/// A tier carved from slabs (small, medium). Blocks are too small to date one by one, so idleness is judged per
/// tier: once no buffer was rented or returned for the whole delay, the tier trims itself, and not again until it
/// is used. Returns count as activity because they are what turns memory idle.
/// </summary>
internal abstract class SlabTier : BufferTier
{
    private readonly Lock _markLock = new();
    private long _activitySeen = -1;
    private long _lastActive;
    private bool _lastActiveCounted;
    private bool _trimmedSinceActive;

    protected SlabTier(IdleClock clock) => Clock = clock;

    protected IdleClock Clock { get; }

    /// <summary>
    /// Trims the tier when <paramref name="activity"/> (rents plus returns so far: it changes whenever the tier is
    /// used) has not moved for the whole delay (see <see cref="IdleClock.QuietLongEnough"/>). The trim drops the pages
    /// of its free blocks at once; their slabs are unmapped once <see cref="ReturnedBy"/>'s stamp has waited out the
    /// delay (see <see cref="IdleClock.HasWaitedOutDelay"/>), at this tick or the next. Each tier's
    /// <see cref="BufferTier.ReleaseIdle"/> calls it with the figure it has just summed for its own statistics, so the
    /// counters are read once per tick.
    /// </summary>
    protected void TrimIfIdle(long now, long activity)
    {
        lock (_markLock)
        {
            if (activity != _activitySeen)
            {
                _activitySeen = activity;
                _lastActive = now;
                _lastActiveCounted = Clock.LastTickCounted;
                _trimmedSinceActive = false;
                return;
            }

            if (_trimmedSinceActive || !Clock.QuietLongEnough(now, _lastActive, _lastActiveCounted))
            {
                return;
            }
        }

        Trim();

        // Only once trimmed: a trim that failed (out of managed memory) is tried again at the next tick. A use since is
        // seen by that tick, which dates it and clears this.
        lock (_markLock)
        {
            _trimmedSinceActive = true;
        }
    }

    /// <summary>
    /// The tick of the idle clock by which every free block of the tier had been returned, given its activity summed
    /// after a trim collected those blocks: the tick at which the idle releaser first saw that figure, or now when it
    /// has moved since (a block may have come back a moment ago). Activity only grows, so an equal figure means no
    /// rent or return since.
    /// </summary>
    protected long ReturnedBy(long activity)
    {
        lock (_markLock)
        {
            return activity == _activitySeen ? _lastActive : Clock.Epoch;
        }
    }

    /// <summary>
    /// The statistics of a slab tier: what is mapped and not handed out is retained, except slab space not yet cut
    /// into blocks (uncarved: never touched, so never committed), the free bytes on pages the tier dropped (no longer
    /// committed) and those pinned on a page beside a live block (fragmented).
    /// </summary>
    protected static TierStatistics Snapshot(string name, long hits, long misses, long returns, long bytesInUse, long bytesRented, long bytesRequested, SlabHeap heap, long[] rentedBytesByClass)
    {
        SlabHeapFigures figures = heap.ReadFigures(rentedBytesByClass);
        long uncarved = figures.Uncarved;
        long free = figures.Reserved - uncarved - bytesInUse;
        return new()
        {
            Name = name,
            BytesRented = bytesRented,
            BytesRequested = bytesRequested,
            BytesAllocated = figures.Allocated,
            BytesEvicted = figures.Evicted,
            Rents = hits + misses,
            Returns = returns,
            CacheHits = hits,
            CacheMisses = misses,
            BytesInUse = bytesInUse,
            BytesRetained = RetainedBytes(free, figures.Dropped, figures.Fragmented),
            BytesFragmented = Math.Min(figures.Fragmented, Math.Max(0, free)),
            BytesUncarved = uncarved,
        };
    }

    /// <summary>What <see cref="Snapshot"/> counts as retained, read without allocating (see <see cref="BufferTier.RetainedAndActivity"/>).</summary>
    protected static long RetainedBytes(long bytesInUse, SlabHeap heap, long[] rentedBytesByClass)
    {
        (long dropped, long fragmented) = heap.NotRetained(rentedBytesByClass);
        return RetainedBytes(heap.ReservedBytes - heap.UncarvedBytes - bytesInUse, dropped, fragmented);
    }

    private static long RetainedBytes(long free, long dropped, long fragmented) => Math.Max(0, free - dropped - fragmented);
}
