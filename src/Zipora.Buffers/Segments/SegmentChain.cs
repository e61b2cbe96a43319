using System;
using System.Buffers;
using System.Collections.Generic;
using System.Diagnostics;
using System.Runtime.CompilerServices;
using System.Threading;

namespace Zipora.Buffers;

/// <summary>
/// The segments of one <see cref="SegmentedBufferWriter"/> or <see cref="SegmentedMemoryStream"/>, head to tail, and
/// how the next one is rented. A struct embedded in its buffer, so a buffer is one object; never copied.
/// </summary>
/// <remarks>
/// <para>
/// Segments are added and let go of only between <see cref="TryEnter"/> and <see cref="Exit"/> (the methods named
/// <c>...Unsynchronized</c>): a buffer is not thread-safe, but two threads misusing it at once are told so instead
/// of both releasing one segment. Were they not, the loser could find the segment already reused by another buffer
/// and return that buffer's block: a block handed to two owners. <see cref="Dispose"/> may come from any thread at
/// any time; the thread inside a guarded call then releases everything as it leaves.
/// </para>
/// <para>
/// Every call that reads or writes a segment's memory, or walks the chain, holds the guard for as long as it does
/// (an asynchronous copy until it completes): a dispose that comes meanwhile is done by that call as it leaves, so
/// no call ever touches a segment, or a block, that already went back and may serve another buffer.
/// </para>
/// <para>
/// This file holds the chain and its segments' comings and goings; <c>SegmentChain.Guard.cs</c> the guard;
/// <c>SegmentChain.KeptBlocks.cs</c> the block a thread's last message left for its next.
/// </para>
/// </remarks>
internal partial struct SegmentChain
{
    private SegmentedBufferSettings _settings;
    private SegmentedBufferTracker? _tracker;

    // Proves this buffer still holds _tracker: the pool's sweep moves it on when it finds the buffer collected.
    private int _ticket;

    // The tracker's token, held here alone while the buffer holds the tracker: it goes when the buffer goes.
    private object? _token;
    private BufferSegment? _head;
    private BufferSegment? _tail;
    private int _nextSegmentSize;
    private int _segmentsThisMessage;
    private long _state;
    private int _disposed;

    public readonly BufferSegment? Head => _head;

    public readonly BufferSegment? Tail => _tail;

    /// <summary>
    /// The head, read once for a call that holds no guard: a dispose on another thread may clear the field at any
    /// moment. Volatile, so the JIT neither takes it for another read of the field nor reads the field again for it:
    /// a plain second read of a field the method never writes may lose its null check, as the JIT takes it for the
    /// first (a racing dispose then made a quiet read throw <see cref="NullReferenceException"/>).
    /// </summary>
    public readonly BufferSegment? HeadReadOnce => Volatile.Read(ref Unsafe.AsRef(in _head));

    /// <summary>The tail, read once for a call that holds no guard (see <see cref="HeadReadOnce"/>).</summary>
    public readonly BufferSegment? TailReadOnce => Volatile.Read(ref Unsafe.AsRef(in _tail));

    /// <summary>The index just past the last written byte (0 with no segment).</summary>
    public readonly long EndIndex
    {
        get
        {
            // One read of the tail: a dispose racing on another thread may clear the field between two.
            BufferSegment? tail = _tail;
            return tail is null ? 0 : tail.RunningIndex + tail.End;
        }
    }

    public readonly bool IsDisposed => Volatile.Read(ref Unsafe.AsRef(in _disposed)) != 0;

    /// <summary>The options the buffer was created with.</summary>
    public readonly SegmentedBufferSettings Settings => _settings;

    /// <summary>
    /// Rents a segment of at least <paramref name="minimumSize"/> bytes (the growth policy's next size when that is
    /// larger) and links it after the tail.
    /// </summary>
    public BufferSegment AppendUnsynchronized(int minimumSize)
    {
        BufferSegment segment;
        int size = GrowthSize(minimumSize);
        if (_tracker is { SpareSegment: { } spare } tracker && FitsKeptBlock(spare.Capacity, size))
        {
            // The block the thread's last message ended in, of the class the pool would rent for this size: nothing to
            // rent, nothing to attach, and it is already counted as held.
            tracker.SpareSegment = null;
            segment = spare;
            segment.MoveTo(EndIndex);
            MoveGrowthOn(size);
        }
        else
        {
            // The segment object first: out of managed memory for it (or for the thread-statics of the segment cache)
            // the rent throws before a block is taken, which would otherwise be held by nothing until its finalizer ran.
            segment = RentSegment();
            IMemoryOwner<byte> owner = RentOwner(minimumSize, size, out Memory<byte> memory);
            segment.Attach(owner, memory, EndIndex);
            _tracker?.AddBytesHeld(segment.Capacity);
        }

        _segmentsThisMessage++;

        if (_tail is null)
        {
            _head = segment;
        }
        else
        {
            _tail.SetNext(segment);
        }

        _tail = segment;
        return segment;
    }

