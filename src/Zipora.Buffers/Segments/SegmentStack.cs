namespace Zipora.Buffers;

/// <summary>
/// One thread's stack of empty segments (<see cref="BufferSegmentCache"/>): the slots and their count in one object,
/// so the thread finds both with one thread-local lookup (two thread-statics of different kinds take two).
/// </summary>
internal sealed class SegmentStack(int capacity)
{
    public readonly BufferSegment[] Items = new BufferSegment[capacity];

    public int Count;
}
