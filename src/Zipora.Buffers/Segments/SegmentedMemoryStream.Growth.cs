using System;
using System.Buffers;
using System.Runtime.CompilerServices;

namespace Zipora.Buffers;

/// <summary>Reading and writing among the segments, and growing and shortening the stream; the caller holds the guard.</summary>
public sealed partial class SegmentedMemoryStream
{
    /// <remarks>
    /// The position is read once, here, and written once, at the end: the setter and <see cref="Seek"/> take no guard,
    /// so another thread misusing the stream may change the field meanwhile, and a second read would disagree with the
    /// first (a slice past the data, a segment search past the tail).
    /// </remarks>
    private int ReadUnsynchronized(Span<byte> buffer)
    {
        long position = _position;
        long available = _chain.EndIndex - position;
        if (available <= 0 || buffer.IsEmpty)
        {
            return 0;
        }

        int count = (int)Math.Min(buffer.Length, available);
        BufferSegment segment = Locate(position);
        int offset = (int)(position - segment.RunningIndex);
        if (segment.End - offset < count && OverlapsParts(buffer[..count], segment, offset, count))
        {
            return ReadThroughCopy(buffer[..count]);
        }

        int copied = 0;
        while (true)
        {
            int part = Math.Min(segment.End - offset, count - copied);
            segment.WrittenSpan.Slice(offset, part).CopyTo(buffer[copied..]);
            copied += part;
            if (copied == count)
            {
                break;
            }

            segment = segment.NextSegment!;
            offset = 0;
        }

        MoveCursorTo(segment);
        _position = position + count;
        return count;
    }

    /// <summary>
    /// A read into memory of this stream's own (a view of <see cref="GetReadOnlySequence"/> or of
    /// <see cref="TryGetSingleSegment"/>'s memory made writable) that spans segments: a part copied early could overwrite a
    /// source part copied later, so the bytes go through a copy and arrive as from one memmove, as MemoryStream's do.
    /// </summary>
    [MethodImpl(MethodImplOptions.NoInlining)]
    private int ReadThroughCopy(Span<byte> buffer)
    {
        byte[] copy = ArrayPool<byte>.Shared.Rent(buffer.Length);
        try
        {
            int count = ReadUnsynchronized(copy.AsSpan(0, buffer.Length));
            copy.AsSpan(0, count).CopyTo(buffer);
            return count;
        }
        finally
        {
            // The copy held this stream's bytes: nobody else's to read.
            ArrayPool<byte>.Shared.Return(copy, clearArray: true);
        }
    }

    /// <summary>Whether <paramref name="memory"/> overlaps any of the <paramref name="count"/> bytes held from <paramref name="offset"/> of <paramref name="segment"/> on.</summary>
    private static bool OverlapsParts(ReadOnlySpan<byte> memory, BufferSegment segment, int offset, int count)
    {
        while (true)
        {
            int part = Math.Min(segment.End - offset, count);
            if (memory.Overlaps(segment.AvailableSpan.Slice(offset, part)))
            {
                return true;
            }

            count -= part;
            if (count == 0)
            {
                return false;
            }

            segment = segment.NextSegment!;
            offset = 0;
        }
    }

    /// <summary>Writes <paramref name="buffer"/> at <paramref name="position"/> (the position, read once by the caller: see <see cref="ReadUnsynchronized"/>), and moves the position past it.</summary>
    private void WriteSlowUnsynchronized(ReadOnlySpan<byte> buffer, long position)
    {
        if (position > MaxLength - buffer.Length)
        {
            SegmentThrowHelper.ThrowStreamTooLong(position, buffer.Length, MaxLength);
        }

        long length = _chain.EndIndex;
        long end = position + buffer.Length;
        int overwritten = (int)Math.Clamp(length - position, 0, buffer.Length);
        if (overwritten != 0 && SourceOverlapsTheBytesItOverwrites(buffer[..overwritten], position))
        {
            WriteThroughCopy(buffer, position);
            return;
        }

        if (end > length)
        {
            // The part past the end is appended first (with zeros before it when the position is past the end): it
            // is the only part that can fail, and a failure leaves the stream as it was.
            int overlap = (int)Math.Max(0, length - position);
            ExtendUnsynchronized(Math.Max(0, position - length), buffer[overlap..]);
            buffer = buffer[..overlap];
        }

        if (!buffer.IsEmpty)
        {
            Overwrite(position, buffer);
        }

        _position = end;
    }

