using System;
using System.Runtime.CompilerServices;
using System.Threading;
using Zipora.Buffers.Native;

namespace Zipora.Buffers;

/// <summary>The region tier's shared side: the cache behind the lock, the slots' reservations, and mapping new regions.</summary>
internal abstract partial class RegionTier
{
    [MethodImpl(MethodImplOptions.NoInlining)]
    private NativeMemoryManager RentShared(int classIndex, int size, RegionThreadCache? cache)
    {
        if (cache is null)
        {
            CreateThreadCache();
        }

        _gate.Enter();
        if (_disposed)
        {
            _gate.Exit();
            ThrowHelper.ThrowPoolDisposed();
        }

        Region? region = _cache.TakeNewest(classIndex);
        if (region is not null)
        {
            region.PagesDropped = false;
            CountRentUnsynchronized(classIndex);
            _hits++;
            _bytesRequested += size;
            _bytesInUse += region.Buffer.Length;
            _bytesRented += region.Buffer.Length;
        }

        _gate.Exit();

        if (region is null)
        {
            return RentMiss(classIndex, size);
        }

        region.Buffer.Reactivate();
        return region.Buffer;
    }

    /// <summary>Registers a slot for the calling thread, unless the tier is disposed (its rent then throws).</summary>
    private void CreateThreadCache()
    {
        lock (_registry.Lock)
        {
            if (!Volatile.Read(ref _disposed))
            {
                var cache = new RegionThreadCache(_rentsByClass.Length);
                _registry.AddForThisThreadUnsynchronized(cache);
                t_lastCache = cache;
            }
        }
    }

    /// <summary>
    /// Parks a region in the thread's slot when the slot needs more room reserved or already holds one (which goes on
    /// to the shared cache); otherwise, or when the limits leave no room for the slot, caches it as before.
    /// </summary>
    [MethodImpl(MethodImplOptions.NoInlining)]
    private void ReturnToSlotSlow(Region region, RegionThreadCache cache)
    {
        if (!TryReserve(cache, (long)region.MappedLength))
        {
            ReturnShared(region);
            return;
        }

        Region? displaced = null;
        bool parked = false;
        bool displacedCached = false;
        bool overLimit = false;
        Volatile.Write(ref cache.InUse, 1);
        if (!_cachesClosed && (long)region.MappedLength <= cache.ReservedBytes)
        {
            displaced = cache.ParkedRegion;
            cache.Park(region.Buffer, region.ClassIndex, _clock.Epoch);
            if (displaced is not null)
            {
                // The older region is returned to the shared cache instead: it counts as that return, not as a park.
                // Cached before the slot is let go of (a trim's emptying of the slots waits for it, then finds the
                // region in the cache). Cached after, the region was in neither between the two, counted against
                // MaxBytesInUse where no trim reached it and no rent at the cap saw it on its way: a thread preempted
                // there (a 2 ms sleep put in for the test) had a rent of a region as large at a cap of the two regions
                // refused 1,528 times in 8 s, with nothing else in use; none with the region cached first.
                cache.ParksByClass[displaced.ClassIndex]--;
                displaced.ReturnedAt = _clock.Epoch;
                displacedCached = TakeOutOfUse(displaced, userReturn: true, keep: true, out overLimit);
            }

            parked = true;
        }

        Volatile.Write(ref cache.InUse, 0);
        if (!parked)
        {
            ReturnShared(region);
        }
        else if (displaced is not null)
        {
            LetGoOrKeepWithinLimits(displaced, displacedCached, overLimit);
        }
    }

    /// <summary>
    /// Makes the thread's slot room for a region of <paramref name="mappedLength"/> bytes within the cache's limits,
    /// evicting cached regions if it must; <see langword="false"/> when the limits cannot hold it at all.
    /// </summary>
    private bool TryReserve(RegionThreadCache cache, long mappedLength)
    {
        // The owner's own field: only a trim changes it meanwhile, and the park checks it again inside the handshake.
        if (Volatile.Read(ref cache.ReservedBytes) >= mappedLength)
        {
            return true;
        }

        _gate.Enter();
        bool reserved = !_disposed && _cache.TryReserve(cache.ReservedBytes == 0, mappedLength - cache.ReservedBytes);
        if (reserved)
        {
            cache.ReservedBytes = mappedLength;
        }

        bool overLimit = _cache.IsOverLimit;
        _gate.Exit();
        if (reserved && overLimit)
        {
            UnmapCached(stopWhenWithinLimits: true);
        }

        return reserved;
    }

