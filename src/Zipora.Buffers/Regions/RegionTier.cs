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
/// dwarfs one uncontended lock, so the cache sits behind a single lock. Unmapping happens outside it.
/// </remarks>
internal abstract class RegionTier : BufferTier
{
    private readonly Lock _lock = new();
    private readonly RegionCache _cache;
    private readonly string _name;
    private long _hits;
    private long _misses;
    private long _returns;
    private long _bytesInUse;
    private bool _disposed;

    protected RegionTier(string name, PageSource pages, int cacheMaxCount, long cacheMaxBytes)
    {
        _name = name;
        Pages = pages;
        _cache = new RegionCache(cacheMaxCount, cacheMaxBytes);
    }

    protected PageSource Pages { get; }

    public NativeMemoryManager Rent(int size)
    {
        nuint mappedLength = MappedLength(size);
        Region? region;
        lock (_lock)
        {
            if (_disposed)
            {
                ThrowHelper.ThrowPoolDisposed();
            }

            region = _cache.TakeNewest(mappedLength);
            if (region is not null)
            {
                _hits++;
                _bytesInUse += region.Buffer.Length;
            }
        }

        if (region is null)
        {
            return RentMiss(size, mappedLength);
        }

        region.Buffer.Reactivate();
        return region.Buffer;
    }

    /// <summary>Takes a region back from its owner.</summary>
    public void Return(Region region)
    {
        bool unmapNow;
        lock (_lock)
        {
            _returns++;
            _bytesInUse -= region.Buffer.Length;
            unmapNow = _disposed;
            if (!unmapNow)
            {
                _cache.Add(region);
            }
        }

        if (unmapNow)
        {
            Unmap(region);
            return;
        }

        UnmapCached(stopWhenWithinLimits: true);
    }

    public override TierStatistics GetStatistics()
    {
        lock (_lock)
        {
            return new TierStatistics
            {
                Name = _name,
                Rents = _hits + _misses,
                Returns = _returns,
                CacheHits = _hits,
                CacheMisses = _misses,
                BytesInUse = _bytesInUse,
                BytesRetained = _cache.Bytes,
            };
        }
    }

    public override void Dispose()
    {
        lock (_lock)
        {
            _disposed = true;
        }

        UnmapCached(stopWhenWithinLimits: false);
    }

    /// <summary>The bytes to map for a request of <paramref name="size"/>: its class size rounded to whole pages.</summary>
    protected abstract nuint MappedLength(int size);

    /// <summary>The length of the buffer handed out for a request of <paramref name="size"/> mapped as <paramref name="mappedLength"/>.</summary>
    protected abstract int BufferLength(int size, nuint mappedLength);

    /// <summary>Maps a new region, falling back as the tier sees fit; <see langword="false"/> when the OS has no memory.</summary>
    protected abstract bool TryMapRegion(nuint mappedLength, out nint address, out PageBacking backing);

    [MethodImpl(MethodImplOptions.NoInlining)]
    private NativeMemoryManager RentMiss(int size, nuint mappedLength)
    {
        if (!TryMapRegion(mappedLength, out nint address, out PageBacking backing))
        {
            // Cached regions of other lengths may be what the OS is missing: give them all back and try once more.
            UnmapCached(stopWhenWithinLimits: false);
            if (!TryMapRegion(mappedLength, out address, out backing))
            {
                ThrowHelper.ThrowOutOfMemory((long)mappedLength, _name);
            }
        }

        Pages.RecordMapped(mappedLength, backing);
        var region = new Region(this, address, mappedLength, BufferLength(size, mappedLength), backing);
        lock (_lock)
        {
            _misses++;
            _bytesInUse += region.Buffer.Length;
        }

        return region.Buffer;
    }

    private void UnmapCached(bool stopWhenWithinLimits)
    {
        while (true)
        {
            Region? victim;
            lock (_lock)
            {
                if (stopWhenWithinLimits && !_cache.IsOverLimit)
                {
                    return;
                }

                victim = _cache.TakeOldest();
            }

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
        Pages.Unmap(region.Address, region.MappedLength, region.Backing);
    }
}
