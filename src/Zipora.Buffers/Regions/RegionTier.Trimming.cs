using System;
using System.Collections.Generic;
using System.Threading;

namespace Zipora.Buffers;

/// <summary>The region tier's trims, idle release and disposal: emptying the threads' slots safely while their owners run.</summary>
internal abstract partial class RegionTier
{
    private readonly Lock _trimLock = new();

    // The cached regions whose pages the idle release is dropping: the idle releaser's alone (one tick at a time).
    private readonly List<Region> _droppingPages = [];

    // Set by disposal under the trim lock: the slots stay closed for good and are never emptied again.
    private bool _slotsClosedForGood;

    public override void Trim()
    {
        EmptySlots(onlyUnused: false, closeForGood: false);
        UnmapCached(stopWhenWithinLimits: false);
    }

    /// <summary>
    /// Starts a new demand window once per delay (shrinking an adaptive cache to the demand of the last two), empties
    /// the slots unused for a whole delay, then unmaps, oldest first, the cached regions returned a full delay ago, and
    /// drops the pages of those that will have been by the next tick.
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

        if (SomeSlotIsUnused())
        {
            EmptySlots(onlyUnused: true, closeForGood: false);
        }

        while (true)
        {
            _gate.Enter();
            Region? oldest = _cache.Oldest;
            Region? victim = oldest is not null && _clock.HasWaitedOutDelay(oldest.ReturnedAt) ? _cache.TakeOldest() : null;
            _gate.Exit();
            if (victim is null)
            {
                break;
            }

            Unmap(victim);
        }