    /// <summary>Takes a returned region into the shared cache (or unmaps it, once the tier is disposed).</summary>
    private void ReturnShared(Region region)
    {
        region.ReturnedAt = _clock.Epoch;
        ReleaseInUse(region, userReturn: true, keep: true);
    }

    /// <summary>
    /// Takes a region that counted as in use (rented, or parked in a slot) out of the in-use counts, then caches it
    /// (<paramref name="keep"/>, unless the tier is disposed) or unmaps it. Its return time is the caller's to set:
    /// a region drained from a slot keeps the time it was parked.
    /// </summary>
    private void ReleaseInUse(Region region, bool userReturn, bool keep)
    {
        bool cached = TakeOutOfUse(region, userReturn, keep, out bool overLimit);
        LetGoOrKeepWithinLimits(region, cached, overLimit);
    }

    /// <summary>
    /// <see cref="ReleaseInUse"/>'s part under the gate, which never blocks: takes the region out of the in-use counts
    /// and caches it, or (not kept, or the tier disposed) begins its release, for <see cref="LetGoOrKeepWithinLimits"/>
    /// to unmap. Returns whether it was cached; <paramref name="overLimit"/> says the cache is then past its limits.
    /// </summary>
    private bool TakeOutOfUse(Region region, bool userReturn, bool keep, out bool overLimit)
    {
        _gate.Enter();
        if (userReturn)
        {
            _returns++;
        }

        _bytesInUse -= region.Buffer.Length;
        _inUseByClass[region.ClassIndex]--;
        bool cache = keep && !_disposed;
        overLimit = false;
        if (cache)
        {
            _cache.Add(region);
            overLimit = _cache.IsOverLimit;
        }
        else
        {
            Pages.BeginRelease(region.MappedLength);
            _bytesLeaving += (long)region.MappedLength;
        }

        _gate.Exit();
        return cache;
    }

    /// <summary>
    /// <see cref="ReleaseInUse"/>'s part outside the gate: unmaps a region <see cref="TakeOutOfUse"/> did not cache
    /// (ending its release), or evicts cached regions while the cache is past its limits.
    /// </summary>
    private void LetGoOrKeepWithinLimits(Region region, bool cached, bool overLimit)
    {
        if (!cached)
        {
            Unmap(region);
        }
        else if (overLimit)
        {
            UnmapCached(stopWhenWithinLimits: true);
        }
    }

    [MethodImpl(MethodImplOptions.NoInlining)]
    private NativeMemoryManager RentMiss(int classIndex, int size)
    {
        // Each region holds a place on the list of mappings waiting out their delay from the moment it is mapped, so
        // letting it go never needs managed memory (a return past the caps lets one go, inside an owner's dispose).
        _unmaps.ReservePlace();
        Region region = MapRegion(classIndex);
        _gate.Enter();
        CountRentUnsynchronized(classIndex);
        _misses++;
        _bytesRequested += size;
        _bytesInUse += region.Buffer.Length;
        _bytesRented += region.Buffer.Length;
        _bytesAllocated += (long)region.MappedLength;
        _gate.Exit();

        return region.Buffer;
    }

    /// <summary>Maps a region of the class on the place the caller reserved for it; on any failure the place is given back or taken by the mapping.</summary>
    private Region MapRegion(int classIndex)
    {
        nint address;
        nuint mappedLength;
        PageBacking backing;
        long limitRefusals = Pages.LimitRefusals;
        try
        {
            if (!TryMap(classIndex, out address, out mappedLength, out backing))
            {
                // Cached regions of other lengths may be what the OS is missing: give them all back and try once more.
                Trim();
                if (!TryMap(classIndex, out address, out mappedLength, out backing))
                {
                    Pages.CountRefusedRent();
                    ThrowHelper.ThrowOutOfMemory(BufferLength(classIndex), _name, Pages, limitRefusals);
                }
            }
        }
        catch
        {
            _unmaps.CancelPlace();
            throw;
        }

        Pages.RecordMapped(mappedLength, backing);
        // Guarded: the buffer ends where the trailing guard page starts, so a one-byte overrun faults whatever the
        // class size (a class that is not a whole number of pages leaves its slack before the buffer instead).
        nint bufferAddress = _guardPages ? address + (nint)(mappedLength - PageAllocator.PageSize) - BufferLength(classIndex) : address;
        try
        {
            return new Region(this, Pages, classIndex, address, mappedLength, bufferAddress, BufferLength(classIndex), backing);
        }
        catch (OutOfMemoryException)
        {
            // Out of managed memory for its objects: the mapping was never handed out by this tier, but it may be one
            // let go of within its delay and taken again (DeferredUnmaps.TryTakeForReuse), which a stale Span of its old
            // holder may still write to; so it waits out a delay from now, on its place (an unmap the OS refuses waits
            // there to be tried again, and is never lost or left counted).
            _unmaps.Release(address, mappedLength, backing, _clock.Epoch, placeReserved: true);
            throw;
        }
    }

