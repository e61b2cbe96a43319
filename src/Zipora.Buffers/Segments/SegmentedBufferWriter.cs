using System;
using System.Buffers;
using System.Runtime.CompilerServices;

namespace Zipora.Buffers;

/// <summary>
/// An <see cref="IBufferWriter{T}"/> that writes into pooled segments and gives the data back as a
/// <see cref="ReadOnlySequence{T}"/> without copying; consumed from the front, it is a FIFO queue of bytes.
/// </summary>
/// <remarks>
/// <para>
/// Segments are rented from <see cref="SegmentedBufferOptions.Pool"/> (<see cref="TieredMemoryPool.Shared"/> by
/// default): the first as large as <see cref="SegmentedBufferOptions.InitialSegmentSize"/> or the request, then each
/// twice the last up to <see cref="SegmentedBufferOptions.MaxSegmentSize"/>. With a <see cref="TieredMemoryPool"/> a
/// segment allocates nothing: a writer created, filled, read and disposed allocates only itself.
/// </para>
/// <para>
/// Validity: the memory <see cref="GetMemory"/> gives is to be written before the next <see cref="GetMemory"/>,
/// <see cref="GetSpan"/> or <see cref="Advance"/> (as <see cref="IBufferWriter{T}"/> says: a larger request may
/// replace an empty last segment). The data, and a sequence <see cref="GetReadOnlySequence"/> gives, stay valid until
/// they are consumed (<see cref="Consume"/>, <see cref="AdvanceTo"/>), <see cref="Reset"/> or <see cref="Dispose"/>. After that their segments may hold another buffer's data: read or write them no more (as
/// with a <c>Pipe</c>'s buffers). The process never crashes for it: the pool does not unmap memory returned less
/// than its idle delay ago. Positions in a sequence are valid as long as its data: after a <see cref="Reset"/> the
/// kept segment holds new data, and a segment let go of by a consume may come back as this writer's next one, or as
/// another writer's, so a position from before either may point into newer data, also into another writer's when
/// given to that writer (a position is a segment and an index: <see cref="AdvanceTo"/> refuses one outside its own
/// segments, and never consumes past its own data).
/// </para>
/// <para>
/// Not thread-safe: a call made while another thread is inside one gets <see cref="InvalidOperationException"/>.
/// <see cref="Dispose"/> may come from any thread at any time, twice or racing: a call that is running (a copy, an
/// asynchronous one until it completes) keeps the segments until it leaves, so no call reads or writes memory that
/// went back to the pool, and no segment is ever returned twice.
/// </para>
/// <para>
/// A writer dropped without <see cref="Dispose"/>: its segments become unreachable with it, and a
/// <see cref="TieredMemoryPool"/> reclaims their blocks as it reclaims any leaked buffer (held in quarantine for its
/// idle delay, since a <see cref="Span{T}"/> may still run). The writer has no finalizer: the pool finds it collected
/// through a weak reference when it next reads its statistics or ticks, and corrects its counts then, never touching
/// memory. With another pool, a leaked segment follows that pool's rules for a leaked owner.
/// </para>
/// </remarks>
public sealed partial class SegmentedBufferWriter : IBufferWriter<byte>, IDisposable
{
    private const string TypeName = nameof(SegmentedBufferWriter);

    private SegmentChain _chain;

    // Bytes of the head segment already consumed.
    private int _headStart;

    /// <summary>Creates a writer over <see cref="TieredMemoryPool.Shared"/> with the default options.</summary>
    public SegmentedBufferWriter()
        : this(SegmentedBufferOptions.Default)
    {
    }

    /// <summary>Creates a writer with <paramref name="options"/> (read now; later changes do not affect it).</summary>
    /// <exception cref="ArgumentNullException"><paramref name="options"/> is <see langword="null"/>.</exception>
    /// <exception cref="ArgumentOutOfRangeException">An option is out of range; the exception names it.</exception>
    /// <exception cref="ObjectDisposedException">The options' <see cref="SegmentedBufferOptions.Pool"/> is a disposed <see cref="TieredMemoryPool"/>.</exception>
    public SegmentedBufferWriter(SegmentedBufferOptions options)
    {
        ArgumentNullException.ThrowIfNull(options);
        _chain.Initialize(options, nameof(SegmentedBufferWriter));
        _chain.TakeKeptBlockAsHead();
        if (_chain.Tail is { } kept)
        {
            // The thread's last message's block: Advance counts nothing into it until a GetMemory or GetSpan gives it, as
            // in a writer with no segment, so it never shows that message's bytes as this writer's.
            kept.IsKeptAndNotGiven = true;
        }
    }

