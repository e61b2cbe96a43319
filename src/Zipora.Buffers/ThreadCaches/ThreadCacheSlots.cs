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
}
