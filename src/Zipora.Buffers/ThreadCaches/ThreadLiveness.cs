using System.Threading;

namespace Zipora.Buffers;

/// <summary>Whether a thread that owned a cache or a spare has exited, asked safely from a finalizer's work too.</summary>
internal static class ThreadLiveness
{
    /// <summary>
    /// Whether <paramref name="thread"/> has exited. <see cref="Thread.IsAlive"/> throws
    /// <see cref="ThreadStateException"/> for a thread object the runtime already finalized: that happens when the
    /// only references to it were in a dropped pool's caches, and the collection that found the pool unreachable
    /// finalized the thread object too, before the pool's own finalizer work reached its caches. Such a thread has exited.
    /// </summary>
    public static bool HasExited(Thread thread)
    {
        try
        {
            return !thread.IsAlive;
        }
        catch (ThreadStateException)
        {
            return true;
        }
    }
}