    /// <summary>Bytes written and not yet consumed.</summary>
    /// <exception cref="ObjectDisposedException">The writer was disposed.</exception>
    public long Length
    {
        get
        {
            _chain.EnterForOwnWork(TypeName);
            long length = LengthUnsynchronized;
            _chain.Exit();
            return length;
        }
    }

    /// <summary>The most bytes the writer may hold at once (<see cref="SegmentedBufferOptions.MaxLength"/>).</summary>
    public long MaxLength => _chain.Settings.MaxLength;

    /// <summary>
    /// Returns memory to write at least <paramref name="sizeHint"/> bytes into (at least one byte for 0): the rest of
    /// the last segment when it has room, else a new segment. It may be longer than asked.
    /// </summary>
    /// <param name="sizeHint">Bytes needed, 0 for "any". A hint above the growth's largest segment gets one segment of that size.</param>
    /// <exception cref="ArgumentOutOfRangeException"><paramref name="sizeHint"/> is negative, or larger than the pool's largest buffer.</exception>
    /// <exception cref="InvalidOperationException">The bytes asked for would take the writer past <see cref="MaxLength"/>.</exception>
    /// <exception cref="ObjectDisposedException">The writer was disposed.</exception>
    public Memory<byte> GetMemory(int sizeHint = 0)
    {
        if (TryGetTailRoom(sizeHint, out Memory<byte> available, out _, out int end))
        {
            return available[end..];
        }

        return GetMemoryGuarded(sizeHint, out _);
    }

    /// <summary>As <see cref="GetMemory"/>, as a span.</summary>
    /// <inheritdoc cref="GetMemory" />
    public Span<byte> GetSpan(int sizeHint = 0)
    {
        if (TryGetTailRoom(sizeHint, out Memory<byte> available, out nint address, out int end))
        {
            return BufferSegment.SpanOf(available, address, end);
        }

        Memory<byte> memory = GetMemoryGuarded(sizeHint, out address);
        return BufferSegment.SpanOf(memory, address, 0);
    }

    /// <summary>Counts <paramref name="count"/> bytes written into the memory the last <see cref="GetMemory"/> or <see cref="GetSpan"/> gave.</summary>
    /// <exception cref="ArgumentOutOfRangeException"><paramref name="count"/> is negative or longer than the memory given.</exception>
    /// <exception cref="ObjectDisposedException">The writer was disposed.</exception>
    public void Advance(int count)
    {
        _chain.EnterForOwnWork(TypeName);
        try
        {
            BufferSegment? tail = _chain.Tail;
            if (tail is not null && (uint)count <= (uint)tail.Free && count <= MaxLength - LengthUnsynchronized && !tail.IsKeptAndNotGiven)
            {
                tail.End += count;
                return;
            }

            AdvanceSlowUnsynchronized(count);
        }
        finally
        {
            _chain.Exit();
        }
    }

    /// <summary>
    /// The unconsumed data, without copying. Valid until that data is consumed, <see cref="Reset"/> or
    /// <see cref="Dispose"/>; bytes written later are not in it.
    /// </summary>
    /// <exception cref="ObjectDisposedException">The writer was disposed.</exception>
    public ReadOnlySequence<byte> GetReadOnlySequence()
    {
        long version = 0;
        try
        {
            if (TryGetDataQuietly(out version, out ReadOnlySequence<byte> quiet))
            {
                return quiet;
            }
        }
        catch (ArgumentException) when (!_chain.ReadWasQuiet(version))
        {
            // The sequence's constructor reads the segments again after the quiet read, and a dispose or a misusing call
            // on another thread changed them meanwhile: the guarded path below tells which (ObjectDisposedException,
            // or InvalidOperationException). Caught here, not in the quiet read, which then stays small enough to inline.
        }

        _chain.EnterForOwnWork(TypeName);
        ReadOnlySequence<byte> data;
        try
        {
            data = DataUnsynchronized();
        }
        finally
        {
            _chain.Exit();
        }

        _chain.ThrowIfDisposed(TypeName);
        return data;
    }

