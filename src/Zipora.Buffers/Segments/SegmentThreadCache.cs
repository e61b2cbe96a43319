namespace Zipora.Buffers;

/// <summary>
/// One thread's spares for one pool's segmented buffers: a free tracker, and a segment object that may still hold its
/// block, so the thread's next buffer finds all it needs for a message of one segment with one thread-local lookup,
/// without renting a block from the medium tier or giving one back.
/// </summary>
/// <remarks>
/// The tracker is the owner's alone (and, once the thread has exited, the registry's, which hands it to the free list).
/// The segment's block is the pool's memory, which a trim must be able to take from a live thread: the owner reaches
/// <see cref="Segment"/> only inside the handshake (<see cref="HandshakeCache.InUse"/> raised, then the pool's parking
/// flag read), and a trim closes the parking and empties each cache once its owner is out (see
/// <see cref="SegmentedBufferCounters.ReleaseParkedBlocks"/>).
/// </remarks>
internal sealed class SegmentThreadCache : HandshakeCache
{
    /// <summary>The thread's free tracker, or <see langword="null"/>.</summary>
    public SegmentedBufferTracker? Tracker;

    /// <summary>An empty segment object, holding the block its last message ended in when that is kept whole; or <see langword="null"/>.</summary>
    public BufferSegment? Segment;

    /// <summary>
    /// Blocks the owner's buffers parked here, per class of the block's tier (owner-written): a message that ends in a
    /// parked block and the next that takes it rent and return nothing, yet are activity that the idle release must see.
    /// </summary>
    public readonly long[] Parks = new long[ClassStacks.MaxClasses];
}
