namespace Zipora.Buffers;

/// <summary>
/// Where a buffer starts: its settings and tracker, and the block a thread's last message ended in, kept whole with its segment for the thread's next buffer (see
/// <see cref="SegmentedBufferCounters"/>' parking): taken as a writer's first segment, matched against the class a
/// first segment would rent, and left whole by a dispose.
/// </summary>
internal partial struct SegmentChain
{
    /// <summary>
    /// Takes <paramref name="options"/> as they are now, validated, and with a <see cref="TieredMemoryPool"/> the
    /// buffer's tracker and the block the thread's last message on that pool ended in, if any.
    /// </summary>
    /// <exception cref="System.ArgumentOutOfRangeException">An option is out of range; the exception names it.</exception>
    /// <exception cref="System.ObjectDisposedException">The options name a disposed <see cref="TieredMemoryPool"/>.</exception>
    public void Initialize(SegmentedBufferOptions options, string type)
    {
        // Over another pool no pool of the library's may have been made yet: the segment cache's statics come first.
        LibraryStatics.EnsureMade();
        SegmentedBufferSettings settings = _settings = options.Settings;
        _nextSegmentSize = settings.InitialSegmentSize;
        if (settings.Tiered is { } tiered)
        {
            if (tiered.IsDisposed)
            {
                // Refused when made, where the options are at hand, not at the first write (or never, for a buffer
                // only read from); nothing is taken yet. A pool disposed later fails its next rent the same way.
                SegmentThrowHelper.ThrowPoolDisposed(type, tiered);
            }

            SegmentedBufferTracker tracker = _tracker = tiered.SegmentedCounters.Take(out _ticket, out _token, out BufferSegment? spare);
            tracker.SpareSegment = spare;
            if (spare is { Capacity: > 0 } whole)
            {
                tracker.AddBytesHeld(whole.Capacity);
            }
        }
    }

    /// <summary>
    /// Makes the block the thread's last message ended in this buffer's first segment now, when it is exactly
    /// <see cref="SegmentedBufferOptions.InitialSegmentSize"/> bytes long (the default 4 KB is a medium class): the
    /// first <c>GetSpan</c> then finds room in the tail and takes no guard. For a writer only, before it is published
    /// (a stream's first write takes its guard to copy anyway, and takes the block then). Exactly that size, so the writer
    /// grows as one that rents its first block at its first request: a request within the block would have rented
    /// the initial size, whose growth moves on here; a larger one replaces the block, and the growth starts over
    /// (<see cref="GrowEmptyTailUnsynchronized"/>). With another initial size the block waits for that request.
    /// </summary>
    public void TakeKeptBlockAsHead()
    {
        int size = GrowthSize(1);
        if (_tracker is { SpareSegment: { } spare } && spare.Capacity == size && size >= MediumTier.MinSize)
        {
            // The request's size is the block's, so the append takes it as it is (already counted as held). Written out
            // here instead, the constructor grew and the benchmark's message got slower (section 34 of perf/RESULTS.md).
            _ = AppendUnsynchronized(1);
        }
    }

    /// <summary>
    /// Whether a kept block of <paramref name="capacity"/> bytes (0: none) is the one the pool would rent for
    /// <paramref name="size"/>: the medium tier's classes are powers of two, so its class holds the size and the half
    /// below does not (below the medium tier's smallest size, the small tier serves it).
    /// </summary>
    private static bool FitsKeptBlock(int capacity, int size) =>
        (uint)(capacity - size) < (uint)(capacity >> 1) && size >= MediumTier.MinSize;

    /// <summary>
    /// Makes the head, with its block, the spare, when the block is the pool's medium tier's and was never reclaimed:
    /// the thread's next message of that size takes the segment as it is. Only on the way to the thread's cache.
    /// </summary>
    private void KeepHeadWhole()
    {
        if (_head is not { } head || !_settings.Tiered!.MayKeepWhole(head))
        {
            return;
        }

        // A spare here holds no block: the first segment took or released the one it was taken with.
        SegmentedBufferTracker tracker = _tracker!;
        BufferSegment? empty = tracker.SpareSegment;
        BufferSegment? next = head.NextSegment;
        _head = next;
        if (next is null)
        {
            _tail = null;
        }

        head.ClearKeepingBlock();
        tracker.SpareSegment = head;
        if (empty is not null)
        {
            BufferSegmentCache.Return(empty);
        }
    }
}
