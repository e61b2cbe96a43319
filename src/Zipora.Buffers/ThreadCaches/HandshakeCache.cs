using System;
using System.Threading;

namespace Zipora.Buffers;

/// <summary>
/// A per-thread cache of native memory, which a trim may only empty while its owner is out of it: the slab tiers'
/// stacks, the region tiers' slots and the segmented buffers' parked blocks. (The array pool needs no handshake: it may abandon managed arrays to the GC.)
/// </summary>
/// <remarks>
/// The owner raises <see cref="InUse"/>, then reads its tier's closed flag, and lowers <see cref="InUse"/> as it
/// leaves: two plain stores. The trim closes the tier's caches, then pays a process-wide barrier (see
/// <see cref="EmptyEach{TCache, TState}"/>): an asymmetric Dekker handshake, where the rare side pays for both.
/// </remarks>
internal abstract class HandshakeCache : ThreadOwnedCache
{
    /// <summary>1 while the owner thread is inside a rent or return that touches the cache.</summary>
    public int InUse;

    /// <summary>
    /// The trim side of the handshake, once the caller has closed its tier's caches: after the process-wide barrier
    /// every owner either sees them closed or has its <see cref="InUse"/> store visible here, so once it reads 0 that
    /// owner stays out until they open again. Each cache is then handed to <paramref name="empty"/>, under the
    /// registry's lock (the caches of exited threads are retired first).
    /// </summary>
    public static void EmptyEach<TCache, TState>(ThreadCacheRegistry<TCache> registry, TState state, Action<TCache, TState> empty)
        where TCache : HandshakeCache
    {
        Interlocked.MemoryBarrierProcessWide();
        lock (registry.Lock)
        {
            registry.RetireExitedUnsynchronized();
            foreach (TCache cache in registry.Caches)
            {
                var spinner = new SpinWait();
                while (Volatile.Read(ref cache.InUse) != 0)
                {
                    spinner.SpinOnce();
                }

                empty(cache, state);
            }
        }
    }
}
