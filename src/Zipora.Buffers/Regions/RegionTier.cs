using System;
using System.Collections.Generic;
using System.Runtime.CompilerServices;
using System.Threading;
using Zipora.Buffers.Native;

namespace Zipora.Buffers;

/// <summary>
/// A tier that maps one region per buffer (large and huge): a rent reuses a cached region of the same length or
/// maps a new one; a return caches the region and unmaps the least recently used ones beyond the cache's limits.
/// </summary>
/// <remarks>
/// Regions are big enough that the OS cost of a miss (mmap plus first-touch faults, microseconds to milliseconds)
/// dwarfs one uncontended lock, so the cache sits behind a single short lock. No system call runs under it:
/// mapping and unmapping happen outside.
/// </remarks>
internal abstract class RegionTier : BufferTier
{
    private SpinGate _gate;
    private readonly RegionCache _cache;
    private readonly string _name;
    private long _hits;
    private long _misses;
    private long _returns;
    private long _bytesInUse;
    private long _bytesRented;
    private long _bytesRequested;
    private long _bytesAllocated;
    private long _bytesEvicted;
    private bool _disposed;

    private readonly IdleClock _clock;
    private readonly LeakQuarantine _quarantine;
    private readonly DeferredUnmaps _unmaps;

    private readonly bool _guardPages;

    // Demand, under the gate: buffers in use now and the most in use at once in this window and the last (a window
    // is one idle delay), per class and over the tier. They feed the size histogram and, when adaptive, the cache's
    // count limit, which follows the recent high-water mark instead of a fixed number.
    private readonly bool _adaptive;
    private readonly int _configuredMaxCount;
    private readonly long[] _rentsByClass;
    private readonly int[] _inUseByClass;
    private readonly int[] _peakByClass;
    private readonly int[] _lastPeakByClass;
    private int _inUse;
    private int _peak;
    private long _windowStart;

    protected RegionTier(string name, PageSource pages, IdleClock clock, LeakQuarantine quarantine, DeferredUnmaps unmaps, bool guardPages, int classCount, int cacheMaxCount, long cacheMaxBytes, bool adaptive)
    {
        _adaptive = adaptive;
        _configuredMaxCount = cacheMaxCount;
        _rentsByClass = new long[classCount];
        _inUseByClass = new int[classCount];
        _peakByClass = new int[classCount];
        _lastPeakByClass = new int[classCount];
        _guardPages = guardPages;
        _quarantine = quarantine;
        _unmaps = unmaps;
        _name = name;
        Pages = pages;
        _clock = clock;
        _cache = new RegionCache(classCount, cacheMaxCount, cacheMaxBytes);
    }

    protected PageSource Pages { get; }

