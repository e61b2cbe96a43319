using System;
using System.Collections.Generic;
using System.Runtime.CompilerServices;

namespace Zipora.Buffers;

/// <summary>
/// The trackers of the segmented buffers renting from one pool (one per live buffer, reused), and what is summed
/// from them when statistics are read. A buffer created and disposed on one thread takes and gives back the thread's
/// spare tracker: no lock, and no interlocked instruction but the one that gives the tracker back.
/// </summary>
/// <remarks>
/// A buffer dropped without dispose is found by <see cref="Sweep"/>: its tracker's weak reference no longer sees the
/// token the buffer held.
/// The sweep runs when statistics are read, at every tick of the pool's idle clock (before the leak quarantine lets
/// any block go, so a buffer brought back by another object's finalizer is retired before its blocks can serve
/// another renter) and when the trackers have doubled since the last sweep (so leaks do not pile them up).
/// </remarks>
internal sealed class SegmentedBufferCounters
{
    // The sweep's first threshold: below it, a pool's trackers are too few to bother.
    private const int FirstSweepAt = 64;

#pragma warning disable IDE1006 // The runtime's t_ prefix for thread-statics, which the s_ rule cannot tell apart.
    // The calling thread's spare free tracker, of whichever pool the thread last gave one back to, and the thread.
    [ThreadStatic]
    private static SpareTrackerSlot? t_spare;
#pragma warning restore IDE1006

    // A monitor, not a System.Threading.Lock: a contended Lock allocates its wait event on the managed heap, and a
    // tracker comes back here inside a buffer's dispose, where running out of managed memory must not stop it.
    private readonly object _lock = new();
    private readonly List<SegmentedBufferTracker> _trackers = [];
    private readonly Stack<SegmentedBufferTracker> _free = new();
    private int _sweepAt = FirstSweepAt;

    // What the trackers retired as leaked had counted (they are never read again), and how many there were.
    private long _retiredMessages;
    private long _retiredMessageSegments;
    private long _retiredLargestMessage;
    private long _leaked;

    /// <summary>A free tracker, held from now on by the caller with <paramref name="ticket"/> and <paramref name="token"/> (see <see cref="SegmentedBufferTracker.Take"/>).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public SegmentedBufferTracker Take(out int ticket, out object token)
    {
        SpareTrackerSlot? slot = t_spare;
        SegmentedBufferTracker? spare = slot?.Tracker;
        if (spare is null || spare.Counters != this)
        {
            spare = TakeShared();
        }
        else
        {
            slot!.Tracker = null;
            spare.IsParked = false;
        }

        ticket = spare.Take(out token);
        return spare;
    }

    /// <summary>Keeps <paramref name="tracker"/>, just given back by its buffer, for the next buffer. Throws nothing.</summary>
    public static void Return(SegmentedBufferTracker tracker)
    {
        SpareTrackerSlot slot;
        try
        {
            // A thread's first touch of the thread-statics is the runtime's allocation of them, and its first return the
            // slot's: out of managed memory either throws, inside a buffer's dispose, after the tracker was given back
            // (lost for good had it thrown). The shared list takes it without allocating.
            slot = t_spare ??= new SpareTrackerSlot();
        }
        catch (OutOfMemoryException)
        {
            tracker.Counters.ReturnShared(tracker);
            return;
        }

        if (slot.Tracker is null)
        {
            if (tracker.ParkedOn != slot.Thread)
            {
                tracker.ParkedOn = slot.Thread;
            }

            tracker.IsParked = true;
            slot.Tracker = tracker;
            return;
        }

        tracker.Counters.ReturnShared(tracker);
    }

    /// <summary>Retires the trackers of collected buffers (counting them leaked) and takes back the spares of exited threads.</summary>
    public void Sweep()
    {
        lock (_lock)
        {
            SweepUnsynchronized();
        }
    }

    public SegmentedBufferStatistics Snapshot()
    {
        lock (_lock)
        {
            SweepUnsynchronized();
            long live = 0;
            long bytesHeld = 0;
            long messages = _retiredMessages;
            long messageSegments = _retiredMessageSegments;
            long largest = _retiredLargestMessage;
            foreach (SegmentedBufferTracker tracker in _trackers)
            {
                if (tracker.IsHeld)
                {
                    live++;
                    bytesHeld += tracker.BytesHeld;
                }

                messages += tracker.Messages;
                messageSegments += tracker.MessageSegments;
                largest = Math.Max(largest, tracker.LargestMessage);
            }

            return new SegmentedBufferStatistics
            {
                LiveBuffers = live,
                BytesHeld = bytesHeld,
                Messages = messages,
                MessageSegments = messageSegments,
                LargestMessage = largest,
                Leaked = _leaked,
            };
        }
    }

    [MethodImpl(MethodImplOptions.NoInlining)]
    private SegmentedBufferTracker TakeShared()
    {
        lock (_lock)
        {
            if (_free.TryPop(out SegmentedBufferTracker? tracker))
            {
                return tracker;
            }

            if (_trackers.Count >= _sweepAt)
            {
                SweepUnsynchronized();
                _sweepAt = Math.Max(FirstSweepAt, 2 * _trackers.Count);
                if (_free.TryPop(out tracker))
                {
                    return tracker;
                }
            }

            // Room on the free list for every tracker there is, made as each is: a tracker given back then allocates
            // nothing (see ReturnShared). The free list never holds more than the list of trackers.
            _free.EnsureCapacity(_trackers.Count + 1);
            tracker = new SegmentedBufferTracker(this);
            _trackers.Add(tracker);
            return tracker;
        }
    }

    /// <summary>Puts a tracker on the free list, whose room was made with the tracker: allocates nothing.</summary>
    private void ReturnShared(SegmentedBufferTracker tracker)
    {
        lock (_lock)
        {
            _free.Push(tracker);
        }
    }

    private void SweepUnsynchronized()
    {
        for (int i = _trackers.Count - 1; i >= 0; i--)
        {
            SegmentedBufferTracker tracker = _trackers[i];
            if (tracker.TryRetireLeaked())
            {
                // Never reused: a buffer brought back by another object's finalizer may still write its counts there.
                _leaked++;
                _retiredMessages += tracker.Messages;
                _retiredMessageSegments += tracker.MessageSegments;
                _retiredLargestMessage = Math.Max(_retiredLargestMessage, tracker.LargestMessage);
                _trackers[i] = _trackers[^1];
                _trackers.RemoveAt(_trackers.Count - 1);
            }
            else if (tracker.IsParked && ThreadLiveness.HasExited(tracker.ParkedOn!))
            {
                // A free tracker in the spare slot of a thread that exited: nobody else can take it from there.
                tracker.IsParked = false;
                _free.Push(tracker);
            }
        }
    }
}
