using System;
using System.Collections.Generic;
using System.Threading;

namespace Zipora.Buffers;

/// <summary>
/// Hands each live medium tier and array pool an index into its thread-static array of thread caches, and installs
/// caches there. Indexes of disposed pools are reused, so a process that creates and disposes many pools keeps the
/// per-thread arrays small.
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

    /// <summary>Puts <paramref name="cache"/> at <paramref name="slot"/> of a thread's table, growing the table if needed; returns the table to store back.</summary>
    public static T?[] Install<T>(T?[]? table, int slot, T cache)
        where T : class
    {
        if (table is null || table.Length <= slot)
        {
            Array.Resize(ref table, Math.Max(slot + 1, (table?.Length ?? 2) * 2));
        }

        table[slot] = cache;
        return table;
    }

    /// <summary>
    /// The trimming side of the medium tier's thread-cache handshake: spins until the owner of a closed cache has left
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
