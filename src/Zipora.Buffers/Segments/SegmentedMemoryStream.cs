using System;
using System.Buffers;
using System.Diagnostics.CodeAnalysis;
using System.IO;

namespace Zipora.Buffers;

/// <summary>
/// A seekable, growable <see cref="Stream"/> over pooled segments, for wherever a <see cref="MemoryStream"/> is used:
/// it grows without copying what it holds, and gives its memory back to the pool on dispose.
/// </summary>
/// <remarks>
/// <para>
/// It behaves as <see cref="MemoryStream"/> does: the position may be set anywhere from 0 up, also past the end (a
/// read there returns 0 bytes, a write there fills the gap with zeros), <see cref="SetLength"/> grows with zeros and
/// shrinks by giving the segments past the end back (to 0, it keeps its first segment, as <see cref="MemoryStream"/>
/// keeps its capacity), a seek before the start throws <see cref="IOException"/>.
/// <see cref="SegmentedBufferOptions.MaxLength"/> plays the part of a fixed capacity: a write past it throws
/// <see cref="IOException"/> and leaves the stream as it was.
/// </para>
/// <para>
/// Native memory has no array, so there is no <c>GetBuffer</c> or <c>TryGetBuffer</c>: <see cref="GetReadOnlySequence"/>
/// gives the contents without copying, and <see cref="TryGetSingleSegment"/> gives them as one memory when they fit in
/// one segment. Both stay valid until the stream is next written, shortened or disposed. <see cref="Stream.CopyTo(Stream)"/>,
/// <see cref="Stream.CopyToAsync(Stream)"/> and <see cref="WriteTo"/> write each segment's memory straight to the destination.
/// </para>
/// <para>
/// Not thread-safe (as <see cref="MemoryStream"/>): a call made while another thread is inside one gets
/// <see cref="InvalidOperationException"/>, except <see cref="Position"/>'s setter and <see cref="Seek"/>, which touch no
/// memory and take no guard: a call running meanwhile reads the position once and writes it back once, so a position
/// moved by another thread then is used or lost, never half of each (no write past <see cref="MaxLength"/>, no read
/// outside the data). <see cref="Stream.Dispose()"/> may come from any thread at any time, twice
/// or racing: a read, a write or a copy (an asynchronous one until it completes) that is running keeps the segments
/// until it leaves, so it never reads or writes memory that went back to the pool. A stream dropped without dispose
/// has its segments reclaimed by the pool, as a <see cref="SegmentedBufferWriter"/>'s are.
/// </para>
/// </remarks>
public sealed partial class SegmentedMemoryStream : Stream
{
    private const string TypeName = nameof(SegmentedMemoryStream);

    private SegmentChain _chain;
    private long _position;

    // The segment the last read or write ended in: sequential access finds its place without walking from the head.
    private BufferSegment? _cursor;

    // The segments in order, for a read or write behind the cursor (built on the first such access after the stream
    // grew or shrank; valid while _indexCount is not 0).
    private BufferSegment[]? _index;
    private int _indexCount;

    /// <summary>Creates an empty stream over <see cref="TieredMemoryPool.Shared"/> with the default options.</summary>
    public SegmentedMemoryStream()
        : this(SegmentedBufferOptions.Default)
    {
    }

    /// <summary>Creates an empty stream with <paramref name="options"/> (read now; later changes do not affect it).</summary>
    /// <exception cref="ArgumentNullException"><paramref name="options"/> is <see langword="null"/>.</exception>
    /// <exception cref="ArgumentOutOfRangeException">An option is out of range; the exception names it.</exception>
    /// <exception cref="ObjectDisposedException">The options' <see cref="SegmentedBufferOptions.Pool"/> is a disposed <see cref="TieredMemoryPool"/>.</exception>
    public SegmentedMemoryStream(SegmentedBufferOptions options)
    {
        ArgumentNullException.ThrowIfNull(options);
        _chain.Initialize(options, nameof(SegmentedMemoryStream));
    }

