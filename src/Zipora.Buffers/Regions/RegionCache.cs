using System.Diagnostics;

namespace Zipora.Buffers;

/// <summary>
/// Returned regions kept for reuse, least recently used first out, within a count and a byte limit. A rent takes
/// the most recently returned region of its exact size class (its pages are the likeliest to be resident);
/// eviction takes the least recently returned region of any class. The limits also cover the room reserved for the
/// tier's per-thread slots (<see cref="TryReserve"/>), so regions parked on threads count against the same caps.
/// </summary>
/// <remarks>Not thread-safe: the owning tier calls it under its lock. Never allocates.</remarks>
internal sealed class RegionCache
{
    private readonly Region?[] _newestByClass;
    private readonly int[] _countByClass;
    private readonly long _maxBytes;
    private Region? _oldest;
    private Region? _newest;

    public RegionCache(int classCount, int maxCount, long maxBytes)
    {
        _newestByClass = new Region?[classCount];
        _countByClass = new int[classCount];
        MaxCount = maxCount;
        _maxBytes = maxBytes;
    }

    /// <summary>Most regions kept: fixed, or moved by the tier with the demand it sees.</summary>
    public int MaxCount { get; set; }

    public int Count { get; private set; }

    public long Bytes { get; private set; }

    /// <summary>Threads holding a slot reservation, and the bytes reserved for their slots.</summary>
    public int ReservedCount { get; private set; }

    public long ReservedBytes { get; private set; }

    public bool IsOverLimit => Count + ReservedCount > MaxCount || Bytes + ReservedBytes > _maxBytes;

    /// <summary>
    /// Reserves room for one thread's slot to grow by <paramref name="extraBytes"/> (<paramref name="newSlot"/>: the
    /// thread held no reservation), if the limits can hold it once the cached regions are evicted; the caller then
    /// evicts while <see cref="IsOverLimit"/>.
    /// </summary>
    public bool TryReserve(bool newSlot, long extraBytes)
    {
        int count = ReservedCount + (newSlot ? 1 : 0);
        long bytes = ReservedBytes + extraBytes;
        if (count > MaxCount || bytes > _maxBytes)
        {
            return false;
        }

        ReservedCount = count;
        ReservedBytes = bytes;
        return true;
    }

    /// <summary>
    /// Gives back <paramref name="bytes"/> of one thread's reservation: all of it, or, with <paramref name="keepSlot"/>,
    /// the part its slot no longer needs (the slot still holds a region).
    /// </summary>
    public void Unreserve(long bytes, bool keepSlot)
    {
        Debug.Assert(ReservedCount > 0 && ReservedBytes >= bytes, "only what was reserved is given back");
        ReservedCount -= keepSlot ? 0 : 1;
        ReservedBytes -= bytes;
    }

    /// <summary>Regions of size class <paramref name="classIndex"/> kept.</summary>
    public int CountOf(int classIndex) => _countByClass[classIndex];

    /// <summary>
    /// Takes the most recently returned region of size class <paramref name="classIndex"/>, if any. The idle release
    /// drops one cached region's pages at a time, outside the lock: when that is the newest of the class, the next
    /// newest is taken instead, so a rent still reuses a cached region (under a byte cap, mapping anew might fail).
    /// </summary>
    public Region? TakeNewest(int classIndex)
    {
        Region? region = _newestByClass[classIndex];
        if (region is not null && region.DroppingPages)
        {
            region = region.SameSizeOlder;
        }

        if (region is not null)
        {
            Unlink(region);
        }

        return region;
    }

    /// <summary>The least recently returned region, left in place.</summary>
    public Region? Oldest => _oldest;

    /// <summary>
    /// Takes the least recently returned region whose pages are not being dropped, if any: that one stays until the
    /// advice is over (the idle release then lets it go if a trim wanted it meanwhile).
    /// </summary>
    public Region? TakeOldest()
    {
        Region? region = _oldest;
        if (region is not null && region.DroppingPages)
        {
            region = region.Newer;
        }

        if (region is not null)
        {
            Unlink(region);
        }

        return region;
    }

    /// <summary>Takes <paramref name="region"/>, which is cached, out of the cache.</summary>
    public void Take(Region region)
    {
        Debug.Assert(region.IsCached, "only a cached region is taken");
        Unlink(region);
    }

    public void Add(Region region)
    {
        Debug.Assert(!region.IsCached, "a region is cached once");
        region.IsCached = true;
        region.Older = _newest;
        if (_newest is not null)
        {
            _newest.Newer = region;
        }

        _newest = region;
        _oldest ??= region;

        Region? sameSize = _newestByClass[region.ClassIndex];
        if (sameSize is not null)
        {
            sameSize.SameSizeNewer = region;
            region.SameSizeOlder = sameSize;
        }

        _newestByClass[region.ClassIndex] = region;
        _countByClass[region.ClassIndex]++;
        Count++;
        Bytes += (long)region.MappedLength;
    }

    private void Unlink(Region region)
    {
        if (region.Older is not null)
        {
            region.Older.Newer = region.Newer;
        }
        else
        {
            _oldest = region.Newer;
        }

        if (region.Newer is not null)
        {
            region.Newer.Older = region.Older;
        }
        else
        {
            _newest = region.Older;
        }

        if (region.SameSizeOlder is not null)
        {
            region.SameSizeOlder.SameSizeNewer = region.SameSizeNewer;
        }

        if (region.SameSizeNewer is not null)
        {
            region.SameSizeNewer.SameSizeOlder = region.SameSizeOlder;
        }
        else
        {
            _newestByClass[region.ClassIndex] = region.SameSizeOlder;
        }

        region.Older = region.Newer = region.SameSizeOlder = region.SameSizeNewer = null;
        region.IsCached = false;
        _countByClass[region.ClassIndex]--;
        Count--;
        Bytes -= (long)region.MappedLength;
    }
}