    /// <summary>
    /// Gives the empty tail a block of at least <paramref name="minimumSize"/> bytes in place of its own, in the same
    /// segment: a sequence or position taken before stays valid (the segment held no data), nothing is searched for,
    /// and the new block is rented first, so a refusal leaves the tail as it was. When it is the only segment, the
    /// message is still empty, and grows from the initial size as a new one does (so a writer that took its thread's
    /// kept block at construction grows as one that rents its first block now).
    /// </summary>
    public BufferSegment GrowEmptyTailUnsynchronized(int minimumSize)
    {
        BufferSegment tail = _tail!;
        Debug.Assert(tail.End == 0, "only an empty tail is given a larger block");
        if (ReferenceEquals(tail, _head))
        {
            RestartGrowth();
        }

        IMemoryOwner<byte> owner = RentOwner(minimumSize, GrowthSize(minimumSize), out Memory<byte> memory);
        BlockRelease old = tail.Swap(owner, memory);
        _tracker?.AddBytesHeld(tail.Capacity - old.Capacity);
        old.Dispose();
        return tail;
    }

    /// <summary>
    /// The data from <paramref name="headStart"/> in the head to the tail's end, as a sequence over the segments, without
    /// copying; the caller holds the guard.
    /// </summary>
    public readonly ReadOnlySequence<byte> SequenceFromUnsynchronized(int headStart)
    {
        BufferSegment? head = _head;
        if (head is null)
        {
            // Not ReadOnlySequence<byte>.Empty, whose positions are an array's: default's hold no object.
            return default;
        }

        BufferSegment tail = _tail!;
        return new ReadOnlySequence<byte>(head, headStart, tail, tail.End);
    }

    /// <summary>Notes for the statistics that the message, <paramref name="length"/> bytes long, is being shortened: its length is the most it held.</summary>
    public readonly void NoteShortened(long length) => _tracker?.NoteShortened(length);

    /// <summary>Starts the growth over from the initial size: a writer emptied by a consume is a new message's start.</summary>
    public void RestartGrowth() => _nextSegmentSize = _settings.InitialSegmentSize;

    /// <summary>Starts the growth over as after a first segment of <paramref name="capacity"/> bytes: an emptied buffer's kept head.</summary>
    public void RestartGrowthAfter(int capacity)
    {
        RestartGrowth();
        MoveGrowthOn(capacity);
    }

    /// <summary>Lets go of every segment before <paramref name="newHead"/>, which becomes the head.</summary>
    /// <remarks>A block whose owner throws on dispose (another pool's) does not keep the others: each is let go of, then the error is thrown.</remarks>
    public void ReleaseBeforeUnsynchronized(BufferSegment newHead)
    {
        BufferSegment? first = _head;
        _head = newHead;
        ReleaseEach(first, newHead);
    }

    /// <summary>Lets go of every segment after <paramref name="last"/> (every segment for <see langword="null"/>); it becomes the tail.</summary>
    /// <remarks>A block whose owner throws on dispose (another pool's) does not keep the others: each is let go of, then the error is thrown.</remarks>
    public void ReleaseAfterUnsynchronized(BufferSegment? last)
    {
        BufferSegment? next = last is null ? _head : last.NextSegment;
        if (last is null)
        {
            _head = null;
        }
        else
        {
            last.SetNext(null);
        }

        _tail = last;
        if (next is not null)
        {
            // Not called for nothing: every dispose of a buffer whose head stays whole comes here with no segment left.
            ReleaseEach(next, stopAt: null);
        }
    }

    /// <summary>
    /// Lets go of <paramref name="first"/> and the segments after it up to <paramref name="stopAt"/> (not included),
    /// already unlinked from the chain; every one of them, then the errors their owners threw.
    /// </summary>
    private void ReleaseEach(BufferSegment? first, BufferSegment? stopAt)
    {
        BufferSegment? next = first;
        Exception? firstError = null;
        List<Exception>? laterErrors = null;
        int unrecorded = 0;
        while (next is not null && next != stopAt)
        {
            BufferSegment current = next;
            next = current.NextSegment;
            try
            {
                Release(current);
            }
            catch (Exception error)
            {
                // The first error is kept without allocating: at the GC heap limit a list made here would throw out of
                // this handler and leave every later segment's block held for good.
                if (firstError is null)
                {
                    firstError = error;
                }
                else if (!TryRecord(ref laterErrors, error))
                {
                    unrecorded++;
                }
            }
        }

        if (firstError is not null)
        {
            SegmentThrowHelper.ThrowOwnersFailedToDispose(firstError, laterErrors, unrecorded);
        }
    }

