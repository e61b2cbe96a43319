using System;
using System.Runtime.CompilerServices;
using System.Threading;
using Zipora.Buffers.Native;

namespace Zipora.Buffers;

/// <summary>
/// A tier that maps one region per buffer (large and huge): a rent takes the region the thread returned last, or
/// reuses a cached region of the same length, or maps a new one; a return parks the region in the thread's slot or
/// caches it, and the least recently used ones beyond the cache's limits are unmapped.
/// </summary>
/// <remarks>
/// <para>
/// Steady traffic of one size never leaves the thread: each thread keeps one returned region in a slot
/// (<see cref="RegionThreadCache"/>), behind the medium tier's handshake (two plain stores), with its counts folded
/// when the statistics are read. Everything else goes to the shared cache, behind a single short lock: regions are big
/// enough that the OS cost of a miss (mmap plus first-touch faults, microseconds to milliseconds) dwarfs it. No
/// system call runs under the lock.
/// </para>
/// <para>
/// The tier is split by role: this file holds the state and the fast paths, <c>RegionTier.Shared.cs</c> the shared
/// cache and the mapping, <c>RegionTier.Trimming.cs</c> trims, idle release and disposal,
/// <c>RegionTier.Statistics.cs</c> the counts.
/// </para>
/// </remarks>
internal abstract partial class RegionTier : BufferTier
{
#pragma warning disable IDE1006 // The runtime's t_ prefix for thread-statics, which the s_ rule cannot tell apart.
    // The slot this thread used last, of either region tier: a thread's steady traffic of one size stays in one tier,
    // so the fast path is one thread-static read and one compare (the registry's lookup is the fallback).
    [ThreadStatic]
    private static RegionThreadCache? t_lastCache;
#pragma warning restore IDE1006

    private SpinGate _gate;
    private readonly RegionCache _cache;
    private readonly string _name;
    private readonly int _minSizeLog2;
    private bool _disposed;

    private readonly IdleClock _clock;
    private readonly LeakQuarantine _quarantine;
    private readonly DeferredUnmaps _unmaps;
    private readonly bool _guardPages;
    private readonly ThreadCacheRegistry<RegionThreadCache> _registry;

    // The registry's id, which this tier's slots carry: read from the tier, the fast path's compare costs one load.
    private readonly long _cacheId;

    // Closed while a trim, the idle release or disposal empties the slots (for good once disposed): threads then
    // bypass their slots and use the shared cache, so the emptying thread can take parked regions without racing.
    private volatile bool _cachesClosed;

    // minSizeLog2: the log2 of the size above which the tier's quarter-step classes start.
    protected RegionTier(string name, PageSource pages, IdleClock clock, LeakQuarantine quarantine, DeferredUnmaps unmaps, bool guardPages, int minSizeLog2, int classCount, int cacheMaxCount, long cacheMaxBytes, bool adaptive)
    {
        _adaptive = adaptive;
        _countEvicted = length => Interlocked.Add(ref _bytesEvicted, length);
        _configuredMaxCount = cacheMaxCount;
        _minSizeLog2 = minSizeLog2;
        _rentsByClass = new long[classCount];
        _inUseByClass = new int[classCount];
        _peakByClass = new int[classCount];
        _lastPeakByClass = new int[classCount];
        _retiredHitsByClass = new long[classCount];
        _slotsForCaps = new SlotCounts(classCount);
        _guardPages = guardPages;
        _quarantine = quarantine;
        _unmaps = unmaps;
        _name = name;
        Pages = pages;
        _clock = clock;
        _cache = new RegionCache(classCount, cacheMaxCount, cacheMaxBytes);
        _registry = new ThreadCacheRegistry<RegionThreadCache>(RetireUnsynchronized);
        _cacheId = _registry.Id;
    }

    protected PageSource Pages { get; }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public NativeMemoryManager Rent(int size)
    {
        int classIndex = ClassIndex(size);
        RegionThreadCache? cache = FindThreadCache();
        if (cache is not null)
        {
            // The closed flag first, as the handshake has it: its read (volatile) keeps the slot's reads after it.
            Volatile.Write(ref cache.InUse, 1);
            NativeMemoryManager? parked = _cachesClosed ? null : cache.ParkedBuffer;
            if (parked is not null && cache.ParkedClassIndex == classIndex)
            {
                // No hit counter: a slot's hits are its parks less what left it otherwise (see RegionThreadCache).
                cache.ParkedBuffer = null;
                cache.RequestedBytes += size;
                Volatile.Write(ref cache.InUse, 0);
                parked.Reactivate();
                return parked;
            }

            Volatile.Write(ref cache.InUse, 0);
        }

        return RentShared(classIndex, size, cache);
    }

    /// <summary>Takes a region back from its owner, on whatever thread disposed it; <paramref name="buffer"/> is its buffer.</summary>
    public void Return(Region region, NativeMemoryManager buffer)
    {
        RegionThreadCache? cache;
        try
        {
            // A thread's first touch of the tier's thread-statics is the runtime's allocation of them (224 bytes
            // measured): out of managed memory it throws, after the owner marked the block returned. The shared cache
            // takes the region without them, and allocates nothing.
            cache = FindThreadCache();
        }
        catch (OutOfMemoryException)
        {
            ReturnShared(region);
            return;
        }

        if (cache is not null)
        {
            Volatile.Write(ref cache.InUse, 1);
            if (!_cachesClosed && cache.ParkedBuffer is null && (long)region.MappedLength <= cache.ReservedBytes)
            {
                // The region's own return time is written when it leaves the slot unrented (see EmptySlotUnsynchronized):
                // until then the slot's park time is its return time, and the fast path touches one object less.
                cache.Park(buffer, region.ClassIndex, _clock.Epoch);
                Volatile.Write(ref cache.InUse, 0);
                return;
            }

            Volatile.Write(ref cache.InUse, 0);
            ReturnToSlotSlow(region, cache);
            return;
        }

        ReturnShared(region);
    }

    /// <summary>Takes a leaked region back after its quarantine.</summary>
    public void Reclaim(Region region) => _quarantine.Add(region.Buffer, region, _name);

    /// <summary>The length of the buffer handed out for size class <paramref name="classIndex"/>.</summary>
    protected abstract int BufferLength(int classIndex);

    /// <summary>Maps a new region for size class <paramref name="classIndex"/>, falling back as the tier sees fit; <see langword="false"/> when the OS has no memory.</summary>
    /// <param name="classIndex">The size class to map.</param>
    /// <param name="address">Start of the mapping.</param>
    /// <param name="mappedLength">Bytes mapped: the class size rounded up to the page size of the backing.</param>
    /// <param name="backing">What the mapping ended up backed by.</param>
    protected abstract bool TryMapRegion(int classIndex, out nint address, out nuint mappedLength, out PageBacking backing);

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private RegionThreadCache? FindThreadCache()
    {
        RegionThreadCache? cache = t_lastCache;
        return cache is not null && cache.RegistryId == _cacheId ? cache : FindThreadCacheSlow();
    }

    [MethodImpl(MethodImplOptions.NoInlining)]
    private RegionThreadCache? FindThreadCacheSlow()
    {
        RegionThreadCache? cache = _registry.FindForThisThread();
        if (cache is not null)
        {
            t_lastCache = cache;
        }

        return cache;
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private int ClassIndex(int size) => SizeClasses.QuarterStepIndex(size, _minSizeLog2);
}