    /// <summary>True until the stream is disposed.</summary>
    public override bool CanRead => !_chain.IsDisposed;

    /// <summary>True until the stream is disposed.</summary>
    public override bool CanSeek => !_chain.IsDisposed;

    /// <summary>True until the stream is disposed.</summary>
    public override bool CanWrite => !_chain.IsDisposed;

    /// <summary>The bytes the stream holds.</summary>
    /// <exception cref="ObjectDisposedException">The stream was disposed.</exception>
    public override long Length
    {
        get
        {
            _chain.ThrowIfDisposed(TypeName);
            return _chain.EndIndex;
        }
    }

    /// <summary>The most bytes the stream may hold (<see cref="SegmentedBufferOptions.MaxLength"/>).</summary>
    public long MaxLength => _chain.Settings.MaxLength;

    /// <summary>Where the next read or write starts: from 0 up, also past the end.</summary>
    /// <exception cref="ArgumentOutOfRangeException">The value is negative.</exception>
    /// <exception cref="ObjectDisposedException">The stream was disposed.</exception>
    public override long Position
    {
        get
        {
            _chain.ThrowIfDisposed(TypeName);
            return _position;
        }

        set
        {
            _chain.ThrowIfDisposed(TypeName);
            if (value < 0)
            {
                SegmentThrowHelper.ThrowNegative(nameof(value), value);
            }

            _position = value;
        }
    }

    /// <summary>Reads up to <paramref name="buffer"/>'s length from the position; 0 at or past the end.</summary>
    /// <exception cref="ObjectDisposedException">The stream was disposed.</exception>
    public override int Read(Span<byte> buffer)
    {
        if (_position >= _chain.EndIndex)
        {
            // At or past the end (the last read of a read loop): no segment to touch, so no guard to take, as Length
            // and Seek take none.
            _chain.ThrowIfDisposed(TypeName);
            return 0;
        }

        _chain.EnterForOwnWork(TypeName);
        try
        {
            return ReadUnsynchronized(buffer);
        }
        finally
        {
            _chain.Exit();
        }
    }

    /// <inheritdoc cref="Read(Span{byte})" />
    /// <exception cref="ArgumentNullException"><paramref name="buffer"/> is <see langword="null"/>.</exception>
    /// <exception cref="ArgumentOutOfRangeException"><paramref name="offset"/> or <paramref name="count"/> is outside <paramref name="buffer"/>.</exception>
    public override int Read(byte[] buffer, int offset, int count)
    {
        ValidateBufferArguments(buffer, offset, count);
        return Read(buffer.AsSpan(offset, count));
    }

    /// <summary>Reads one byte, or returns -1 at or past the end.</summary>
    /// <exception cref="ObjectDisposedException">The stream was disposed.</exception>
    public override int ReadByte()
    {
        _chain.EnterForOwnWork(TypeName);
        try
        {
            long position = _position;
            if (position >= _chain.EndIndex)
            {
                return -1;
            }

            BufferSegment segment = Locate(position);
            byte value = segment.WrittenSpan[(int)(position - segment.RunningIndex)];
            _position = position + 1;
            return value;
        }
        finally
        {
            _chain.Exit();
        }
    }

    /// <summary>Writes <paramref name="buffer"/> at the position, growing the stream (zero-filling a gap before it) as needed.</summary>
    /// <exception cref="IOException">The write would take the stream past <see cref="MaxLength"/>; nothing was written.</exception>
    /// <exception cref="ObjectDisposedException">The stream was disposed.</exception>
    public override void Write(ReadOnlySpan<byte> buffer)
    {
        _chain.EnterForOwnWork(TypeName);
        try
        {
            // Read once (see ReadUnsynchronized): a second read, after another thread's misuse changed it, would
            // write past MaxLength or slice outside the data.
            long position = _position;
            BufferSegment? tail = _chain.Tail;
            if (tail is not null && position == tail.RunningIndex + tail.End && buffer.Length <= tail.Free && position <= MaxLength - buffer.Length)
            {
                // Appending into the tail's room: the common case.
                buffer.CopyTo(tail.AvailableSpan[tail.End..]);
                tail.End += buffer.Length;
                _position = position + buffer.Length;
                return;
            }

            WriteSlowUnsynchronized(buffer, position);
        }
        finally
        {
            _chain.Exit();
        }
    }

