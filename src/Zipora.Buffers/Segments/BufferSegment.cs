using System;
using System.Buffers;
using System.Diagnostics;
using System.Runtime.CompilerServices;
using Zipora.Buffers.Native;

namespace Zipora.Buffers;

/// <summary>
/// One segment of a segmented buffer: a rented block, the bytes written into it, and its place in the chain. The
/// object is pooled (<see cref="BufferSegmentCache"/>) and holds no block while it waits there.
/// </summary>
internal sealed class BufferSegment : ReadOnlySequenceSegment<byte>
{
    private IMemoryOwner<byte>? _owner;

    // A pool block's generation when it was attached (a pooled block has no owner of its own to check it, see
    // BlockRelease); 0 for another pool's owner.
    private int _generation;

    // The whole memory usable in this segment, fixed while it holds a block; Memory (the base's) is its written prefix.
    private Memory<byte> _available;
    private nint _blockAddress;
    private int _end;

    /// <summary>Bytes written into the segment: its <see cref="ReadOnlySequenceSegment{T}.Memory"/> is that prefix.</summary>
    public int End
    {
        get => _end;
        set
        {
            // No assertion: a buffer misused from two threads can get here with a released segment, and the slice
            // then throws, where a failed assertion would end a debug build's process.
            Memory = _available[..value];
            _end = value;
        }
    }

    /// <summary>
    /// Whether the segment is a writer's first, holding its thread's kept block (see
    /// <see cref="SegmentChain.TakeKeptBlockAsHead"/>), which no <c>GetMemory</c> or <c>GetSpan</c> gave yet: the
    /// writer's <c>Advance</c> counts nothing into it until one does. Kept on the segment, which <c>Advance</c> reads
    /// anyway: a field of the writer's, set at construction and read by <c>Advance</c> after <c>GetSpan</c> cleared it,
    /// made the 1 KB message 13 ns slower, this one 4-6 ns (section 36 of perf/RESULTS.md).
    /// </summary>
    public bool IsKeptAndNotGiven { get; set; }

    /// <summary>Whether the segment's pool block is still the one it was given (the pool has not reclaimed it as leaked since).</summary>
    public bool StillHoldsItsBlock => _owner is not NativeMemoryManager block || block.Generation == _generation;

    /// <summary>
    /// Whether the segment still holds the block <paramref name="releaser"/> gave it (not reclaimed since as leaked):
    /// such a block may stay with the segment when the segment is let go of whole.
    /// </summary>
    public bool HoldsBlockOf(INativeMemoryReleaser releaser) =>
        _owner is NativeMemoryManager block && block.Releaser == releaser && block.Generation == _generation;

    /// <summary>Bytes the segment can hold (0 with no block).</summary>
    public int Capacity => _available.Length;

    /// <summary>Bytes still free after <see cref="End"/>.</summary>
    public int Free => _available.Length - _end;

    /// <summary>The whole memory of the segment, written or not.</summary>
    public Memory<byte> AvailableMemory => _available;

    /// <summary>
    /// The whole memory of the segment as a span, built as <see cref="SpanOf"/> builds one. For the holder of the
    /// buffer's guard.
    /// </summary>
    public Span<byte> AvailableSpan => SpanOf(_available, _blockAddress, 0);

    /// <summary>The written bytes as a span. For the holder of the buffer's guard.</summary>
    public Span<byte> WrittenSpan => AvailableSpan[.._end];

    /// <summary>
    /// <paramref name="memory"/> from <paramref name="start"/> as a span: a pool block's straight from its
    /// <paramref name="address"/> (where <paramref name="memory"/> begins), without the manager's virtual
    /// <c>GetSpan</c> that the memory's span would call; another pool's (address 0) through its memory and its checks.
    /// </summary>
    public static unsafe Span<byte> SpanOf(Memory<byte> memory, nint address, int start) =>
        address != 0 ? new Span<byte>((byte*)address + start, memory.Length - start) : memory.Span[start..];

    /// <summary>Where a pool block's memory starts (native, never moves); 0 for another pool's owner, reached through <see cref="AvailableMemory"/>.</summary>
    public nint BlockAddress => _blockAddress;

    /// <summary>The next segment, or <see langword="null"/> for the tail.</summary>
    /// <remarks>
    /// Without a cast: only <see cref="SetNext"/> links segments, and it takes a <see cref="BufferSegment"/> (the base's
    /// setter is protected), so the checked cast's helper call would prove nothing on every step of every walk.
    /// </remarks>
    public BufferSegment? NextSegment => Unsafe.As<BufferSegment?>(Next);

