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
    private long _bytesAllocated;
    private long _bytesEvicted;
    private bool _disposed;

    private readonly IdleClock _clock;
    private readonly LeakQuarantine _quarantine;

    private readonly bool _guardPages;

    protected RegionTier(string name, PageSource pages, IdleClock clock, LeakQuarantine quarantine, bool guardPages, int classCount, int cacheMaxCount, long cacheMaxBytes)
    {
        _guardPages = guardPages;
        _quarantine = quarantine;
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
            _hits++;
            _bytesInUse += region.Buffer.Length;
            _bytesRented += region.Buffer.Length;
        }

        _gate.Exit();

        if (region is null)
        {
            return RentMiss(classIndex);
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
            BytesAllocated = _bytesAllocated,
            BytesEvicted = Volatile.Read(ref _bytesEvicted),
        };
        _gate.Exit();
        return statistics;
    }

    public override void Trim() => UnmapCached(stopWhenWithinLimits: false);

    /// <summary>Unmaps, oldest first, the cached regions returned at least <paramref name="delayInTicks"/> ticks ago.</summary>
    public override void ReleaseIdle(long now, long delayInTicks)
    {
        while (true)
        {
            _gate.Enter();
            Region? oldest = _cache.Oldest;
            Region? victim = oldest is not null && now - oldest.ReturnedAt >= delayInTicks ? _cache.TakeOldest() : null;
            _gate.Exit();
            if (victim is null)
            {
                return;
            }

            Unmap(victim);
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
    private NativeMemoryManager RentMiss(int classIndex)
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
        _misses++;
        _bytesInUse += region.Buffer.Length;
        _bytesRented += region.Buffer.Length;
        _bytesAllocated += (long)region.MappedLength;
        _gate.Exit();

        return region.Buffer;
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

    private void Unmap(Region region)
    {
        region.Buffer.MarkReleased();
        Pages.Unmap(region.MappingAddress, region.MappedLength, region.Backing);
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