    /// <inheritdoc cref="Write(ReadOnlySpan{byte})" />
    /// <exception cref="ArgumentNullException"><paramref name="buffer"/> is <see langword="null"/>.</exception>
    /// <exception cref="ArgumentOutOfRangeException"><paramref name="offset"/> or <paramref name="count"/> is outside <paramref name="buffer"/>.</exception>
    public override void Write(byte[] buffer, int offset, int count)
    {
        ValidateBufferArguments(buffer, offset, count);
        Write(buffer.AsSpan(offset, count));
    }

    /// <summary>Writes one byte at the position.</summary>
    /// <inheritdoc cref="Write(ReadOnlySpan{byte})" />
    public override void WriteByte(byte value) => Write(new ReadOnlySpan<byte>(in value));

    /// <summary>Moves the position by <paramref name="offset"/> from <paramref name="origin"/>; past the end is allowed.</summary>
    /// <returns>The new position.</returns>
    /// <exception cref="IOException">The position would be negative.</exception>
    /// <exception cref="ArgumentOutOfRangeException">The position would overflow a <see cref="long"/>.</exception>
    /// <exception cref="ArgumentException"><paramref name="origin"/> is not a <see cref="SeekOrigin"/>.</exception>
    /// <exception cref="ObjectDisposedException">The stream was disposed.</exception>
    public override long Seek(long offset, SeekOrigin origin)
    {
        _chain.ThrowIfDisposed(TypeName);
        long start = origin switch
        {
            SeekOrigin.Begin => 0,
            SeekOrigin.Current => _position,
            SeekOrigin.End => _chain.EndIndex,
            _ => InvalidOrigin(origin),
        };
        long position = start + offset;
        if (offset > 0 && position < start)
        {
            SegmentThrowHelper.ThrowSeekOverflow(offset);
        }

        if (position < 0)
        {
            SegmentThrowHelper.ThrowSeekBeforeBegin();
        }

        _position = position;
        return position;
    }

    /// <summary>
    /// Sets the length: a longer stream is filled with zeros, a shorter one gives the segments past its end back to
    /// the pool. A position past the new end moves to it, as <see cref="MemoryStream"/>'s does. An emptied stream
    /// (<c>SetLength(0)</c>) keeps its first segment, empty, and grows past it as a new stream grows past its first
    /// segment, so a stream reused for message after message rents no first segment per message (its <see cref="Dispose(bool)"/> gives everything back);
    /// for the statistics it ends the message it held, as a writer's <c>Reset</c> does.
    /// </summary>
    /// <exception cref="ArgumentOutOfRangeException"><paramref name="value"/> is negative or above <see cref="MaxLength"/>.</exception>
    /// <exception cref="ObjectDisposedException">The stream was disposed.</exception>
    public override void SetLength(long value)
    {
        _chain.ThrowIfDisposed(TypeName);
        if ((ulong)value > (ulong)MaxLength)
        {
            SegmentThrowHelper.ThrowLengthOutOfRange(value, MaxLength);
        }

        _chain.EnterForOwnWork(TypeName);
        try
        {
            long length = _chain.EndIndex;
            if (value > length)
            {
                ExtendUnsynchronized(value - length, []);
            }
            else if (value < length)
            {
                // Before the segments go back, whose owners (another pool's) may throw: shortened is shortened.
                _position = Math.Min(_position, value);
                _chain.NoteShortened(length);
                if (value == 0)
                {
                    EmptyForNextMessageUnsynchronized(length);
                }
                else
                {
                    TruncateUnsynchronized(value);
                }
            }

            if (_position > value)
            {
                _position = value;
            }
        }
        finally
        {
            _chain.Exit();
        }
    }

