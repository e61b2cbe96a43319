using System;
using System.Collections.Generic;
using System.Threading;

namespace Zipora.Buffers;

/// <summary>The region tier's trims, idle release and disposal: emptying the threads' slots safely while their owners run.</summary>
internal abstract partial class RegionTier
{
    // A monitor, not a System.Threading.Lock: a contended Lock allocates its wait event on the managed heap, and the
    // pool's dispose takes it (meeting a trim under memory pressure), where running out of managed memory must not stop
    // it.
    private readonly object _trimLock = new();

    // Set by disposal under the trim lock: the slots stay closed for good and are never emptied again.
    private bool _slotsClosedForGood;

    // Empties a slot (all, or one unused for a delay) or shrinks its reservation to the region it holds, under the
    // registry's lock. Made with the tier, not at the first trim or dispose: a static lambda's delegate and its class's
    // statics are made at its first use, which may be at the GC heap limit, where a type initializer that fails leaves
    // every later use throwing, for good.
    private readonly Action<RegionThreadCache, (RegionTier Tier, bool OnlyUnused)> _emptyOrShrinkSlot = static (cache, state) =>
    {
        if (!state.OnlyUnused || state.Tier.IsIdleSlot(cache.LastParkAt))
        {
            if (state.Tier.EmptySlotUnsynchronized(cache, keepUnlessWaitedOut: state.OnlyUnused) is { } letGo)
            {
                letGo.NextEmptied = state.Tier._emptiedFirst;
                state.Tier._emptiedFirst = letGo;
            }
        }
        else
        {
            state.Tier.ShrinkReservationUnsynchronized(cache);
        }
    };

    // Emptyings of the whole cache so far (trims, disposal; counted under the gate as each ends): the idle release
    // lets a region go right after dropping its pages if one ended meanwhile, since it passed the region by.
    private long _cacheEmptyings;

    // The first of the regions an emptying of the slots takes out to unmap, under the trim lock, chained through the
    // regions themselves (Region.NextEmptied): the emptying allocates nothing however many slots hold one. Before, a
    // list made with room for 4 grew when more slots held regions than any emptying had met, in the pool's dispose too,
    // which then allocated (176 bytes with 6 threads' large and huge slots) and could throw partway at the GC heap
    // limit (RegionSlotsDisposeAllocationTests).
    private Region? _emptiedFirst;

