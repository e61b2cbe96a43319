using System;
using System.Collections.Concurrent;
using System.Threading;

namespace Zipora.Buffers;

/// <summary>
/// Writes the pools' events that arise under their locks from a thread-pool work item, in order, one at a time.
/// </summary>
/// <remarks>
/// An <see cref="System.Diagnostics.Tracing.EventListener"/> runs its code on the thread that writes an event. Written
/// where it arises (a background failure under the idle ticker's lock, which every pool on a clock shares; an unmap the
/// OS refused under a slab heap's lock), a listener that waited for another thread needing that lock deadlocked the
/// pools, and one that rented from the pool on its own thread ran inside the pool's half-done work (the locks are
/// re-entrant). Only the writing moves: what is counted is counted at once, by the caller.
/// </remarks>
internal static class EventsOffTheCaller
{
    private static readonly ConcurrentQueue<Action> s_unwritten = new();

    // The work item, made with this type's statics (with the first pool, while there is room): as a static lambda at
    // the first post, its class's statics were made there, at the GC heap limit when a background failure is what is
    // posted, where a type initializer that fails throws at every later post, for good.
    private static readonly Action<object?> s_writeAll = static _ => WriteAll();

    // 1 while a work item is queued or writing s_unwritten's events: one at a time, so they keep their order.
    private static int s_writing;
    private static long s_lost;

    /// <summary>Events that could not be posted for want of managed memory.</summary>
    public static long Lost => Interlocked.Read(ref s_lost);

    /// <summary>Counts an event its poster could not post (out of managed memory).</summary>
    public static void CountLost() => Interlocked.Increment(ref s_lost);

    /// <summary>Has <paramref name="write"/> run on a thread-pool thread, after every event posted before it.</summary>
    /// <exception cref="OutOfMemoryException">The event could not be queued; nothing changed.</exception>
    public static void Post(Action write)
    {
        s_unwritten.Enqueue(write);
        if (Interlocked.Exchange(ref s_writing, 1) != 0)
        {
            return;
        }

        try
        {
            _ = ThreadPool.UnsafeQueueUserWorkItem(s_writeAll, (object?)null, preferLocal: false);
        }
        catch (OutOfMemoryException)
        {
            // The work item could not be made: left set, the flag would keep every later post from queueing one, and
            // no event would be written again. The event stays queued, written by the next post's work item.
            Volatile.Write(ref s_writing, 0);
        }
    }

    private static void WriteAll()
    {
        while (true)
        {
            while (s_unwritten.TryDequeue(out Action? write))
            {
                // Writes only to the event source, which keeps a listener's exception to itself (it is not made with
                // ThrowOnEventWriteErrors); the events' texts are built so that they cannot throw, but out of managed
                // memory an event is lost (counted) rather than thrown out of this work item, which ends the process.
                try
                {
                    write();
                }
                catch (OutOfMemoryException)
                {
                    CountLost();
                }
            }

            // An event posted after the last dequeue but before this store found the flag set and queued nothing: look
            // again, unless a new work item has taken over since. A full fence: the read of the queue below must not
            // pass the store, or that event would wait for the next one.
            _ = Interlocked.Exchange(ref s_writing, 0);
            if (s_unwritten.IsEmpty || Interlocked.Exchange(ref s_writing, 1) != 0)
            {
                return;
            }
        }
    }
}
