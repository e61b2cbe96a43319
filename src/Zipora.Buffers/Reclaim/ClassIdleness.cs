using System.Threading;

namespace Zipora.Buffers;

/// <summary>
/// Judges each size class idle on its own: a class that saw no rent or return for the whole delay (see
/// <see cref="IdleClock.QuietLongEnough"/>) and still holds free buffers is due to be given back, once, until it is
/// used again. It also dates each class's last activity, so a
/// trim knows whether the free blocks it collected were returned a full delay ago.
/// </summary>
/// <remarks>The idle releaser's timer writes it one tick at a time; trims on other threads read it under the lock.</remarks>
internal sealed class ClassIdleness(int classCount, IdleClock clock)
{
    private readonly Lock _lock = new();
    private readonly long[] _activity = new long[classCount];
    private readonly long[] _lastActive = new long[classCount];
    private readonly bool[] _lastActiveCounted = new bool[classCount];
    private readonly bool[] _released = new bool[classCount];

    /// <summary>
    /// Records each class's activity at tick <paramref name="now"/>; sets in <paramref name="idle"/> the classes due to
    /// be given back, and clears the rest; returns whether any is due.
    /// </summary>
    /// <remarks>
    /// Fills the caller's table, as the idle tick runs at the GC heap limit too, where an allocation throws. A class
    /// found due stays due until <see cref="MarkReleased"/>: a tick that failed before it gave the class back (out of
    /// managed memory) leaves it due at the next, not cached until it is used again.
    /// </remarks>
    public bool IdleClasses(ClassCounts[] byClass, long now, bool[] idle)
    {
        bool any = false;
        lock (_lock)
        {
            for (int classIndex = 0; classIndex < byClass.Length; classIndex++)
            {
                ClassCounts counts = byClass[classIndex];
                long activity = counts.Hits + counts.Misses + counts.Returns;
                idle[classIndex] = false;
                if (activity != _activity[classIndex])
                {
                    _activity[classIndex] = activity;
                    _lastActive[classIndex] = now;
                    _lastActiveCounted[classIndex] = clock.LastTickCounted;
                    _released[classIndex] = false;
                }
                else if (!_released[classIndex] && counts.Cached > 0 && clock.QuietLongEnough(now, _lastActive[classIndex], _lastActiveCounted[classIndex]))
                {
                    idle[classIndex] = true;
                    any = true;
                }
            }
        }

        return any;
    }

    /// <summary>
    /// Records the classes set in <paramref name="idle"/> as given back: none is due again until it is used. A use since
    /// <see cref="IdleClasses"/> found them is seen by the next tick, which dates it and makes the class judged afresh.
    /// </summary>
    public void MarkReleased(bool[] idle)
    {
        lock (_lock)
        {
            for (int classIndex = 0; classIndex < idle.Length; classIndex++)
            {
                _released[classIndex] |= idle[classIndex];
            }
        }
    }

    /// <summary>
    /// The tick by which every free block of class <paramref name="classIndex"/> had been returned, given its
    /// activity summed after a trim collected them: when the timer first saw that figure, or <paramref name="now"/>
    /// when it has moved since (activity only grows, so an equal figure means nothing happened since).
    /// </summary>
    public long ReturnedBy(int classIndex, long activity, long now)
    {
        lock (_lock)
        {
            return activity == _activity[classIndex] ? _lastActive[classIndex] : now;
        }
    }
}
