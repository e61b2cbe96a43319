using System.Collections.Generic;

namespace Zipora.Buffers;

/// <summary>
/// Hands each live <see cref="ThreadCacheRegistry{TCache}"/> an index into its thread-static array of thread caches.
/// Indexes of disposed registries are reused, so a process that creates and disposes many pools keeps the per-thread
/// arrays small.
/// </summary>
internal static class ThreadCacheSlots
{
    // A monitor, not a System.Threading.Lock: a contended Lock allocates its wait event on the managed heap, and a slot
    // is given back inside a pool's dispose, where running out of managed memory must not stop it.
    private static readonly object s_lock = new();
    private static readonly Stack<int> s_free = new();
    private static int s_next;

    public static int Acquire()
    {
        lock (s_lock)
        {
            if (s_free.Count > 0)
            {
                return s_free.Pop();
            }

            // Room on the free list for every slot handed out, made as each is: giving one back then allocates nothing.
            s_free.EnsureCapacity(s_next + 1);
            return s_next++;
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
