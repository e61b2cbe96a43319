using System;
using System.Buffers;

namespace Zipora.Buffers;

/// <summary>
/// A validated, unchanging copy of a <see cref="SegmentedBufferOptions"/>, shared by every writer and stream created
/// from those options while they do not change: a buffer holds one reference instead of a copy of each option, and
/// its constructor neither validates nor asks the pool for its limits again.
/// </summary>
internal sealed class SegmentedBufferSettings
{
    /// <summary>
    /// Checks the options' values, each read once by the caller, and keeps them; a segment size left unset
    /// (<see langword="null"/>) takes its default, capped at what the pool can give.
    /// </summary>
    /// <exception cref="System.ArgumentOutOfRangeException">An option is out of range; the exception names it and says what it must be.</exception>
    public SegmentedBufferSettings(MemoryPool<byte> pool, int? initialSegmentSizeSet, int? maxSegmentSizeSet, long maxLength, int version)
    {
        int maxBufferSize = pool.MaxBufferSize;
        int maxSegmentSize = maxSegmentSizeSet
            ?? (maxBufferSize > 0 ? Math.Min(SegmentedBufferOptions.DefaultMaxSegmentSize, maxBufferSize) : SegmentedBufferOptions.DefaultMaxSegmentSize);
        int initialSegmentSize = initialSegmentSizeSet ?? Math.Min(SegmentedBufferOptions.DefaultInitialSegmentSize, maxSegmentSize);
        if (maxSegmentSize < 1 || (maxBufferSize > 0 && maxSegmentSize > maxBufferSize))
        {
            SegmentThrowHelper.ThrowOptionOutOfRange(nameof(SegmentedBufferOptions.MaxSegmentSize), maxSegmentSize, $"from 1 to the pool's MaxBufferSize ({maxBufferSize})");
        }

        if (initialSegmentSize < 1 || initialSegmentSize > maxSegmentSize)
        {
            SegmentThrowHelper.ThrowOptionOutOfRange(nameof(SegmentedBufferOptions.InitialSegmentSize), initialSegmentSize, $"from 1 to MaxSegmentSize ({maxSegmentSize})");
        }

        if (maxLength < 0)
        {
            SegmentThrowHelper.ThrowOptionOutOfRange(nameof(SegmentedBufferOptions.MaxLength), maxLength, "0 or more");
        }

        Pool = pool;
        Tiered = pool as TieredMemoryPool;
        InitialSegmentSize = initialSegmentSize;
        MaxSegmentSize = maxSegmentSize;
        MaxRentSize = maxBufferSize > 0 ? maxBufferSize : int.MaxValue;
        MaxLength = maxLength;
        Version = version;
    }

    /// <summary>The options' change count this copy was made at: a copy of an older one is made again.</summary>
    public int Version { get; }

    public MemoryPool<byte> Pool { get; }

    /// <summary><see cref="Pool"/> when it is a <see cref="TieredMemoryPool"/>, whose owner-free rent and statistics a buffer uses.</summary>
    public TieredMemoryPool? Tiered { get; }

    public int InitialSegmentSize { get; }

    public int MaxSegmentSize { get; }

    /// <summary>The largest single segment the pool can give.</summary>
    public int MaxRentSize { get; }

    public long MaxLength { get; }
}
