using System;
using System.Buffers;

namespace Zipora.Buffers;

/// <summary>
/// The reads without the guard behind the common <see cref="GetSpan"/>, <see cref="GetMemory"/> and
/// <see cref="GetReadOnlySequence"/>: each reads, then checks that no call ran meanwhile (see
/// <see cref="SegmentChain.TryStartRead"/>); only when one did is the guard taken.
/// </summary>
public sealed partial class SegmentedBufferWriter
{
    /// <summary>
    /// The tail's memory, block address (0 for another pool's) and written length when its free room holds
    /// <paramref name="sizeHint"/> bytes within <see cref="MaxLength"/>, read without the guard (the common
    /// GetSpan/GetMemory, which changes nothing): true only if no call ran meanwhile, the writer was not disposed and
    /// the pool took nothing of it (<see cref="SegmentChain.IsStillItsOwn"/>). The values come from one consistent read and are used as read, so a dispose racing on another thread after the
    /// check cannot make the slice fail.
    /// </summary>
    private bool TryGetTailRoom(int sizeHint, out Memory<byte> available, out nint address, out int end)
    {
        if (_chain.TryStartRead(out long version) && sizeHint >= 0 && _chain.TailReadOnce is { } tail && _chain.HeadReadOnce is { } head)
        {
            available = tail.AvailableMemory;
            address = tail.BlockAddress;
            end = tail.End;
            long free = available.Length - end;

            // The length from the head and tail read once above, not from Length, which would read the fields again.
            long length = tail.RunningIndex + end - head.RunningIndex - _headStart;
            if (Math.Max(sizeHint, 1) <= free && free <= MaxLength - length && _chain.IsStillItsOwn(tail) && _chain.ReadWasQuiet(version))
            {
                // A dispose may have raised its flag without taking the guard yet: its segments are not handed out.
                _chain.ThrowIfDisposed(TypeName);

                // Given now (see Advance); stored only while set, so only a message's first call stores. A dispose racing
                // this call may have let the segment go meanwhile, to a writer that took it as its own kept head: the
                // mark cleared there only leaves that writer's Advance before its first GetSpan unrefused; no block
                // changes hands.
                if (tail.IsKeptAndNotGiven)
                {
                    tail.IsKeptAndNotGiven = false;
                }

                return true;
            }
        }

        available = default;
        address = 0;
        end = 0;
        return false;
    }

    /// <summary>
    /// The unconsumed data as <see cref="GetReadOnlySequence"/> gives it, read without the guard: true only if no call
    /// ran meanwhile, the writer was not disposed and the pool took nothing of it (a writer with no segment takes the
    /// guard). The sequence's
    /// constructor reads the segments' memory and running indexes again, after the reads here, and may throw
    /// <see cref="ArgumentException"/> if another thread changed them: the caller catches it while
    /// <paramref name="version"/> no longer reads quiet.
    /// </summary>
    private bool TryGetDataQuietly(out long version, out ReadOnlySequence<byte> data)
    {
        if (_chain.TryStartRead(out version) && _chain.HeadReadOnce is { } head && _chain.TailReadOnce is { } tail)
        {
            // The check comes after the constructor, so what it built is from the same quiet state.
            data = new ReadOnlySequence<byte>(head, _headStart, tail, tail.End);
            if (_chain.IsStillItsOwn(tail) && _chain.ReadWasQuiet(version))
            {
                // A dispose may have raised its flag without taking the guard yet: its segments are not handed out.
                _chain.ThrowIfDisposed(TypeName);
                return true;
            }
        }

        data = default;
        return false;
    }
}
