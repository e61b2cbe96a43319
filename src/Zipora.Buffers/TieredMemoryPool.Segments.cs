using System.Buffers;
using System.Runtime.CompilerServices;

namespace Zipora.Buffers;

/// <summary>The pool's side of the segmented buffers: an owner-free rent, and their counters.</summary>
public sealed partial class TieredMemoryPool
{
    /// <summary>
    /// Rents a block for a segmented buffer without an owner of its own, whatever <see cref="TieredMemoryPoolOptions.ReuseOwners"/>
    /// says, so a segment costs no allocation. The owner per rent guards against a second dispose and a stale
    /// <see cref="System.Memory{T}"/>; here the segment is the block's only holder and takes it away with an atomic
    /// exchange before disposing it, so it is returned exactly once, and the memory a writer hands out is documented as
    /// valid only until that data is consumed, reset or disposed (as a Pipe's is). A leaked block is reclaimed by its
    /// finalizer as any other. In diagnostic mode the tracked owner is handed out, so misuse is still reported.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    internal IMemoryOwner<byte> RentForSegment(int size)
    {
        if ((uint)(size - MediumTier.MinSize) < _mediumFastSizes)
        {
            return _medium.Rent(size);
        }

        if ((uint)(size - 1) < _smallFastSizes)
        {
            return _small.Rent(size);
        }

        return RentForSegmentOther(size);
    }

    [MethodImpl(MethodImplOptions.NoInlining)]
    private IMemoryOwner<byte> RentForSegmentOther(int size)
    {
        if (_diagnostics is not null)
        {
            return RentOther(size);
        }

        return RentBlock(size).Block;
    }

    /// <summary>
    /// Whether <paramref name="segment"/>'s block may stay with it when its buffer lets it go whole: a medium block (the
    /// tier whose trims take parked blocks back, see <see cref="SegmentedBufferCounters.ReleaseParkedBlocks"/>) that
    /// was never reclaimed as leaked, of a class the options let a thread keep blocks of.
    /// </summary>
    internal bool MayKeepWhole(BufferSegment segment) => segment.HoldsBlockOf(_medium) && _medium.ThreadsMayKeep(segment.Capacity);

    /// <summary>The counters of the segmented buffers that rent from this pool (see <see cref="SegmentedBufferStatistics"/>).</summary>
    internal SegmentedBufferCounters SegmentedCounters { get; } = new();
}