    /// <summary>Counts a rent of class <paramref name="classIndex"/> and raises the high-water marks. Caller holds the gate.</summary>
    private void CountRentUnsynchronized(int classIndex)
    {
        _rentsByClass[classIndex]++;
        int ofClass = ++_inUseByClass[classIndex];
        if (ofClass > _peakByClass[classIndex])
        {
            _peakByClass[classIndex] = ofClass;
            if (++_classPeakSum > _cache.MaxCount && _adaptive)
            {
                // A class's demand just reached a new high: keep enough regions to serve every class's high again.
                _cache.MaxCount = _classPeakSum;
            }
        }
    }

    private bool TryMap(int classIndex, out nint address, out nuint mappedLength, out PageBacking backing)
    {
        if (!_guardPages)
        {
            return TryMapRegion(classIndex, out address, out mappedLength, out backing);
        }

        var guarded = new GuardedMapping(BufferLength(classIndex));
        mappedLength = guarded.Length;

        // Guards refused (the portable backend, or the portable fallback's heap memory): the region works without
        // them. Diagnostics degrade, they never fail the rent.
        return TryMapPrepared(guarded, out address, out backing, out _);
    }

    /// <summary>
    /// Maps a new region with <paramref name="mapping"/> and prepares it; <see langword="false"/> when the map was
    /// refused, and <paramref name="prepared"/> says whether the preparation took (refused, the mapping serves
    /// unprepared). When the preparation throws, the mapping is no rent's and is let go of
    /// (<see cref="LetGoOfUnusedMapping"/>) on a place on the list of unmaps reserved before it was made, so that out of
    /// managed memory this throws with nothing mapped; the place is given back when the mapping was not let go of.
    /// </summary>
    /// <exception cref="OutOfMemoryException">No managed memory for the place: nothing was mapped.</exception>
    protected bool TryMapPrepared<TMapping>(TMapping mapping, out nint address, out PageBacking backing, out bool prepared)
        where TMapping : struct, IPreparedMapping
    {
        prepared = false;
        _unmaps.ReservePlace();
        bool placeTaken = false;
        try
        {
            if (!mapping.TryMap(Pages, out address, out backing))
            {
                return false;
            }

            try
            {
                prepared = mapping.TryPrepare(Pages, address, backing);
            }
            catch
            {
                // A custom allocator's protection or hint threw (its bug, passed to the renter).
                placeTaken = true;
                LetGoOfUnusedMapping(address, mapping.Length, backing);
                throw;
            }

            return true;
        }
        finally
        {
            if (!placeTaken)
            {
                _unmaps.CancelPlace();
            }
        }
    }

    /// <summary>
    /// Gives back a mapping made for a rent that then failed before the region was made: a custom allocator's hint or
    /// protection threw (its bug, passed to the caller). Before, the mapping was left behind, mapped and counted against
    /// <c>MaxBytesInUse</c> for the pool's life (FaultSweepSafetyTests). Through the list of unmaps: it may be a mapping
    /// let go of within its delay and taken again, which a stale <c>Span</c> may still reach, and a half-protected one is
    /// never reused. On the place <see cref="TryMapPrepared{TMapping}"/> reserved before mapping it, which it takes
    /// whatever happens, so this allocates nothing. Before, this reserved the place itself, after the mapping was made:
    /// at the GC heap limit, a list that had to grow for it threw, and the mapping stayed mapped and counted for the life
    /// of the process (UnusedMappingHeapLimitSafetyTests).
    /// </summary>
    private void LetGoOfUnusedMapping(nint address, nuint mappedLength, PageBacking backing) =>
        _unmaps.Release(address, mappedLength, backing, _clock.Epoch, placeReserved: true, listIfThrown: true);
}