    /// <summary>
    /// Whether <paramref name="source"/>, to be written over the bytes from the position on, lies in this stream's own
    /// memory across the segments it overwrites (a view of <see cref="GetReadOnlySequence"/>, or of
    /// <see cref="TryGetSingleSegment"/>'s memory, written back moved): copied part by part, an early part would overwrite
    /// source bytes a later part still has to read. Within one segment the copy is a memmove, which needs no help.
    /// </summary>
    private bool SourceOverlapsTheBytesItOverwrites(ReadOnlySpan<byte> source, long position)
    {
        BufferSegment segment = Locate(position);
        int offset = (int)(position - segment.RunningIndex);
        return segment.End - offset < source.Length && OverlapsParts(source, segment, offset, source.Length);
    }

    /// <summary>Writes <paramref name="buffer"/> from a copy, taken before anything changes: as one memmove would, as MemoryStream's write does.</summary>
    [MethodImpl(MethodImplOptions.NoInlining)]
    private void WriteThroughCopy(ReadOnlySpan<byte> buffer, long position)
    {
        byte[] copy = ArrayPool<byte>.Shared.Rent(buffer.Length);
        try
        {
            buffer.CopyTo(copy);
            WriteSlowUnsynchronized(copy.AsSpan(0, buffer.Length), position);
        }
        finally
        {
            // The copy held this stream's bytes: nobody else's to read.
            ArrayPool<byte>.Shared.Return(copy, clearArray: true);
        }
    }

    /// <summary>Appends <paramref name="zeros"/> zero bytes, then <paramref name="data"/>; on failure, shortens the stream back.</summary>
    private void ExtendUnsynchronized(long zeros, ReadOnlySpan<byte> data)
    {
        _indexCount = 0;
        long length = _chain.EndIndex;

        // A stream that held no segment holds none after a failure either: the shrink to 0 keeps the first segment.
        bool heldASegment = _chain.Head is not null;
        try
        {
            while (zeros > 0)
            {
                BufferSegment tail = TailWithRoomUnsynchronized(zeros);
                int part = (int)Math.Min(tail.Free, zeros);

                // Pool memory is not zeroed, and a shortened segment still holds its old bytes past the end.
                tail.AvailableSpan.Slice(tail.End, part).Clear();
                tail.End += part;
                zeros -= part;
            }

            while (!data.IsEmpty)
            {
                BufferSegment tail = TailWithRoomUnsynchronized(data.Length);
                int part = Math.Min(tail.Free, data.Length);
                data[..part].CopyTo(tail.AvailableSpan[tail.End..]);
                tail.End += part;
                data = data[part..];
            }
        }
        catch
        {
            // Out of memory (or past the pool's limit): give back what this call rented, then let the caller see why.
            if (heldASegment)
            {
                TruncateUnsynchronized(length);
            }
            else
            {
                ReleaseEverySegmentUnsynchronized();
            }

            throw;
        }
    }

    private BufferSegment TailWithRoomUnsynchronized(long wanted)
    {
        BufferSegment? tail = _chain.Tail;
        if (tail is not null && tail.Free > 0)
        {
            return tail;
        }

        return _chain.AppendUnsynchronized((int)Math.Min(wanted, _chain.Settings.MaxSegmentSize));
    }

    /// <summary>
    /// Shortens the stream to <paramref name="length"/> bytes, giving every segment past it back. Emptied, it keeps its
    /// first segment, empty, as <c>MemoryStream</c> keeps its capacity, and grows past it as a new stream grows past
    /// its first segment: a stream reused for message after message (<c>SetLength(0)</c>) neither rents its first block
    /// again each time nor walks its segments up to the largest size.
    /// </summary>
    private void TruncateUnsynchronized(long length)
    {
        // The cursor may be among the segments let go of: a released segment may already serve another buffer.
        _cursor = null;
        _indexCount = 0;
        if (length == 0)
        {
            BufferSegment? head = _chain.Head;
            if (head is null)
            {
                _chain.RestartGrowth();
                return;
            }

            head.End = 0;
            _chain.RestartGrowthAfter(head.Capacity);
            _chain.ReleaseAfterUnsynchronized(head);
            return;
        }

        BufferSegment last = Locate(length - 1);
        last.End = (int)(length - last.RunningIndex);
        try
        {
            _chain.ReleaseAfterUnsynchronized(last);
        }
        finally
        {
            // The search above may have indexed the segments just let go of, which may serve another buffer now, also
            // when an owner of another pool threw on dispose.
            _cursor = null;
            _indexCount = 0;
        }
    }