    /// <summary>
    /// Forgets every byte, as a new writer would, and ends the message (for the statistics). The first segment is
    /// kept for the next message, which grows past it as a new writer's grows past its first; the others go back to
    /// the pool.
    /// </summary>
    /// <exception cref="ObjectDisposedException">The writer was disposed.</exception>
    public void Reset()
    {
        _chain.EnterForOwnWork(TypeName);
        try
        {
            // The running index restarts at each reset, so the end index is every byte written since, consumed or not.
            long messageLength = _chain.EndIndex;
            BufferSegment? head = _chain.Head;
            try
            {
                _chain.ReleaseAfterUnsynchronized(head);
            }
            finally
            {
                // Emptied whether or not an owner of another pool threw on dispose: the writer is a new one either way.
                if (head is not null)
                {
                    head.MoveTo(0);
                    head.End = 0;
                }

                _chain.EndMessage(messageLength);
                if (head is not null)
                {
                    // The next message grows past the kept segment as a new writer's grows past its first, as a
                    // stream emptied by SetLength(0) does: restarted at the initial size, it rented that size again
                    // (4, 4, 8, 16 KB where a new writer has 4, 8, 16), one segment more for every message.
                    _chain.RestartGrowthAfter(head.Capacity);
                }

                _headStart = 0;
            }
        }
        finally
        {
            _chain.Exit();
        }
    }

    /// <summary>Returns every segment to the pool. A second call, from any thread, does nothing.</summary>
    public void Dispose() => _chain.Dispose();

    /// <summary>Bytes written and not yet consumed; the caller holds the guard.</summary>
    private long LengthUnsynchronized
    {
        get
        {
            BufferSegment? head = _chain.Head;
            return head is null ? 0 : _chain.EndIndex - head.RunningIndex - _headStart;
        }
    }

    /// <summary>The unconsumed data as a sequence over the segments; the caller holds the guard.</summary>
    private ReadOnlySequence<byte> DataUnsynchronized() => _chain.SequenceFromUnsynchronized(_headStart);

    /// <summary>The room to write in, under the guard: the tail's when it holds the request, else a new segment's.</summary>
    /// <param name="sizeHint">As <see cref="GetMemory"/>'s.</param>
    /// <param name="address">Where the room starts when it is a pool block's (0 for another pool's owner).</param>
    [MethodImpl(MethodImplOptions.NoInlining)]
    private Memory<byte> GetMemoryGuarded(int sizeHint, out nint address)
    {
        if (sizeHint < 0)
        {
            SegmentThrowHelper.ThrowNegative(nameof(sizeHint), sizeHint);
        }

        _chain.EnterForOwnWork(TypeName);
        Memory<byte> memory;
        try
        {
            memory = GetRoomUnsynchronized(sizeHint, out address);
        }
        finally
        {
            _chain.Exit();
        }

        // A dispose from another thread meanwhile released the segment: its memory is not to be handed out.
        _chain.ThrowIfDisposed(TypeName);
        return memory;
    }

    private Memory<byte> GetRoomUnsynchronized(int sizeHint, out nint address)
    {
        int needed = Math.Max(sizeHint, 1);
        long room = MaxLength - LengthUnsynchronized;
        if (needed > room)
        {
            SegmentThrowHelper.ThrowWriterFull(LengthUnsynchronized, MaxLength, needed);
        }

        BufferSegment? tail = _chain.Tail;
        if (tail is null || tail.Free < needed)
        {
            if (needed > _chain.Settings.MaxRentSize)
            {
                SegmentThrowHelper.ThrowSizeHintTooLarge(sizeHint, _chain.Settings.MaxRentSize);
            }

            // An empty tail too small for this request gets a larger block in place of its own, rather than being
            // left as an empty segment in the data (the memory it gave was the last GetMemory's, valid only until
            // this one, as a Pipe's is).
            tail = tail is not null && tail.End == 0
                ? _chain.GrowEmptyTailUnsynchronized(needed)
                : _chain.AppendUnsynchronized(needed);
        }

        int end = tail.End;
        tail.IsKeptAndNotGiven = false;
        address = tail.BlockAddress == 0 ? 0 : tail.BlockAddress + end;
        Memory<byte> memory = tail.AvailableMemory[end..];
        return memory.Length > room ? memory[..(int)room] : memory;
    }

    [MethodImpl(MethodImplOptions.NoInlining)]
    private void AdvanceSlowUnsynchronized(int count)
    {
        if (count < 0)
        {
            SegmentThrowHelper.ThrowNegative(nameof(count), count);
        }

        BufferSegment? tail = _chain.Tail;
        int given = tail is null || tail.IsKeptAndNotGiven ? 0 : (int)Math.Min(tail.Free, MaxLength - LengthUnsynchronized);
        if (count > given)
        {
            SegmentThrowHelper.ThrowAdvancePastMemory(count, given);
        }

        if (tail is not null)
        {
            tail.End += count;
        }
    }
}