    /// <summary>
    /// Ends a message of <paramref name="length"/> bytes for the statistics (the segments still held count in the next);
    /// the growth starts over, unless no byte was written (no message, as the statistics say: a writer that took its
    /// thread's kept block grows on as one that rents its first).
    /// </summary>
    public void EndMessage(long length)
    {
        _tracker?.EndMessage(_segmentsThisMessage, length);
        _segmentsThisMessage = _head is null ? 0 : CountSegments();
        if (length != 0)
        {
            _nextSegmentSize = _settings.InitialSegmentSize;
        }
    }

    /// <summary>What the growth policy rents for <paramref name="minimumSize"/> bytes: the next size when larger, within what the pool serves.</summary>
    private readonly int GrowthSize(int minimumSize)
    {
        Debug.Assert(minimumSize > 0 && minimumSize <= _settings.MaxRentSize, "the caller checks the size against the pool");
        return Math.Min(Math.Max(minimumSize, _nextSegmentSize), _settings.MaxRentSize);
    }

    /// <summary>Moves the growth on past a segment of <paramref name="size"/> bytes.</summary>
    private void MoveGrowthOn(int size) =>
        _nextSegmentSize = (int)Math.Min(Math.Max((long)size, _nextSegmentSize) * 2, _settings.MaxSegmentSize);

    /// <summary>
    /// Rents a block of <paramref name="size"/> bytes (<see cref="GrowthSize"/> of <paramref name="minimumSize"/>), and
    /// moves the growth on. <paramref name="memory"/> is the owner's memory, read once (default for a tiered pool's
    /// block handed out as its manager, whose segment reads the manager itself).
    /// </summary>
    private IMemoryOwner<byte> RentOwner(int minimumSize, int size, out Memory<byte> memory)
    {
        SegmentedBufferSettings settings = _settings;
        IMemoryOwner<byte> owner;
        memory = default;
        if (settings.Tiered is { } tiered)
        {
            // The pool's own blocks are at least as long as asked: no check, no interface call for the length.
            owner = tiered.RentForSegment(size);
            if (owner is not Native.NativeMemoryManager)
            {
                // The pool's own owner of a diagnostic rent, which the segment takes as another pool's: its memory.
                memory = owner.Memory;
            }
        }
        else
        {
            owner = settings.Pool.Rent(size);

            // Read once, and the memory checked is the memory the segment takes: an owner that answered a second
            // read with less (a pool's bug) passed the check and gave GetSpan(100) one byte, and a stream a segment
            // per byte. An owner whose Memory throws (one its pool disposed already) goes back, and its error on.
            try
            {
                memory = owner.Memory;
            }
            catch
            {
                owner.Dispose();
                throw;
            }

            if (memory.Length < minimumSize)
            {
                owner.Dispose();
                SegmentThrowHelper.ThrowPoolGaveTooLittle(minimumSize);
            }
        }

        MoveGrowthOn(size);
        return owner;
    }

    /// <summary>
    /// An empty segment object: the buffer's spare (whose kept block, of another size, goes back first), else one from
    /// the thread's cache.
    /// </summary>
    private BufferSegment RentSegment()
    {
        if (_tracker is not { SpareSegment: { } spare } tracker)
        {
            return BufferSegmentCache.Rent();
        }

        tracker.SpareSegment = null;
        if (spare.TryDetach(out BlockRelease kept))
        {
            tracker.AddBytesHeld(-kept.Capacity);
            kept.Dispose();
        }

        return spare;
    }

    private readonly int CountSegments()
    {
        int count = 0;
        for (BufferSegment? current = _head; current is not null; current = current.NextSegment)
        {
            count++;
        }

        return count;
    }

    /// <summary>Adds <paramref name="error"/> to <paramref name="errors"/>; false when there was no managed memory to.</summary>
    private static bool TryRecord(ref List<Exception>? errors, Exception error)
    {
        try
        {
            (errors ??= []).Add(error);
            return true;
        }
        catch (OutOfMemoryException)
        {
            // Counted instead, and named in the exception thrown once every segment is released.
            return false;
        }
    }

    private void Release(BufferSegment segment)
    {
        if (segment.TryDetach(out BlockRelease block))
        {
            _tracker?.AddBytesHeld(-block.Capacity);

            // The object goes back before the block, whose owner may throw (another pool's): kept as the buffer's spare
            // for its next segment, else in the thread's cache.
            if (_tracker is { SpareSegment: null } tracker)
            {
                tracker.SpareSegment = segment;
            }
            else
            {
                BufferSegmentCache.Return(segment);
            }

            block.Dispose();
        }
    }
}