    /// <summary>
    /// Empties the stream for its next message (<c>SetLength(0)</c> of a stream of <paramref name="messageLength"/> bytes):
    /// keeps its first segment (see <see cref="TruncateUnsynchronized"/>) and ends the message for the statistics, as a
    /// writer's <c>Reset</c> does. Without the end, a stream reused for message after message counted none of them when
    /// emptied before its dispose, or one holding every segment all of them rented.
    /// </summary>
    private void EmptyForNextMessageUnsynchronized(long messageLength)
    {
        try
        {
            TruncateUnsynchronized(0);
        }
        finally
        {
            // Ended whether or not an owner of another pool threw on dispose: the stream is emptied either way. The end
            // counts the kept head in the next message and restarts the growth, which then moves on past the head again.
            _chain.EndMessage(messageLength);
            if (_chain.Head is { } head)
            {
                _chain.RestartGrowthAfter(head.Capacity);
            }
        }
    }

    /// <summary>Gives every segment back, the first one too: the stream holds nothing, as a new one.</summary>
    private void ReleaseEverySegmentUnsynchronized()
    {
        _cursor = null;
        _indexCount = 0;
        _chain.RestartGrowth();
        _chain.ReleaseAfterUnsynchronized(null);
    }

    /// <summary>Copies <paramref name="data"/> over the bytes held from <paramref name="position"/> on (all within the length).</summary>
    private void Overwrite(long position, ReadOnlySpan<byte> data)
    {
        BufferSegment segment = Locate(position);
        int offset = (int)(position - segment.RunningIndex);
        while (true)
        {
            int part = Math.Min(segment.End - offset, data.Length);
            data[..part].CopyTo(segment.AvailableSpan[offset..]);
            data = data[part..];
            if (data.IsEmpty)
            {
                break;
            }

            segment = segment.NextSegment!;
            offset = 0;
        }

        MoveCursorTo(segment);
    }

    /// <summary>Moves the cursor to <paramref name="segment"/>; a sequential read or write mostly finds it there already.</summary>
    private void MoveCursorTo(BufferSegment segment)
    {
        // Compared first: storing a reference costs a write barrier even when the field already holds it.
        if (!ReferenceEquals(_cursor, segment))
        {
            _cursor = segment;
        }
    }

    /// <summary>The segment that holds the byte at <paramref name="position"/> (below the length).</summary>
    private BufferSegment Locate(long position)
    {
        BufferSegment? segment = _cursor;
        if (segment is null || segment.RunningIndex > position)
        {
            // Behind the cursor: the head when it is there, else a binary search, so reading a long stream backwards
            // does not walk it from the head at every read.
            BufferSegment head = _chain.Head!;
            segment = position < head.RunningIndex + head.End ? head : FromIndex(position);
        }

        while (position >= segment.RunningIndex + segment.End)
        {
            segment = segment.NextSegment!;
        }

        MoveCursorTo(segment);
        return segment;
    }

    /// <summary>The last segment that starts at or before <paramref name="position"/>, from the index of the segments (built when needed).</summary>
    private BufferSegment FromIndex(long position)
    {
        if (_indexCount == 0)
        {
            int count = 0;
            for (BufferSegment? segment = _chain.Head; segment is not null; segment = segment.NextSegment)
            {
                count++;
            }

            if (_index is null || _index.Length < count)
            {
                _index = new BufferSegment[Math.Max(count, 2 * (_index?.Length ?? 0))];
            }

            int at = 0;
            for (BufferSegment? segment = _chain.Head; segment is not null; segment = segment.NextSegment)
            {
                _index[at++] = segment;
            }

            _indexCount = count;
        }

        int low = 0;
        int high = _indexCount - 1;
        while (low < high)
        {
            int middle = (low + high + 1) >>> 1;
            if (_index![middle].RunningIndex <= position)
            {
                low = middle;
            }
            else
            {
                high = middle - 1;
            }
        }

        return _index![low];
    }
}
