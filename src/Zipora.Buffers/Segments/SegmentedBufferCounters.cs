using System.Threading;

namespace Zipora.Buffers;

/// <summary>
/// What the segmented buffers renting from one pool hold and have done. Updated once per segment rented or returned
/// and once per message, never per write, with interlocked operations (writers live on many threads).
/// </summary>
internal sealed class SegmentedBufferCounters
{
    private long _live;
    private long _bytesHeld;
    private long _messages;
    private long _messageSegments;
    private long _largestMessage;
    private long _leaked;

    public void BufferCreated() => Interlocked.Increment(ref _live);

    public void SegmentRented(int bytes) => Interlocked.Add(ref _bytesHeld, bytes);

    public void SegmentReturned(int bytes) => Interlocked.Add(ref _bytesHeld, -bytes);

    /// <summary>A message ended (a reset or a dispose): <paramref name="segments"/> segments carried <paramref name="length"/> bytes.</summary>
    public void MessageEnded(int segments, long length)
    {
        if (length == 0)
        {
            // A writer reset or disposed without a byte written sent no message (a segment kept by a reset included).
            return;
        }

        Interlocked.Increment(ref _messages);
        Interlocked.Add(ref _messageSegments, segments);
        long largest = Volatile.Read(ref _largestMessage);
        while (length > largest)
        {
            long seen = Interlocked.CompareExchange(ref _largestMessage, length, largest);
            if (seen == largest)
            {
                break;
            }

            largest = seen;
        }
    }

    public void BufferDisposed() => Interlocked.Decrement(ref _live);

    /// <summary>
    /// A buffer was garbage collected without dispose. Its segments' blocks are reclaimed by the pool's own leak
    /// reclaim (they become unreachable with it); here only the counts it held are taken away.
    /// </summary>
    public void BufferLeaked(long bytesHeld)
    {
        Interlocked.Decrement(ref _live);
        Interlocked.Add(ref _bytesHeld, -bytesHeld);
        Interlocked.Increment(ref _leaked);
    }

    public SegmentedBufferStatistics Snapshot() => new()
    {
        LiveBuffers = Volatile.Read(ref _live),
        BytesHeld = Volatile.Read(ref _bytesHeld),
        Messages = Volatile.Read(ref _messages),
        MessageSegments = Volatile.Read(ref _messageSegments),
        LargestMessage = Volatile.Read(ref _largestMessage),
        Leaked = Volatile.Read(ref _leaked),
    };
}