        DropPagesDueAtNextTick();
    }

    public override void Dispose()
    {
        _gate.Enter();
        _disposed = true;
        _gate.Exit();

        EmptySlots(onlyUnused: false, closeForGood: true);
        UnmapCached(stopWhenWithinLimits: false);
    }

    /// <summary>
    /// Whether a slot holds a reservation but was not parked in for a whole delay (read racily: the emptying checks
    /// again with the owner kept out). Retires the slots of exited threads on the way.
    /// </summary>
    private bool SomeSlotIsUnused()
    {
        if (!_registry.MayHaveCaches)
        {
            return false;
        }

        lock (_registry.Lock)
        {
            _registry.RetireExitedUnsynchronized();
            foreach (RegionThreadCache cache in _registry.Caches)
            {
                if (Volatile.Read(ref cache.ReservedBytes) > 0 && _clock.HasWaitedOutDelay(Volatile.Read(ref cache.LastParkAt)))
                {
                    return true;
                }
            }
        }

        return false;
    }

    /// <summary>
    /// Closes the slots, unmaps the regions parked in them (all, or those of slots unused for a whole delay) and gives
    /// back their reservations; reopens them unless the tier is being disposed.
    /// </summary>
    private void EmptySlots(bool onlyUnused, bool closeForGood)
    {
        var emptied = new List<Region>();
        lock (_trimLock)
        {
            if (_slotsClosedForGood)
            {
                return;
            }

            _cachesClosed = true;
            HandshakeCache.EmptyEach(_registry, (Tier: this, Emptied: emptied, OnlyUnused: onlyUnused), static (cache, state) =>
            {
                if (!state.OnlyUnused || state.Tier._clock.HasWaitedOutDelay(cache.LastParkAt))
                {
                    state.Tier.EmptySlotUnsynchronized(cache, state.Emptied);
                }
            });

            if (closeForGood)
            {
                _slotsClosedForGood = true;
                _registry.ReleaseSlot();
            }
            else
            {
                _cachesClosed = false;
            }
        }

        // Unmapped, not cached: these slots went unused for a delay, or a trim or disposal wants all idle memory gone.
        foreach (Region region in emptied)
        {
            ReleaseInUse(region, userReturn: false, keep: false);
        }
    }

    /// <summary>Takes a slot's region into <paramref name="emptied"/> and gives back its reservation. The owner is kept out or has exited.</summary>
    private void EmptySlotUnsynchronized(RegionThreadCache cache, List<Region> emptied)
    {
        Region? parked = cache.ParkedRegion;
        if (parked is not null)
        {
            // Its return time is the slot's last park (the fast path writes only the slot's): the unmap waits from there.
            parked.ReturnedAt = cache.LastParkAt;
            cache.ParkedBuffer = null;
            cache.DrainedByClass[parked.ClassIndex]++;
            emptied.Add(parked);
        }

        if (cache.ReservedBytes > 0)
        {
            _gate.Enter();
            _cache.Unreserve(cache.ReservedBytes);
            cache.ReservedBytes = 0;
            _gate.Exit();
        }
    }

    /// <summary>
    /// Caches the region of a thread that has exited and folds its counts into the retired totals. The registry calls
    /// it with its lock held.
    /// </summary>
    private void RetireUnsynchronized(RegionThreadCache cache)
    {
        var emptied = new List<Region>();
        EmptySlotUnsynchronized(cache, emptied);
        for (int classIndex = 0; classIndex < _retiredHitsByClass.Length; classIndex++)
        {
            _retiredHitsByClass[classIndex] += cache.HitsOf(classIndex);
            _retiredParks += cache.ParksByClass[classIndex];
        }

        _retiredRequestedBytes += cache.RequestedBytes;
        foreach (Region region in emptied)
        {
            ReleaseInUse(region, userReturn: false, keep: true);
        }
    }

    private void UnmapCached(bool stopWhenWithinLimits)
    {
        while (true)
        {
            _gate.Enter();
            Region? victim = stopWhenWithinLimits && !_cache.IsOverLimit ? null : _cache.TakeOldest();
            _gate.Exit();

            if (victim is null)
            {
                return;
            }

            Unmap(victim);
        }
    }

    /// <summary>
    /// Drops the pages of the cached regions that the next tick will unmap (returned three quarters of a delay to a
    /// delay ago): without it, a burst's regions stayed resident until that tick, up to a quarter delay past the delay.
    /// They stay cached, so a rent meanwhile still reuses one (on fresh zero pages), and the unmap still waits for the
    /// whole delay, for a stale write into a region just returned. Marked under the gate while advised outside it, so
    /// the cache neither hands them out nor evicts them then: the advice never falls on memory someone else holds.
    /// </summary>
    private void DropPagesDueAtNextTick()
    {
        _gate.Enter();
        for (Region? region = _cache.Oldest; region is not null && _clock.WaitsOutDelayByNextTick(region.ReturnedAt); region = region.Newer)
        {
            if (!region.PagesDropped)
            {
                region.DroppingPages = true;
                _droppingPages.Add(region);
            }
        }

        _gate.Exit();
        if (_droppingPages.Count == 0)
        {
            return;
        }

        foreach (Region region in _droppingPages)
        {
            // A refused advice leaves the pages resident until the unmap at the next tick; nothing is counted for it.
            region.PagesDropped = Pages.TryAdvise(region.MappingAddress, region.MappedLength, Pages.IdlePageAdvice, region.Backing);
        }

        _gate.Enter();
        foreach (Region region in _droppingPages)
        {
            region.DroppingPages = false;
        }

        bool disposed = _disposed;
        bool overLimit = _cache.IsOverLimit;
        _gate.Exit();
        _droppingPages.Clear();

        // A disposal or a return over the limits meanwhile passed these regions by. (So did a trim: they stay cached
        // until the next tick unmaps them, their pages gone already.)
        if (disposed || overLimit)
        {
            UnmapCached(stopWhenWithinLimits: !disposed);
        }
    }

    /// <summary>
    /// Lets a region go: its manager throws from now on, and the mapping is unmapped at once only if it was returned a
    /// full delay ago (otherwise its pages are dropped now and the unmap waits, see <see cref="DeferredUnmaps"/>).
    /// </summary>
    private void Unmap(Region region)
    {
        region.Buffer.MarkReleased();
        _unmaps.Release(region.MappingAddress, region.MappedLength, region.Backing, region.ReturnedAt);
        Interlocked.Add(ref _bytesEvicted, (long)region.MappedLength);
    }
}
