using System;
using System.Runtime.CompilerServices;
using System.Threading;

namespace Zipora.Buffers;

/// <summary>
/// What one live segmented buffer holds and has done, for its pool's statistics: kept apart from the buffer and
/// reused by the next one (<see cref="SegmentedBufferCounters"/>), so a buffer needs no finalizer of its own to be
/// counted out when it is dropped without dispose.
/// </summary>
/// <remarks>
/// <para>
/// A buffer takes the tracker with a ticket (odd: held) and gives it back by moving the ticket on (even: free). It
/// also takes the tracker's token, an object nothing else holds while the buffer lives, and
/// hands it back: the tracker keeps only a weak reference to the token, set once, so the pool's sweep finds a buffer
/// collected without dispose (the token went with it) at no cost per buffer (setting a weak reference's target is a
/// call into the runtime; reading it is not). The sweep then moves the ticket on too. Whichever moves the ticket
/// first accounts for the buffer; the other finds the ticket moved. A buffer whose ticket moved without its dispose
/// was collected, and is in use only if another object's finalizer brought it back: it then checks its blocks at
/// every call (see <see cref="SegmentChain.Enter"/>).
/// </para>
/// <para>
/// The counts are plain fields written only by the buffer's guard holder, and read by the sweep: exact when the pool
/// is quiet, without an interlocked instruction per segment or per message. A tracker retired as leaked is never
/// reused, so a revived buffer that still writes its counts writes them where nobody reads any more.
/// </para>
/// </remarks>
internal sealed class SegmentedBufferTracker
{
    // A short weak reference: cleared when the token (and so its buffer) is found unreachable, even if another
    // object's finalizer brings the buffer back later (that buffer is then counted as leaked).
    private readonly WeakReference<object> _token;

    // The token while the tracker is free; a held tracker's token is held by its buffer alone.
    private object? _spareToken = new();
    private int _ticket;
    private long _bytesHeld;
    private long _messages;
    private long _messageSegments;
    private long _largestMessage;

    // The most bytes the holding stream's message held before a SetLength shortened it (0: never shortened): a message's
    // length is the most it held, not what was left of it at its end.
    private long _longestBeforeShortened;
    private bool _isParked;

    public SegmentedBufferTracker(SegmentedBufferCounters counters)
    {
        Counters = counters;
        _token = new WeakReference<object>(_spareToken!);
    }

    /// <summary>The pool's counters this tracker belongs to.</summary>
    public SegmentedBufferCounters Counters { get; }

    /// <summary>
    /// The holding buffer's spare segment object for its next segment: the thread's spare taken with the tracker, or the
    /// last one the buffer let go of. It may hold a block (the one the thread's last message ended in, counted as held).
    /// Kept here rather than in the buffer, which is then no larger; read and written only by the buffer that holds the
    /// tracker, under its guard, and empty whenever the tracker is free.
    /// </summary>
    public BufferSegment? SpareSegment { get; set; }

    /// <summary>
    /// Whether the tracker is free in a thread's cache now (see <see cref="SegmentThreadCache"/>). Read by tests that
    /// account for every tracker.
    /// </summary>
    public bool IsParked
    {
        get => Volatile.Read(ref _isParked);
        set => Volatile.Write(ref _isParked, value);
    }

    /// <summary>Whether a buffer holds the tracker now.</summary>
    public bool IsHeld => (Volatile.Read(ref _ticket) & 1) != 0;

    public long BytesHeld => Volatile.Read(ref _bytesHeld);

    public long Messages => Volatile.Read(ref _messages);

    public long MessageSegments => Volatile.Read(ref _messageSegments);

    public long LargestMessage => Volatile.Read(ref _largestMessage);

    /// <summary>
    /// Hands the free tracker to a buffer, with its <paramref name="token"/> for the buffer to hold until it gives the
    /// tracker back; returns the ticket that proves the buffer holds it.
    /// </summary>
    public int Take(out object token)
    {
        // The token is in the buffer before the ticket says held: a sweep that sees the ticket finds the token alive.
        token = _spareToken!;
        _spareToken = null;
        int ticket = _ticket + 1;
        Volatile.Write(ref _ticket, ticket);
        return ticket;
    }

    /// <summary>Whether the buffer with <paramref name="ticket"/> still holds the tracker (the sweep has not retired it as leaked).</summary>
    public bool IsHeldBy(int ticket) => Volatile.Read(ref _ticket) == ticket;

    /// <summary>
    /// Gives the tracker back for the buffer with <paramref name="ticket"/>, and keeps its <paramref name="token"/>
    /// again; false when the sweep retired it first (the buffer was counted as leaked).
    /// </summary>
    /// <remarks>
    /// The sweep retires only a tracker whose token it finds unreachable, so while the weak reference still finds the
    /// token, which the caller holds, the sweep cannot race this: a plain store frees the ticket, no interlocked
    /// instruction. A cleared reference means the buffer was found unreachable and brought back by another object's
    /// finalizer: then whichever moves the ticket first, with a compare-exchange, accounts for the buffer.
    /// </remarks>
    public bool TryGiveBack(int ticket, object token)
    {
        if (_token.TryGetTarget(out _))
        {
            Volatile.Write(ref _ticket, ticket + 1);
        }
        else if (TryMoveTicket(ticket))
        {
            // The reference was cleared: set it again, or the next buffer would look collected. Unless the weak
            // reference itself was finalized (SetTarget throws): the tracker, and so its pool, was unreachable with the
            // buffer, and a user's finalizer brought them back. The tracker then serves no buffer again (the next one
            // would look collected), and this buffer's spare goes back to the pool as the sweep's would; thrown here,
            // the dispose failed inside that finalizer, which ended the process (RevivedWriterOfADroppedPoolTests).
            try
            {
                _token.SetTarget(token);
            }
            catch (InvalidOperationException)
            {
                return false;
            }
        }
        else
        {
            return false;
        }

        _spareToken = token;
        GC.KeepAlive(token);
        return true;
    }

    /// <summary>Retires the tracker if its buffer was collected while holding it; true for the one caller that did.</summary>
    public bool TryRetireLeaked()
    {
        int ticket = Volatile.Read(ref _ticket);
        return (ticket & 1) != 0 && !_token.TryGetTarget(out _) && TryMoveTicket(ticket);
    }

    private bool TryMoveTicket(int ticket) => Interlocked.CompareExchange(ref _ticket, ticket + 1, ticket) == ticket;

    /// <summary>Counts <paramref name="bytes"/> more (or fewer, negative) held by the buffer. Caller holds the buffer's guard.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public void AddBytesHeld(long bytes) => Volatile.Write(ref _bytesHeld, _bytesHeld + bytes);

    /// <summary>The holding buffer's message, <paramref name="length"/> bytes long, is being shortened. Caller holds the buffer's guard.</summary>
    public void NoteShortened(long length) => _longestBeforeShortened = Math.Max(_longestBeforeShortened, length);

    /// <summary>
    /// A message of <paramref name="length"/> bytes in <paramref name="segments"/> segments ended (or of the most it held
    /// before it was shortened, when that was more). Caller holds the buffer's guard.
    /// </summary>
    public void EndMessage(int segments, long length)
    {
        length = Math.Max(length, _longestBeforeShortened);
        _longestBeforeShortened = 0;
        if (length == 0)
        {
            // A writer reset or disposed without a byte written sent no message (a segment kept by a reset included).
            return;
        }

        Volatile.Write(ref _messages, _messages + 1);
        Volatile.Write(ref _messageSegments, _messageSegments + segments);
        if (length > _largestMessage)
        {
            Volatile.Write(ref _largestMessage, length);
        }
    }
}
