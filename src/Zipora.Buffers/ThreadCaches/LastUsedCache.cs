using System;
using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;

namespace Zipora.Buffers;

/// <summary>
/// The cache a thread used last, reached from a fast path through a thread-static address rather than a thread-static
/// reference: a thread's first read of a reference thread-static is the runtime's allocation of the thread's storage
/// for them (136 bytes, measured), which throws at the GC heap limit, while one of an address allocates no managed
/// memory. So a return, which must never throw, reads it without a handler (the handler's call cost a rent+return
/// 0.3-1 ns of 12, section 36 of perf/RESULTS.md), and the address is read inline where the reference took a call
/// into the runtime's TLS resolver: a rent+write+return of the array pool went from 7.3 to 5.9 ns (section 43).
/// The address is a weak handle's, owned by an object held in a reference thread-static (set on the slow path, which
/// may allocate), which also holds the cache: so the cache lives as long as its thread, as a reference thread-static
/// kept it, and the handle roots nothing (an unloadable assembly's caches still go with it). That object dies with its
/// thread, and its finalizer frees the handle then, when no code of that thread can read the address again.
/// </summary>
/// <typeparam name="TCache">The cache type.</typeparam>
internal sealed class LastUsedCache<TCache>
    where TCache : class
{
#pragma warning disable IDE1006 // The runtime's t_ prefix for thread-statics, which the s_ rule cannot tell apart.
    // The handle's address, or 0 before the thread's first cache: not a reference, so its first read allocates nothing.
    [ThreadStatic]
    private static nint t_address;

    // What holds the cache and frees the handle once its thread is gone: it lives exactly as long as the thread.
    [ThreadStatic]
    private static LastUsedCache<TCache>? t_owner;
#pragma warning restore IDE1006

    private GCHandle _handle;

    // The cache the handle points to, kept alive by this object as long as the thread holds it.
    private TCache _cache;

    private LastUsedCache(TCache cache)
    {
        _cache = cache;
        _handle = GCHandle.Alloc(cache, GCHandleType.Weak);
    }

    ~LastUsedCache()
    {
        // The constructor may have thrown (no handle table room) after the object was made.
        if (_handle.IsAllocated)
        {
            _handle.Free();
        }
    }

    /// <summary>The calling thread's last cache, or <see langword="null"/>; never allocates, never throws.</summary>
    public static unsafe TCache? Current
    {
        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        get
        {
            nint address = t_address;

            // A handle's address is its slot, which the GC keeps pointing at the cache wherever it moves it (the cache
            // is alive: the thread's owner of the handle holds it).
            return address == 0 ? null : Unsafe.As<TCache>(Unsafe.AsRef<object>((void*)address));
        }
    }

    /// <summary>Makes <paramref name="cache"/> the calling thread's last cache. Slow path: its first call per thread allocates, and may throw for want of memory, leaving nothing set.</summary>
    public static void Set(TCache cache)
    {
        if (t_address != 0 && t_owner is { } owner)
        {
            if (ReferenceEquals(owner._cache, cache))
            {
                return;
            }

            // The strong reference first: the handle never points to a cache nothing holds.
            owner._cache = cache;
            owner._handle.Target = cache;
            return;
        }

        owner = new LastUsedCache<TCache>(cache);
        t_owner = owner;
        t_address = GCHandle.ToIntPtr(owner._handle);
    }
}
