namespace Zipora.Buffers;

/// <summary>What one tier of a <see cref="TieredMemoryPool"/> (or a whole <see cref="TieredArrayPool"/>) has done, at the moment of a snapshot.</summary>
/// <remarks>Counters are summed from per-thread counts without stopping the threads: exact when the pool is quiet, close while it is busy.</remarks>
public sealed class TierStatistics
{
    /// <summary>Name of the tier: <c>small</c>, <c>medium</c>, <c>large</c> or <c>huge</c>; <c>array</c> for a <see cref="TieredArrayPool"/>.</summary>
    public required string Name { get; init; }

    /// <summary>Buffers handed out.</summary>
    public long Rents { get; init; }

    /// <summary>
    /// Buffers given back by their owners. In the medium tier this includes the blocks a segmented buffer left parked in
    /// its thread's cache for the thread's next message (they count as cached, not in use, until a buffer takes one).
    /// </summary>
    public long Returns { get; init; }

    /// <summary>Rents served from memory the pool already held.</summary>
    public long CacheHits { get; init; }

    /// <summary>Rents that needed fresh memory (carved from a new slab or mapped from the OS).</summary>
    public long CacheMisses { get; init; }

    /// <summary>Bytes of buffers currently handed out (whole class sizes, not the sizes asked for).</summary>
    public long BytesInUse { get; init; }

    /// <summary>
    /// Bytes of free buffers the tier holds for reuse, committed, that a trim could give back. Free blocks whose pages
    /// were dropped no longer count, nor do those in <see cref="BytesFragmented"/> or <see cref="BytesUncarved"/>.
    /// </summary>
    public long BytesRetained { get; init; }

    /// <summary>
    /// Bytes of free blocks that share a page with a buffer still handed out (small and medium tiers): committed, but no
    /// trim can give them back until that buffer returns. Measured at the tier's last trim, less what was rented since;
    /// 0 for the region tiers.
    /// </summary>
    public long BytesFragmented { get; init; }

    /// <summary>
    /// Bytes of slab space mapped but not yet cut into buffers (small and medium tiers): the rest of each size class's
    /// current slab. Address space only: never touched, so not resident. A slab goes back whole once every block cut
    /// from it is free and idle. 0 for the region tiers.
    /// </summary>
    public long BytesUncarved { get; init; }

    /// <summary>Bytes handed out so far (whole class sizes), summed over every rent.</summary>
    public long BytesRented { get; init; }

    /// <summary>
    /// Bytes asked for (the sizes passed to <c>Rent</c>), summed over every rent; 0 where it is not tracked
    /// (<see cref="TieredArrayPool"/>). Against <see cref="BytesRented"/> it gives the cost of the tier's rounding.
    /// </summary>
    public long BytesRequested { get; init; }

    /// <summary>Bytes the tier has mapped from the OS so far.</summary>
    public long BytesAllocated { get; init; }

    /// <summary>
    /// Bytes the tier has given back to the OS so far: unmapped, or dropped from idle blocks. Memory let go of whose
    /// page drop the OS refused (locked memory) counts only once it is unmapped. Every drop counts: a block whose pages
    /// were dropped, then rented, written and dropped again counts twice, so this may exceed
    /// <see cref="BytesAllocated"/>. What the tier holds now is <see cref="BytesInUse"/> and
    /// <see cref="BytesRetained"/>, not the difference of the two.
    /// </summary>
    public long BytesEvicted { get; init; }

    /// <summary>Buffers currently handed out.</summary>
    public long BuffersInUse => Rents - Returns;

    /// <summary>Bytes handed out over bytes asked for, over every rent: 1.25 means rounding to size classes added 25%; 1 when nothing was asked.</summary>
    public double RoundingRatio => BytesRequested == 0 ? 1 : (double)BytesRented / BytesRequested;

    /// <summary>The share of rents served from the cache, from 0 to 1.</summary>
    public double HitRatio => Rents == 0 ? 0 : (double)CacheHits / Rents;

    /// <inheritdoc />
    public override string ToString() => StatisticsText.Tier(this);
}
