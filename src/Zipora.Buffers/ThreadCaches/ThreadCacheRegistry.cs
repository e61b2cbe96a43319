using System;
using System.Collections.Generic;
using System.Runtime.InteropServices;
using System.Threading;

namespace Zipora.Buffers;

/// <summary>
/// The per-thread caches of one tier or pool: finds the calling thread's, registers new ones, and hands each cache
/// of an exited thread to a retire callback, so thread churn neither strands buffers nor loses counts.
/// </summary>
/// <typeparam name="TCache">The cache type; each type has its own per-thread table.</typeparam>
internal sealed class ThreadCacheRegistry<TCache>
    where TCache : ThreadOwnedCache
{
#pragma warning disable IDE1006 // The runtime's t_ prefix for thread-statics, which the s_ rule cannot tell apart.
    // Every cache of this thread, indexed by each registry's slot: a thread-static field cannot belong to an instance,
    // so every live registry owns one index of this per-thread array (see ThreadCacheSlots).
    [ThreadStatic]
    private static TCache?[]? t_caches;
#pragma warning restore IDE1006

    // Ids start at 1, so a cache never registered (id 0) matches no registry.
    private static long s_lastId;

    private readonly List<TCache> _caches = [];
    private readonly Action<TCache> _retire;
    private readonly int _slot;

    // Set once the slot is given back: a registration racing the owner's end must not write to a slot that another
    // registry may own by now.
    private bool _released;

    /// <param name="retire">Empties the cache of an exited thread and keeps its counts; called with <see cref="Lock"/> held.</param>
    public ThreadCacheRegistry(Action<TCache> retire)
    {
        _retire = retire;

        // Last, after every field initializer's allocation: out of managed memory the registry throws holding no slot
        // (a segmented buffers' registry is made inside a buffer's dispose, where nothing may be left acquired).
        _slot = ThreadCacheSlots.Acquire();
    }

    /// <summary>
    /// What every cache of this registry carries, so an owner's fast path can tell its own caches from a thread's
    /// other ones without a reference that would keep the owner reachable from the thread.
    /// </summary>
    public long Id { get; } = Interlocked.Increment(ref s_lastId);

    /// <summary>Held while walking <see cref="Caches"/>, registering or retiring.</summary>
    /// <remarks>
    /// A monitor, not a System.Threading.Lock: a contended Lock allocates its wait event on the managed heap, and a
    /// pool's dispose takes it to empty the caches and give the slot back, where running out of managed memory must
    /// not stop it (a monitor's contention allocates nothing).
    /// </remarks>
    public object Lock { get; } = new();

    /// <summary>
    /// Whether any cache is registered, read without the lock: a cache registered meanwhile is seen at the next look.
    /// An idle pool's timer uses it to skip its work when no thread ever cached anything.
    /// </summary>
    public bool MayHaveCaches => _caches.Count > 0;

    /// <summary>The registered caches. Caller holds <see cref="Lock"/>.</summary>
    public ReadOnlySpan<TCache> Caches => CollectionsMarshal.AsSpan(_caches);

    /// <summary>The calling thread's cache, or <see langword="null"/> when it has not registered one.</summary>
    public TCache? FindForThisThread()
    {
        TCache?[]? caches = t_caches;
        int slot = _slot;
        return caches is not null && (uint)slot < (uint)caches.Length && caches[slot] is { } cache && cache.RegistryId == Id
            ? cache
            : null;
    }

    /// <summary>Retires the caches of exited threads, then registers <paramref name="cache"/> as the calling thread's. Caller holds <see cref="Lock"/>.</summary>
    /// <remarks>
    /// Everything it allocates (the thread's table, the list's room) is made before the cache is registered: out of
    /// managed memory it throws with nothing registered, never with a cache counted that its thread cannot find.
    /// </remarks>
    public void AddForThisThreadUnsynchronized(TCache cache)
    {
        RetireExitedUnsynchronized();

        // Not published once released (counted and emptied with the others): the slot may be another registry's now.
        TCache?[]? caches = null;
        if (!_released)
        {
            caches = t_caches;
            if (caches is null || caches.Length <= _slot)
            {
                Array.Resize(ref caches, Math.Max(_slot + 1, (caches?.Length ?? 2) * 2));
                t_caches = caches;
            }
        }

        cache.RegistryId = Id;
        _caches.Add(cache);
        if (caches is not null)
        {
            caches[_slot] = cache;
        }
    }

    /// <summary>Hands every cache whose thread has exited to the retire callback and forgets it. Caller holds <see cref="Lock"/>.</summary>
    public void RetireExitedUnsynchronized()
    {
        for (int i = _caches.Count - 1; i >= 0; i--)
        {
            if (ThreadLiveness.HasExited(_caches[i].Owner))
            {
                _retire(_caches[i]);
                _caches.RemoveAt(i);
            }
        }
    }

    /// <summary>Gives the slot back for a later registry, once the owner is disposed; the caches stay until their threads drop them.</summary>
    public void ReleaseSlot()
    {
        lock (Lock)
        {
            if (_released)
            {
                return;
            }

            _released = true;
        }

        ThreadCacheSlots.Release(_slot);
    }
}
