using System;

namespace Zipora.Buffers;

/// <summary>
/// Hands each live <see cref="ThreadCacheRegistry{TCache}"/> an index into its thread-static array of thread caches.
/// The lowest free index goes first, so a thread's array is as long as the highest index live now, not the highest
/// ever: after a burst of pools is disposed, the next pool's slots are low again and a new thread's first rent makes a
/// short array.
/// </summary>
internal static class ThreadCacheSlots
{
    // A monitor, not a System.Threading.Lock: a contended Lock allocates its wait event on the managed heap, and a slot
    // is given back inside a pool's dispose, where running out of managed memory must not stop it.
    private static readonly object s_lock = new();

    // Which indexes below s_next are held; room for each is made as it is first handed out, so giving one back allocates nothing.
    private static bool[] s_taken = new bool[16];
    private static int s_next;

    // No index below this is free: the search starts here.
    private static int s_lowestFree;

    public static int Acquire()
    {
        lock (s_lock)
        {
            // Registries are made with their pools, rarely, and only indexes of live ones stand in the way.
            for (int slot = s_lowestFree; slot < s_next; slot++)
            {
                if (!s_taken[slot])
                {
                    return Take(slot);
                }
            }

            if (s_next == s_taken.Length)
            {
                Array.Resize(ref s_taken, s_next * 2);
            }

            return Take(s_next++);
        }
    }

    public static void Release(int slot)
    {
        lock (s_lock)
        {
            s_taken[slot] = false;
            s_lowestFree = Math.Min(s_lowestFree, slot);
        }
    }

    private static int Take(int slot)
    {
        s_taken[slot] = true;
        s_lowestFree = slot + 1;
        return slot;
    }
}
