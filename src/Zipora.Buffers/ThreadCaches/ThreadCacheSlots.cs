using System.Collections.Generic;
using System.Threading;

namespace Zipora.Buffers;

/// <summary>
/// Hands each live <see cref="ThreadCacheRegistry{TCache}"/> an index into its thread-static array of thread caches.
/// Indexes of disposed registries are reused, so a process that creates and disposes many pools keeps the per-thread
/// arrays small.
/// </summary>
internal static class ThreadCacheSlots
{
    private static readonly Lock s_lock = new();
    private static readonly Stack<int> s_free = new();
    private static int s_next;

    public static int Acquire()
    {
        lock (s_lock)
        {
            return s_free.Count > 0 ? s_free.Pop() : s_next++;
        }
    }

    public static void Release(int slot)
    {
        lock (s_lock)
        {
            s_free.Push(slot);
        }
    }

    /// <summary>
    /// The trimming side of the slab tiers' thread-cache handshake: spins until the owner of a closed cache has left
    /// its rent or return. Call after the process-wide barrier that follows closing the cache. (The array pool needs
    /// no handshake: it may abandon managed arrays to the GC.)
    /// </summary>
    public static void WaitUntilLeft(ref int inUse)
    {
        var spinner = new SpinWait();
        while (Volatile.Read(ref inUse) != 0)
        {
            spinner.SpinOnce();
        }
    }
}
