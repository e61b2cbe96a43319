namespace Zipora.Buffers.Tests;

/// <summary>A tier's (or the tiers' summed) counts of activity, which a trim of a quiet pool must leave as they were.</summary>
internal readonly record struct RentActivity(long Rents, long Returns, long CacheHits, long CacheMisses)
{
    public static RentActivity Of(TierStatistics tier) => new(tier.Rents, tier.Returns, tier.CacheHits, tier.CacheMisses);

    public static RentActivity operator +(RentActivity left, RentActivity right) =>
        new(left.Rents + right.Rents, left.Returns + right.Returns, left.CacheHits + right.CacheHits, left.CacheMisses + right.CacheMisses);

    /// <summary>Whether any count is below the one in <paramref name="earlier"/>.</summary>
    public bool FellFrom(RentActivity earlier) =>
        Rents < earlier.Rents || Returns < earlier.Returns || CacheHits < earlier.CacheHits || CacheMisses < earlier.CacheMisses;
}