    public NativeMemoryManager Rent(int size)
    {
        int classIndex = ClassIndex(size);
        _gate.Enter();
        if (_disposed)
        {
            _gate.Exit();
            ThrowHelper.ThrowPoolDisposed();
        }

        Region? region = _cache.TakeNewest(classIndex);
        if (region is not null)
        {
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

    /// <summary>Takes a region back from its owner.</summary>
    public void Return(Region region)
    {
        _gate.Enter();
        _returns++;
        _bytesInUse -= region.Buffer.Length;
        _inUseByClass[region.ClassIndex]--;
        _inUse--;
        bool disposed = _disposed;
        bool overLimit = false;
        if (!disposed)
        {
            region.ReturnedAt = _clock.Epoch;
            _cache.Add(region);
            overLimit = _cache.IsOverLimit;
        }

        _gate.Exit();
        if (disposed)
        {
            region.ReturnedAt = _clock.Epoch;
            Unmap(region);
        }
        else if (overLimit)
        {
            UnmapCached(stopWhenWithinLimits: true);
        }
    }

    /// <summary>Takes a leaked region back after its quarantine.</summary>
    public void Reclaim(Region region) => _quarantine.Add(region.Buffer, region, _name);

    public override TierStatistics GetStatistics()
    {
        _gate.Enter();
        var statistics = new TierStatistics
        {
            Name = _name,
            Rents = _hits + _misses,
            Returns = _returns,
            CacheHits = _hits,
            CacheMisses = _misses,
            BytesInUse = _bytesInUse,
            BytesRetained = _cache.Bytes,
            BytesRented = _bytesRented,
            BytesRequested = _bytesRequested,
            BytesAllocated = _bytesAllocated,
            BytesEvicted = Volatile.Read(ref _bytesEvicted),
        };
        _gate.Exit();
        return statistics;
    }

    public override void Trim() => UnmapCached(stopWhenWithinLimits: false);

    /// <summary>
    /// Starts a new demand window once per delay (shrinking an adaptive cache to the demand of the last two), then
    /// unmaps, oldest first, the cached regions returned a full delay ago.
    /// </summary>
    public override void ReleaseIdle(long now, long delayInTicks)
    {
        // Only the idle releaser's timer calls this, one tick at a time.
        if (now - _windowStart >= delayInTicks)
        {
            _windowStart = now;
            _gate.Enter();
            int lastPeak = _peak;
            _peak = _inUse;
            for (int classIndex = 0; classIndex < _peakByClass.Length; classIndex++)
            {
                _lastPeakByClass[classIndex] = _peakByClass[classIndex];
                _peakByClass[classIndex] = _inUseByClass[classIndex];
            }

            if (_adaptive)
            {
                _cache.MaxCount = Math.Max(_configuredMaxCount, lastPeak);
            }

            _gate.Exit();
            UnmapCached(stopWhenWithinLimits: true);
        }

        while (true)
        {
            _gate.Enter();
            Region? oldest = _cache.Oldest;
            Region? victim = oldest is not null && _clock.HasWaitedOutDelay(oldest.ReturnedAt) ? _cache.TakeOldest() : null;
            _gate.Exit();
            if (victim is null)
            {
                return;
            }

            Unmap(victim);
        }
    }

    /// <summary>Adds a histogram row for every class rented so far.</summary>
    public void AddClassStatistics(List<SizeClassStatistics> into)
    {
        const int Columns = 4;
        long[] snapshot = new long[_rentsByClass.Length * Columns];
        _gate.Enter();
        for (int classIndex = 0; classIndex < _rentsByClass.Length; classIndex++)
        {
            int at = classIndex * Columns;
            snapshot[at] = _rentsByClass[classIndex];
            snapshot[at + 1] = _inUseByClass[classIndex];
            snapshot[at + 2] = Math.Max(_peakByClass[classIndex], _lastPeakByClass[classIndex]);
            snapshot[at + 3] = _cache.CountOf(classIndex);
        }

        _gate.Exit();
        for (int classIndex = 0; classIndex < _rentsByClass.Length; classIndex++)
        {
            int at = classIndex * Columns;
            if (snapshot[at] > 0)
            {
                into.Add(new SizeClassStatistics
                {
                    Tier = _name,
                    ClassSize = BufferLength(classIndex),
                    Rents = snapshot[at],
                    BuffersInUse = snapshot[at + 1],
                    HighWaterMark = snapshot[at + 2],
                    Cached = snapshot[at + 3],
                });
            }
        }
    }

    public override void Dispose()
    {
        _gate.Enter();
        _disposed = true;
        _gate.Exit();

        UnmapCached(stopWhenWithinLimits: false);
    }

    /// <summary>The size class of a request of <paramref name="size"/> bytes.</summary>
    protected abstract int ClassIndex(int size);

    /// <summary>The length of the buffer handed out for size class <paramref name="classIndex"/>.</summary>
    protected abstract int BufferLength(int classIndex);

    /// <summary>Maps a new region for size class <paramref name="classIndex"/>, falling back as the tier sees fit; <see langword="false"/> when the OS has no memory.</summary>
    /// <param name="classIndex">The size class to map.</param>
    /// <param name="address">Start of the mapping.</param>
    /// <param name="mappedLength">Bytes mapped: the class size rounded up to the page size of the backing.</param>
    /// <param name="backing">What the mapping ended up backed by.</param>
    protected abstract bool TryMapRegion(int classIndex, out nint address, out nuint mappedLength, out PageBacking backing);

    [MethodImpl(MethodImplOptions.NoInlining)]
    private NativeMemoryManager RentMiss(int classIndex, int size)
    {
        if (!TryMap(classIndex, out nint address, out nuint mappedLength, out PageBacking backing))
        {
            // Cached regions of other lengths may be what the OS is missing: give them all back and try once more.
            UnmapCached(stopWhenWithinLimits: false);
            if (!TryMap(classIndex, out address, out mappedLength, out backing))
            {
                ThrowHelper.ThrowOutOfMemory(BufferLength(classIndex), _name, Pages);
            }
        }

        Pages.RecordMapped(mappedLength, backing);
        nint bufferAddress = _guardPages ? address + (nint)PageAllocator.PageSize : address;
        var region = new Region(this, Pages, classIndex, address, mappedLength, bufferAddress, BufferLength(classIndex), backing);
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

    /// <summary>Counts a rent of class <paramref name="classIndex"/> and raises the high-water marks. Caller holds the gate.</summary>
    private void CountRentUnsynchronized(int classIndex)
    {
        _rentsByClass[classIndex]++;
        int ofClass = ++_inUseByClass[classIndex];
        if (ofClass > _peakByClass[classIndex])
        {
            _peakByClass[classIndex] = ofClass;
        }

        if (++_inUse > _peak)
        {
            _peak = _inUse;
            if (_adaptive && _peak > _cache.MaxCount)
            {
                // The demand just reached a new high: keep enough regions to serve it again.
                _cache.MaxCount = _peak;
            }
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
    /// Lets a region go: its manager throws from now on, and the mapping is unmapped at once only if it was returned a
    /// full delay ago (otherwise its pages are dropped now and the unmap waits, see <see cref="DeferredUnmaps"/>).
    /// </summary>
    private void Unmap(Region region)
    {
        region.Buffer.MarkReleased();
        _unmaps.Release(region.MappingAddress, region.MappedLength, region.Backing, region.ReturnedAt);
        Interlocked.Add(ref _bytesEvicted, (long)region.MappedLength);
    }

    private bool TryMap(int classIndex, out nint address, out nuint mappedLength, out PageBacking backing) => _guardPages
        ? TryMapGuarded(classIndex, out address, out mappedLength, out backing)
        : TryMapRegion(classIndex, out address, out mappedLength, out backing);

    /// <summary>
    /// Diagnostic mode: base pages with an inaccessible page on each side, the buffer ending right at the second,
    /// so a write one byte before or past the buffer faults at once instead of corrupting a neighbour. Class sizes
    /// of these tiers are whole pages, so nothing lies between the buffer and its guards.
    /// </summary>
    private bool TryMapGuarded(int classIndex, out nint address, out nuint mappedLength, out PageBacking backing)
    {
        nuint page = PageAllocator.PageSize;
        mappedLength = PageSource.RoundUp((nuint)BufferLength(classIndex), page) + (2 * page);
        if (!Pages.TryMapPlain(mappedLength, page, out address, out backing))
        {
            return false;
        }

        // A backend that cannot protect pages (the portable one) still works, without guards.
        _ = Pages.TryProtect(address, page, PageProtection.None);
        _ = Pages.TryProtect(address + (nint)(mappedLength - page), page, PageProtection.None);
        return true;
    }
}
