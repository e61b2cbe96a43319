using System.Threading;

namespace Zipora.Buffers;

/// <summary>
/// A thread's spare free tracker (<see cref="SegmentedBufferCounters"/>) and the thread itself, in one object: a
/// buffer's dispose parks its tracker here and names the thread (for the sweep to take back a dead thread's spare)
/// with one thread-local lookup, where the tracker and <see cref="Thread.CurrentThread"/> would take two.
/// </summary>
internal sealed class SpareTrackerSlot
{
    /// <summary>The parked tracker, or <see langword="null"/>.</summary>
    public SegmentedBufferTracker? Tracker;

    /// <summary>The thread the slot belongs to.</summary>
    public Thread Thread { get; } = Thread.CurrentThread;
}
