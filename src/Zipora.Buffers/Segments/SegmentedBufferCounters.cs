using System;
using System.Collections.Generic;
using System.Runtime.CompilerServices;

namespace Zipora.Buffers;

/// <summary>
/// The trackers of the segmented buffers renting from one pool (one per live buffer, reused), and what is summed
/// from them when statistics are read. A buffer created and disposed on one thread takes and gives back the thread's
/// spare tracker (see <see cref="SegmentThreadCache"/>): no lock, and no interlocked instruction but the one that gives
/// the tracker back.
/// </summary>
/// <remarks>
/// <para>
/// A buffer dropped without dispose is found by <see cref="Sweep"/>: its tracker's weak reference no longer sees the
/// token the buffer held.
/// The sweep runs when statistics are read, at every tick of the pool's idle clock (before the leak quarantine lets
/// any block go, so a buffer brought back by another object's finalizer is retired before its blocks can serve
/// another renter) and when the trackers have doubled since the last sweep (so leaks do not pile them up).
/// </para>
/// <para>
/// This file holds the trackers and their statistics; <c>SegmentedBufferCounters.Parking.cs</c> the threads' spares.
/// </para>
/// </remarks>
internal sealed partial class SegmentedBufferCounters
{
    // The sweep's first threshold: below it, a pool's trackers are too few to bother.
    private const int FirstSweepAt = 64;

    // A monitor, not a System.Threading.Lock: a contended Lock allocates its wait event on the managed heap, and a
    // tracker comes back here inside a buffer's dispose, where running out of managed memory must not stop it.
    // Taken after the thread caches' registry lock where both are held, never before it.
    private readonly object _lock = new();
    private readonly List<SegmentedBufferTracker> _trackers = [];
    private readonly Stack<SegmentedBufferTracker> _free = new();

    // Empties a thread's parked blocks under the handshake. Made with the counters, not at the first trim or dispose:
    // a static lambda's delegate and its class's statics are made at its first use, which may be at the GC heap limit,
    // where a type initializer that fails leaves every later use throwing, for good.
    private readonly Action<SegmentThreadCache, int> _emptyCache = static (cache, _) => EmptyUnsynchronized(cache);

    private int _sweepAt = FirstSweepAt;

    // What the trackers retired as leaked had counted (they are never read again), and how many there were.
    private long _retiredMessages;
    private long _retiredMessageSegments;
    private long _retiredLargestMessage;
    private long _leaked;

    /// <summary>Retires the trackers of collected buffers (counting them leaked) and takes back the spares of exited threads.</summary>
    public void Sweep()
    {
        RetireExitedThreads();
        lock (_lock)
        {
            SweepUnsynchronized();
        }
    }

    public SegmentedBufferStatistics Snapshot()
    {
        RetireExitedThreads();
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
        }
    }
}
