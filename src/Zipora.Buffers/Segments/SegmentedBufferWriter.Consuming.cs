using System;

namespace Zipora.Buffers;

/// <summary>Consuming from the front: the writer as a FIFO queue of bytes, its segments going back as they are consumed.</summary>
public sealed partial class SegmentedBufferWriter
{
    /// <summary>
    /// Consumes the data before <paramref name="consumed"/> (a position in the sequence <see cref="GetReadOnlySequence"/>
    /// gave since the last consume or reset): every segment wholly before it goes back to the pool.
    /// </summary>
    /// <exception cref="ArgumentOutOfRangeException">The position is not in the unconsumed data.</exception>
    /// <exception cref="ObjectDisposedException">The writer was disposed.</exception>
    public void AdvanceTo(SequencePosition consumed)
    {
        _chain.EnterForOwnWork(TypeName);
        try
        {
            ConsumeUnsynchronized(CountBeforeUnsynchronized(consumed));
        }
        finally
        {
            _chain.Exit();
        }
    }

    /// <summary>Consumes the first <paramref name="count"/> bytes: every segment they wholly cover goes back to the pool.</summary>
    /// <exception cref="ArgumentOutOfRangeException"><paramref name="count"/> is negative or more than <see cref="Length"/>.</exception>
    /// <exception cref="ObjectDisposedException">The writer was disposed.</exception>
    public void Consume(long count)
    {
        _chain.EnterForOwnWork(TypeName);
        try
        {
            long length = LengthUnsynchronized;
            if ((ulong)count > (ulong)length)
            {
                SegmentThrowHelper.ThrowConsumePastLength(count, length);
            }

            ConsumeUnsynchronized(count);
        }
        finally
        {
            _chain.Exit();
        }
    }

    /// <remarks>
    /// The new head and its start are found and set first, and the segments before it let go of last: an owner that
    /// throws on dispose (another pool's) then leaves the whole count consumed, and every other segment given back.
    /// </remarks>
    private void ConsumeUnsynchronized(long count)
    {
        BufferSegment? oldHead = _chain.Head;
        if (oldHead is null)
        {
            return;
        }

        BufferSegment head = oldHead;
        int start = _headStart;
        long asked = count;
        while (count >= head.End - start && !ReferenceEquals(head, _chain.Tail))
        {
            count -= head.End - start;
            head = head.NextSegment!;
            start = 0;
        }

        _headStart = start + (int)count;
        if (_headStart == head.End && ReferenceEquals(head, _chain.Tail) && (asked != 0 || !ReferenceEquals(head, oldHead)))
        {
            // Everything consumed: what comes next is a new message, and grows from the initial size again, so a queue
            // of small messages does not walk its segments up to the largest size. A consume that let go of nothing
            // changes nothing (a writer that took its thread's kept block grows on as one that rents its first).
            _chain.RestartGrowth();
        }

        if (!ReferenceEquals(head, oldHead))
        {
            _chain.ReleaseBeforeUnsynchronized(head);
        }
    }

    /// <summary>The unconsumed bytes before <paramref name="consumed"/>; the caller holds the guard.</summary>
    private long CountBeforeUnsynchronized(SequencePosition consumed)
    {
        object? target = consumed.GetObject();
        int index = consumed.GetInteger();
        BufferSegment? head = _chain.Head;
        if (target is null)
        {
            // The start of an empty sequence: nothing to consume.
            if (index != 0)
            {
                SegmentThrowHelper.ThrowForeignPosition(nameof(consumed));
            }

            return 0;
        }

        for (BufferSegment? segment = head; segment is not null; segment = segment.NextSegment)
        {
            if (ReferenceEquals(segment, target))
            {
                // A consumed tail is not written again from its start, so a position from before a consume that took
                // everything lies before the unconsumed data, and is refused here.
                long count = segment.RunningIndex + index - head!.RunningIndex - _headStart;
                if (index < 0 || index > segment.End || count < 0)
                {
                    SegmentThrowHelper.ThrowForeignPosition(nameof(consumed));
                }

                return count;
            }
        }

        SegmentThrowHelper.ThrowForeignPosition(nameof(consumed));
        return 0;
    }
}