    /// <summary>Takes <paramref name="owner"/>'s memory (<paramref name="memory"/> for another pool's owner, read once), placed at <paramref name="runningIndex"/>.</summary>
    public void Attach(IMemoryOwner<byte> owner, Memory<byte> memory, long runningIndex)
    {
        Debug.Assert(_owner is null && _end == 0 && Memory.IsEmpty, "a cached segment holds no block and no data");
        Take(owner, memory);
        RunningIndex = runningIndex;

        // Nothing written yet: the (empty) written prefix the detach or the constructor left stands.
    }

    /// <summary>
    /// Gives the segment <paramref name="owner"/>'s block in place of its own, which it returns to be given back; its
    /// place in the chain stays (<paramref name="memory"/> as for <see cref="Attach"/>). Only for a segment with nothing
    /// written, under its buffer's guard.
    /// </summary>
    public BlockRelease Swap(IMemoryOwner<byte> owner, Memory<byte> memory)
    {
        Debug.Assert(_owner is not null && _end == 0, "a held, empty segment");
        var old = new BlockRelease(_owner!, _generation, _available.Length);
        Take(owner, memory);
        End = 0;
        return old;
    }

    /// <summary>Makes <paramref name="next"/> follow this segment (or ends the chain here for <see langword="null"/>).</summary>
    public void SetNext(BufferSegment? next) => Next = next;

    /// <summary>Moves the segment to a new place in the running index (a writer's tail reused from the start).</summary>
    public void MoveTo(long runningIndex) => RunningIndex = runningIndex;

    /// <summary>
    /// Marks the kept block returned while it waits in a thread's cache (memory kept past the last message refuses every
    /// use, as after a return); <see cref="UnparkBlock"/> hands it out again, <see cref="ReleaseParkedBlock"/> gives it
    /// back. The segment must hold a pool block (see <see cref="HoldsBlockOf"/>).
    /// </summary>
    public void ParkBlock() => ((NativeMemoryManager)_owner!).MarkReturnedForReuse();

    /// <summary>Hands the block parked with <see cref="ParkBlock"/> out again, to the buffer that took the segment.</summary>
    public void UnparkBlock() => ((NativeMemoryManager)_owner!).Reactivate();

    /// <summary>Takes the parked block away from the segment and gives it to its tier (it is already marked returned).</summary>
    public void ReleaseParkedBlock()
    {
        var block = (NativeMemoryManager)_owner!;
        _ = TryDetach(out _);
        block.Releaser!.Release(block);
    }

    /// <summary>
    /// Forgets the bytes written and the place in the chain, and keeps the block: the segment, let go of whole, waits
    /// for the next message of its thread. Under the buffer's guard.
    /// </summary>
    public void ClearKeepingBlock()
    {
        IsKeptAndNotGiven = false;
        _end = 0;
        Memory = default;
        Next = null;
        RunningIndex = 0;
    }

    /// <summary>
    /// Takes the block away from the segment and forgets everything; the caller then gives the block back with
    /// <see cref="BlockRelease.Dispose"/>. Called only under the buffer's guard, which lets one call in at a time, so a
    /// block is taken once and returned once without an interlocked instruction here.
    /// </summary>
    /// <returns>Whether the segment held a block.</returns>
    public bool TryDetach(out BlockRelease block)
    {
        IMemoryOwner<byte>? owner = _owner;
        if (owner is null)
        {
            block = default;
            return false;
        }

        block = new BlockRelease(owner, _generation, _available.Length);
        IsKeptAndNotGiven = false;
        _owner = null;
        _available = default;
        _blockAddress = 0;
        _end = 0;
        Memory = default;
        Next = null;
        RunningIndex = 0;
        return true;
    }

    /// <summary>Holds <paramref name="owner"/>: the pool's own block's memory is read from its manager, another pool's is <paramref name="memory"/>, as its rent read and checked it.</summary>
    private void Take(IMemoryOwner<byte> owner, Memory<byte> memory)
    {
        _owner = owner;
        if (owner is NativeMemoryManager block)
        {
            // The sealed class called directly: no interface dispatch for the memory of every segment.
            _available = block.Memory;
            _generation = block.Generation;

            // The owner's memory is the whole block, from its address.
            _blockAddress = block.Address;
        }
        else
        {
            // Not read again: a second read may answer otherwise (see SegmentChain.RentOwner).
            _available = memory;
            _generation = 0;
            _blockAddress = 0;
        }
    }
}