    public override void Trim()
    {
        EmptySlots(onlyUnused: false, closeForGood: false);
        UnmapCached(stopWhenWithinLimits: false);
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
    /// Whether a slot holds a reservation but was not parked in for a whole delay, or holds more room than the region
    /// parked in it (read racily: the emptying checks again with the owner kept out). Retires the slots of exited
    /// threads on the way.
    /// </summary>
    private bool SomeSlotHoldsTooMuch()
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
                long reserved = Volatile.Read(ref cache.ReservedBytes);
                if (reserved > 0 && (IsIdleSlot(Volatile.Read(ref cache.LastParkAt)) || cache.ParkedRegion is { } parked && (long)parked.MappedLength < reserved))
                {
                    return true;
                }
            }
        }

        return false;
    }

    /// <summary>
    /// Closes the slots, takes the regions parked in them (all, or those of slots unused for a delay but its last tick)
    /// and gives back their reservations (with <paramref name="onlyUnused"/>, the other slots' reservations shrink to
    /// the regions they hold); reopens them unless the tier is being disposed.
    /// </summary>
    private void EmptySlots(bool onlyUnused, bool closeForGood)
    {
        lock (_trimLock)
        {
            try
            {
                if (_slotsClosedForGood)
                {
                    return;
                }

                _cachesClosed = true;
                try
                {
                    HandshakeCache.EmptyEach(_registry, (Tier: this, OnlyUnused: onlyUnused), _emptyOrShrinkSlot);
                }
                finally
                {
                    // Reopened also when the emptying failed (a process out of managed memory): left closed, every rent
                    // and return would pass the slots by for good.
                    _cachesClosed = closeForGood;
                }

                if (closeForGood)
                {
                    _slotsClosedForGood = true;
                    _registry.ReleaseSlot();
                }
            }
            finally
            {
                // The regions chained were taken out of use to be unmapped, as a trim or disposal wants all idle memory
                // gone, or their slot went unused for a delay (see EmptySlotUnsynchronized). Also after a failed
                // emptying: the regions taken out of their slots before it are not lost. Under the trim lock: on their
                // way out, the regions are where no other trim finds them, and a rent at MaxBytesInUse whose trim ran
                // meanwhile (the pool's, while a rent's own trim of this tier after a refused mapping, or an idle tick,
                // gave them back) found nothing and was refused, with a region of the room it asked for on its way
                // (MixedTiersAtTheCapSafetyTests: the 4 KB rents refused with a third large region mapped of two in use
                // at most). That trim now waits for these. Unchained as each goes: the tier must not keep a region
                // reachable once it is given back (a pinned array would stay on the heap).
                Region? first = _emptiedFirst;
                _emptiedFirst = null;
                UnmapChain(first);

                // The regions cached from the slots may have put the cache past its limits.
                UnmapCached(stopWhenWithinLimits: true);
            }
        }
    }

    /// <summary>Whether a slot last parked in at tick <paramref name="lastParkAt"/> is idle enough to empty: see <see cref="EmptySlots"/>.</summary>
    private bool IsIdleSlot(long lastParkAt) => _clock.HasWaitedOutDelay(lastParkAt) || _clock.WaitsOutDelayByNextTick(lastParkAt);

    /// <summary>
    /// Takes a slot's region out of use, into the cache (returned less than a delay ago, when
    /// <paramref name="keepUnlessWaitedOut"/>) or out of the tier to be unmapped (its release begun; returned, for the
    /// caller to unmap), and gives back the slot's reservation: a slot unused for all but the last tick of a delay is
    /// emptied a tick early into the cache, where that tick drops its region's pages with the cached ones of its age (it
    /// is unmapped at the next). The owner is kept out or has exited; the caller holds the registry's lock,
    /// under which the statistics read the slots and the shared counts: out of its slot and still in use, the region
    /// showed a quiet pool a buffer in use (TrimStatisticsRaceTests).
    /// </summary>
    private Region? EmptySlotUnsynchronized(RegionThreadCache cache, bool keepUnlessWaitedOut)
    {
        Region? parked = cache.ParkedRegion;
        Region? letGo = null;
        if (parked is not null)
        {
            // Its return time is the slot's last park (the fast path writes only the slot's): the unmap waits from
            // there.
            parked.ReturnedAt = cache.LastParkAt;
            cache.ParkedBuffer = null;
            cache.DrainedByClass[parked.ClassIndex]++;

            // Cached, it is no longer the emptying's to unmap (a rent may take it from here); the caller checks the
            // limits.
            if (!TakeOutOfUse(parked, userReturn: false, keep: keepUnlessWaitedOut && !_clock.HasWaitedOutDelay(parked.ReturnedAt), out _))
            {
                letGo = parked;
            }
        }

        if (cache.ReservedBytes > 0)
        {
            _gate.Enter();
            _cache.Unreserve(cache.ReservedBytes, keepSlot: false);
            cache.ReservedBytes = 0;
            _gate.Exit();
        }

        return letGo;
    }

    /// <summary>
    /// Shrinks a slot's reservation to the region parked in it. A slot reserves room for the longest region it ever
    /// parked, and its thread renews it with every park: a thread that parked a 1 MB region once and 20 KB ones since
    /// kept 1 MB of the cache's byte limit for as long as it lived, and a few such threads left the shared cache no room
    /// at all, so every burst was mapped again. An empty slot keeps its room (its thread holds the region it rented from
    /// it, and parks it again on its return); a slot unused for a delay is emptied instead. The owner is kept out.
    /// </summary>
    private void ShrinkReservationUnsynchronized(RegionThreadCache cache)
    {
        if (cache.ParkedRegion is { } parked && (long)parked.MappedLength < cache.ReservedBytes)
        {
            _gate.Enter();
            _cache.Unreserve(cache.ReservedBytes - (long)parked.MappedLength, keepSlot: true);
            cache.ReservedBytes = (long)parked.MappedLength;
            _gate.Exit();
        }
    }

    /// <summary>
    /// Caches the region of a thread that has exited (unmaps it, if it waited out the delay parked) and folds its counts
    /// into the retired totals. The registry calls it with its lock held, and forgets the slot only if this returns.
    /// </summary>
    private void RetireUnsynchronized(RegionThreadCache cache)
    {
        // No list: a pool's dispose retires the slots of exited threads, where it must allocate nothing (a list made
        // for each such slot was 88 bytes of its dispose per region tier, RegionSlotsDisposeAllocationTests).
        if (EmptySlotUnsynchronized(cache, keepUnlessWaitedOut: true) is { } letGo)
        {
            Unmap(letGo);
        }

        UnmapCached(stopWhenWithinLimits: true);

        // Folded last: an unmap that threw from a custom allocator (its bug, passed on) leaves the slot registered,
        // empty, and the next retire folds it. Folded before, its counts were in the retired totals and the slot's
        // both, and the next retire added them again: a rent and return counted twice for good
        // (RetiredSlotUnmapThatThrowsSafetyTests).
        for (int classIndex = 0; classIndex < _retiredHitsByClass.Length; classIndex++)
        {
            _retiredHitsByClass[classIndex] += cache.HitsOf(classIndex);
            _retiredParks += cache.ParksByClass[classIndex];
        }

        _retiredRequestedBytes += cache.RequestedBytes;
    }

    /// <summary>
    /// Unmaps the regions of <paramref name="regions"/> from <paramref name="from"/> on, each taken out of the tier
    /// already (their releases begun). Every one, even past a custom allocator's exception (its bug, not a refusal),
    /// which goes on to the caller after the rest: a loop stopped by it lost the regions after the one that threw,
    /// mapped, counted against the cap and (from a slot) in use for good, listed nowhere
    /// (RegionReleaseThatThrowsSafetyTests). Allocates nothing.
    /// </summary>
    private void UnmapEach(List<Region> regions, int from)
    {
        int next = from;
        try
        {
            while (next < regions.Count)
            {
                Unmap(regions[next++]);
            }
        }
        finally
        {
            // Reached with regions left only when one threw: the rest still go, and its exception after them (or the
            // next one's, if another throws too).
            if (next < regions.Count)
            {
                UnmapEach(regions, next);
            }
        }
    }

    /// <summary>
    /// Unmaps the regions chained from <paramref name="first"/> through <see cref="Region.NextEmptied"/>, each unchained
    /// as it goes, every one even past a custom allocator's exception, as <see cref="UnmapEach"/> does. Allocates nothing.
    /// </summary>
    private void UnmapChain(Region? first)
    {
        Region? next = first;
        try
        {
            while (next is not null)
            {
                Region region = next;
                next = region.NextEmptied;
                region.NextEmptied = null;
                Unmap(region);
            }
        }
        finally
        {
            if (next is not null)
            {
                UnmapChain(next);
            }
        }
    }

    private void UnmapCached(bool stopWhenWithinLimits)
    {
        while (true)
        {
            _gate.Enter();
            Region? victim = stopWhenWithinLimits && !_cache.IsOverLimit ? null : _cache.TakeOldest();
            if (victim is not null)
            {
                Pages.BeginRelease(victim.MappedLength);
                _bytesLeaving += (long)victim.MappedLength;
            }
            else if (!stopWhenWithinLimits)
            {
                _cacheEmptyings++;
            }

            _gate.Exit();

            if (victim is null)
            {
                return;
            }

            Unmap(victim);
        }
    }

    /// <summary>
    /// Lets a region go: its manager throws from now on, and the mapping is unmapped at once only if it was returned a
    /// full delay ago (otherwise its pages are dropped now and the unmap waits, see <see cref="DeferredUnmaps"/>, on
    /// the place the region reserved there when it was mapped: this allocates nothing). The caller began its release
    /// (<see cref="PageSource.BeginRelease"/>) under the gate, as it took the region out of the tier, and counted it
    /// leaving there.
    /// </summary>
    private void Unmap(Region region)
    {
        bool goneNow = false;
        try
        {
            region.Buffer.MarkReleased();
            goneNow = _unmaps.Release(region.MappingAddress, region.MappedLength, region.Backing, region.ReturnedAt, region.PagesDropped, placeReserved: true, reusable: !_guardPages, countEvicted: _countEvicted, listIfThrown: true, callerCountsNow: true);
        }
        finally
        {
            // Out of the leaving bytes and into the evicted ones in one step under the gate, where the statistics read
            // both. Not gone now (the OS refused to drop its pages, or the allocator threw), it is counted at its
            // unmap.
            _gate.Enter();
            _bytesLeaving -= (long)region.MappedLength;
            if (goneNow)
            {
                _ = Interlocked.Add(ref _bytesEvicted, (long)region.MappedLength);
            }

            _gate.Exit();
            Pages.EndRelease(region.MappedLength);
        }
    }
}
