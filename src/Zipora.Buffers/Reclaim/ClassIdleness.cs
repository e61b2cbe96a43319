namespace Zipora.Buffers;

/// <summary>
/// Judges each size class idle on its own: a class that saw no rent or return for the whole delay and still holds
/// free buffers is due to be given back, once, until it is used again.
/// </summary>
/// <remarks>Only the idle releaser's timer calls it, one tick at a time, so the fields need no lock.</remarks>
internal sealed class ClassIdleness(int classCount)
{
    private readonly long[] _activity = new long[classCount];
    private readonly long[] _lastActive = new long[classCount];
    private readonly bool[] _released = new bool[classCount];

    /// <summary>The classes due to be given back at tick <paramref name="now"/>; <see langword="null"/> when there are none.</summary>
    public bool[]? IdleClasses(ClassCounts[] byClass, long now, long delayInTicks)
    {
        bool[]? idle = null;
        for (int classIndex = 0; classIndex < byClass.Length; classIndex++)
        {
            ClassCounts counts = byClass[classIndex];
            long activity = counts.Hits + counts.Misses + counts.Returns;
            if (activity != _activity[classIndex])
            {
                _activity[classIndex] = activity;
                _lastActive[classIndex] = now;
                _released[classIndex] = false;
            }
            else if (!_released[classIndex] && counts.Cached > 0 && now - _lastActive[classIndex] >= delayInTicks)
            {
                _released[classIndex] = true;
                (idle ??= new bool[byClass.Length])[classIndex] = true;
            }
        }

        return idle;
    }
}
