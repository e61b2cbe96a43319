using System.Text;

namespace Zipora.Buffers;

/// <summary>A snapshot of a <see cref="TieredArrayPool"/>, in the shape of <see cref="TieredMemoryPoolStatistics"/>: one tier, named <c>array</c>.</summary>
public sealed class TieredArrayPoolStatistics
{
    /// <summary>Every rent and return of the pool. A miss is an array allocated because no cached one was free, or one longer than the pooled maximum.</summary>
    public required TierStatistics Arrays { get; init; }

    /// <summary>Rents longer than the pooled maximum: allocated at the asked length and dropped on return.</summary>
    public long UnpooledRents { get; init; }

    /// <summary>Threads that hold a cache of this pool.</summary>
    public int ThreadCaches { get; init; }

    /// <summary>Bytes of arrays handed out and not returned.</summary>
    public long BytesInUse => Arrays.BytesInUse;

    /// <summary>Bytes of arrays held for reuse, in the thread caches and the shared depots.</summary>
    public long BytesRetained => Arrays.BytesRetained;

    /// <inheritdoc />
    public override string ToString()
    {
        var text = new StringBuilder();
        StatisticsText.AppendTierTable(text, [Arrays]);
        text.Append(StatisticsText.Format($"unpooled rents {UnpooledRents}, thread caches {ThreadCaches}"));
        return text.ToString();
    }
}
