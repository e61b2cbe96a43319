using System.Buffers;

namespace Zipora.Buffers;

/// <summary>
/// A validated, unchanging copy of a <see cref="SegmentedBufferOptions"/>, shared by every writer and stream created
/// from those options while they do not change: a buffer holds one reference instead of a copy of each option, and
/// its constructor neither validates nor asks the pool for its limits again.
/// </summary>
internal sealed class SegmentedBufferSettings
{
    public SegmentedBufferSettings(SegmentedBufferOptions options, int version)
    {
        Pool = options.ResolvePool();
        Tiered = Pool as TieredMemoryPool;
        InitialSegmentSize = options.InitialSegmentSize;
        MaxSegmentSize = options.MaxSegmentSize;
        MaxRentSize = Pool.MaxBufferSize > 0 ? Pool.MaxBufferSize : int.MaxValue;
        MaxLength = options.MaxLength;
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
