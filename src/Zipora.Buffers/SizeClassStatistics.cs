namespace Zipora.Buffers;

/// <summary>What one size class of a <see cref="TieredMemoryPool"/> was asked for: one row of <see cref="TieredMemoryPoolStatistics.SizeHistogram"/>.</summary>
public sealed class SizeClassStatistics
{
    /// <summary>The tier the class belongs to: <c>small</c>, <c>medium</c>, <c>large</c> or <c>huge</c>.</summary>
    public required string Tier { get; init; }

    /// <summary>Bytes of every buffer of the class.</summary>
    public long ClassSize { get; init; }

    /// <summary>Buffers of the class handed out so far.</summary>
    public long Rents { get; init; }

    /// <summary>Buffers of the class handed out and not yet returned.</summary>
    public long BuffersInUse { get; init; }

    /// <summary>
    /// Most buffers of the class in use at once over the recent window (the current and the previous idle delay):
    /// exact in the large and huge tiers, where a region parked in a thread's slot for that thread's next rent counts as
    /// in use (so the mark is at least the number of threads holding one), sampled at each tick of the idle releaser in
    /// the small and medium tiers.
    /// </summary>
    public long HighWaterMark { get; init; }

    /// <summary>Buffers of the class held for reuse.</summary>
    public long Cached { get; init; }

    /// <inheritdoc />
    public override string ToString() => StatisticsText.SizeClass(this);
}
