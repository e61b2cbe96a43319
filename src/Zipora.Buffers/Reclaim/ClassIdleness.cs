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

    /// <summary>Records each class's activity at tick <paramref name="now"/>; returns the classes due to be given back, or <see langword="null"/>.</summary>
    public bool[]? IdleClasses(ClassCounts[] byClass, long now)
    {
        bool[]? idle = null;
        lock (_lock)
        {
            for (int classIndex = 0; classIndex < byClass.Length; classIndex++)
            {
                ClassCounts counts = byClass[classIndex];
                long activity = counts.Hits + counts.Misses + counts.Returns;
                if (activity != _activity[classIndex])
                {
                    _activity[classIndex] = activity;
                    _lastActive[classIndex] = now;
                    _lastActiveCounted[classIndex] = clock.LastTickCounted;
                    _released[classIndex] = false;
                }
                else if (!_released[classIndex] && counts.Cached > 0 && clock.QuietLongEnough(now, _lastActive[classIndex], _lastActiveCounted[classIndex]))
                {
                    _released[classIndex] = true;
                    (idle ??= new bool[byClass.Length])[classIndex] = true;
                }
            }
        }

        return idle;
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