    /// <summary>Does nothing: the data is in memory already.</summary>
    public override void Flush()
    {
    }

    /// <summary>The contents, without copying; valid until the stream is next written, shortened or disposed.</summary>
    /// <exception cref="ObjectDisposedException">The stream was disposed.</exception>
    public ReadOnlySequence<byte> GetReadOnlySequence()
    {
        _chain.EnterForOwnWork(TypeName);
        ReadOnlySequence<byte> contents;
        try
        {
            contents = ContentsUnsynchronized();
        }
        finally
        {
            _chain.Exit();
        }

        _chain.ThrowIfDisposed(TypeName);
        return contents;
    }

    /// <summary>
    /// Gives the contents as one memory, without copying, when they lie in one segment (or the stream is empty); the
    /// stand-in for <see cref="MemoryStream.TryGetBuffer"/>, since native memory has no array. Valid until the stream
    /// is next written, shortened or disposed.
    /// </summary>
    /// <returns>Whether the contents fit in one segment.</returns>
    /// <exception cref="ObjectDisposedException">The stream was disposed.</exception>
    public bool TryGetSingleSegment(out ReadOnlyMemory<byte> contents)
    {
        ReadOnlySequence<byte> sequence = GetReadOnlySequence();
        if (sequence.IsSingleSegment)
        {
            contents = sequence.First;
            return true;
        }

        contents = default;
        return false;
    }

    /// <summary>The contents in a new array, whatever the position.</summary>
    /// <exception cref="InvalidOperationException">The stream is longer than an array can be.</exception>
    /// <exception cref="ObjectDisposedException">
    /// The stream was disposed (unlike <see cref="MemoryStream.ToArray"/> after <see cref="Stream.Close"/>: its segments
    /// went back to the pool). A stream that wraps this one and closes it needs <c>leaveOpen: true</c>.
    /// </exception>
    public byte[] ToArray()
    {
        if (_chain.IsDisposed)
        {
            // Named apart: MemoryStream's ToArray works after Close, and a wrapping stream's close is the usual cause.
            SegmentThrowHelper.ThrowToArrayAfterDispose(TypeName);
        }

        _chain.EnterForOwnWork(TypeName);
        try
        {
            return ContentsUnsynchronized().ToArrayChecked();
        }
        finally
        {
            _chain.Exit();
        }
    }

    /// <summary>Disposes the stream (see <see cref="Dispose(bool)"/>).</summary>
    /// <remarks>The stream has no finalizer, so there is none to suppress (<see cref="Stream.Close"/> would ask the runtime to).</remarks>
    [SuppressMessage("Usage", "CA1816:Dispose methods should call SuppressFinalize", Justification = "A sealed stream without a finalizer: the call would only cost time on every message.")]
    public override void Close() => Dispose(true);

    /// <summary>Returns every segment to the pool; a second call, from any thread, does nothing.</summary>
    protected override void Dispose(bool disposing)
    {
        try
        {
            if (disposing)
            {
                _chain.Dispose();
            }
        }
        finally
        {
            // Also when an owner of another pool threw on dispose: the cursor's segment may serve another buffer now.
            if (disposing)
            {
                _cursor = null;
            }

            base.Dispose(disposing);
        }
    }

    /// <summary>The contents as a sequence over the segments; the caller holds the guard.</summary>
    private ReadOnlySequence<byte> ContentsUnsynchronized() => _chain.SequenceFromUnsynchronized(0);

    private static long InvalidOrigin(SeekOrigin origin)
    {
        SegmentThrowHelper.ThrowInvalidOrigin(origin);
        return 0;
    }
}
