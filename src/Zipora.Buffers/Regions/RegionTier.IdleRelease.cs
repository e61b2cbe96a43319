using System;
using System.Collections.Generic;

namespace Zipora.Buffers;

/// <summary>
/// The region tier's idle release, at every tick of the idle clock: the demand window, idle slots, the cached regions
/// that have waited out the delay (unmapped) and those that will have by the next tick (their pages dropped).
/// </summary>
internal abstract partial class RegionTier
{
    // The idle releaser's scratch lists (it ticks one tick at a time): regions to unmap, and regions to drop pages of.
    private readonly List<Region> _waitedOut = [];
    private readonly List<Region> _dueAtNextTick = [];

    /// <summary>
    /// Starts a new demand window once per delay (shrinking an adaptive cache to the demand of the last two), empties
    /// the slots unused for a delay and shrinks the others' reservations to the regions they hold, then unmaps the cached regions returned a full delay ago and drops the pages of
    /// those that will have been by the next tick.
    /// </summary>
    public override void ReleaseIdle(long now, long delayInTicks)
    {
        // Only the idle releaser's timer calls this, one tick at a time.
        if (now - _windowStart >= delayInTicks)
        {
            _windowStart = now;
            _gate.Enter();
            int lastPeakSum = _classPeakSum;
            _classPeakSum = 0;
            for (int classIndex = 0; classIndex < _peakByClass.Length; classIndex++)
            {
                _lastPeakByClass[classIndex] = _peakByClass[classIndex];
                _peakByClass[classIndex] = _inUseByClass[classIndex];
                _classPeakSum += _peakByClass[classIndex];
            }

            if (_adaptive)
            {
                _cache.MaxCount = Math.Max(_configuredMaxCount, Math.Max(lastPeakSum, _classPeakSum));
            }

            _gate.Exit();
            UnmapCached(stopWhenWithinLimits: true);
        }

        if (SomeSlotHoldsTooMuch())
        {
            EmptySlots(onlyUnused: true, closeForGood: false);
        }

        UnmapWaitedOut();
        DropPagesDueAtNextTick();
    }

    /// <summary>
    /// Unmaps every cached region returned a full delay ago. The whole cache is walked: its order is by return, except
    /// for a region that comes from a slot (an idle one's, or an exited thread's) with its older park time.
    /// </summary>
    private void UnmapWaitedOut()
    {
        MakeRoomForTheCache(_waitedOut);
        _gate.Enter();
        for (Region? region = _cache.Oldest; region is not null; region = region.Newer)
        {
            if (_clock.HasWaitedOutDelay(region.ReturnedAt) && !AddIfRoom(_waitedOut, region))
            {
                break;
            }
        }

        foreach (Region region in _waitedOut)
        {
            _cache.Take(region);
            Pages.BeginRelease(region.MappedLength);
            _bytesLeaving += (long)region.MappedLength;
        }

        _gate.Exit();
        try
        {
            // Each unmap ends its region's release however it leaves.
            UnmapEach(_waitedOut, 0);
        }
        finally
        {
            _waitedOut.Clear();
        }
    }

    /// <summary>
    /// Drops the pages of the cached regions that the next tick will unmap (returned three quarters of a delay to a
    /// delay ago): without it, a burst's regions stayed resident until that tick, up to a quarter delay past the delay.
    /// They stay cached, so a rent meanwhile still reuses one (on fresh zero pages), and the unmap still waits for the
    /// whole delay, for a stale write into a region just returned.
    /// </summary>
    /// <remarks>
    /// One region at a time is marked under the gate while it is advised outside it, so that the cache neither hands
    /// it out nor evicts it then: the advice never falls on memory someone else holds, and a rent or an eviction finds
    /// the region beside it. A trim or a disposal that emptied the cache meanwhile passed it by: it is let go of right
    /// after.
    /// </remarks>
    private void DropPagesDueAtNextTick()
    {
        MakeRoomForTheCache(_dueAtNextTick);
        _gate.Enter();
        for (Region? region = _cache.Oldest; region is not null; region = region.Newer)
        {
            if (!region.PagesDropped && _clock.WaitsOutDelayByNextTick(region.ReturnedAt) && !AddIfRoom(_dueAtNextTick, region))
            {
                break;
            }
        }

        _gate.Exit();
        foreach (Region region in _dueAtNextTick)
        {
            DropPagesOf(region);
        }

        _dueAtNextTick.Clear();
    }

    /// <summary>
    /// Gives <paramref name="list"/> room for every region cached now (and a few returned meanwhile), before the gate:
    /// nothing allocates while the gate is held. An <see cref="OutOfMemoryException"/> there (a process at its GC
    /// heap limit) would leave it taken, and every later rent and return of the tier spinning for ever.
    /// </summary>
    private void MakeRoomForTheCache(List<Region> list) => list.EnsureCapacity(_cache.Count + 16);

    /// <summary>Adds <paramref name="region"/> if <paramref name="list"/> has room; a region that finds none waits for the next tick.</summary>
    private static bool AddIfRoom(List<Region> list, Region region)
    {
        if (list.Count == list.Capacity)
        {
            return false;
        }

        list.Add(region);
        return true;
    }

    private void DropPagesOf(Region region)
    {
        // Rented since it was listed, perhaps returned again with a new return time: then it is not due.
        _gate.Enter();
        bool due = region.IsCached && !region.PagesDropped && _clock.WaitsOutDelayByNextTick(region.ReturnedAt);
        region.DroppingPages = due;
        long emptyings = _cacheEmptyings;
        if (due)
        {
            // A trim meanwhile passes it by, and a rent at the cap whose trim that was waits for it (see letGo below).
            Pages.BeginRelease(region.MappedLength);
        }

        _gate.Exit();
        if (!due)
        {
            return;
        }

        bool handedOn = false;
        bool overLimit;
        try
        {
            // A refused advice leaves the pages resident until the unmap at the next tick; nothing is counted for it.
            bool dropped = Pages.TryAdvise(region.MappingAddress, region.MappedLength, Pages.IdlePageAdvice, region.Backing);

            _gate.Enter();
            region.DroppingPages = false;
            region.PagesDropped = dropped;
            bool letGo = _disposed || _cacheEmptyings != emptyings;
            if (letGo)
            {
                _cache.Take(region);
                _bytesLeaving += (long)region.MappedLength;
            }

            overLimit = _cache.IsOverLimit;
            _gate.Exit();
            if (letGo)
            {
                // Unmap ends the release begun above.
                handedOn = true;
                Unmap(region);
                return;
            }
        }
        finally
        {
            if (!handedOn)
            {
                Pages.EndRelease(region.MappedLength);
            }
        }

        if (overLimit)
        {
            // A return over the limits meanwhile evicted the region beside it; the limits may want this one too.
            UnmapCached(stopWhenWithinLimits: true);
        }
    }
}
