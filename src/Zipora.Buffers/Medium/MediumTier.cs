using System;

namespace Zipora.Buffers;

/// <summary>
/// Requests from 1 KB to the mmap threshold: power-of-two size classes (1, 2, 4, 8, 16 KB by default), each with a
/// per-thread cache in front of a shared depot, carved from slabs of at least 64 KB (see <see cref="CachedSlabTier{TClasses}"/>).
/// </summary>
internal sealed class MediumTier : CachedSlabTier<MediumClasses>
{
    /// <summary>The smallest request this tier serves.</summary>
    public const int MinSize = SmallTier.MaxSize + 1;

    private readonly SegmentedBufferCounters _segments;

    // Counts the caches under the lock the parked blocks are handed back under. Made with the tier, not at the first
    // tick or statistics read: a static lambda's delegate and its class's statics are made at its first use, which may
    // be at the GC heap limit, where a type initializer that fails leaves every later use throwing, for good.
    private readonly Action<(MediumTier Tier, ClassCounts[] ByClass, long[] HeldElsewhere)> _countCaches =
        static state => state.Tier.CountCaches(state.ByClass, state.HeldElsewhere);

    /// <summary>A medium tier whose largest class is <paramref name="maxSize"/> (the mmap threshold, a power of two).</summary>
    public MediumTier(PageSource pages, IdleClock clock, DeferredUnmaps unmaps, LeakQuarantine quarantine, int maxSize, int threadCacheMaxBuffers, int threadCacheMaxBytes, bool adaptive, SegmentedBufferCounters segments)
        : base(pages, clock, unmaps, quarantine, MediumClasses.CountUpTo(maxSize), threadCacheMaxBuffers, threadCacheMaxBytes, threadCacheMinBuffers: 0, adaptive)
    {
        // The pool's segmented buffers, whose threads park blocks of this tier: each trim takes those back first.
        _segments = segments;
    }

    protected override void ReleaseHeldElsewhere(bool forGood) => _segments.ReleaseParkedBlocks(forGood);

    protected override void CountActivityElsewhere(long[] byClass) => _segments.CountParks(byClass);

    // The caches counted under the lock the parked blocks are handed back under: each block is seen parked or returned,
    // never both.
    protected override void CountWithHeldElsewhere(ClassCounts[] byClass, long[] heldElsewhere) =>
        _segments.CountParkedBlocks(heldElsewhere, (Tier: this, ByClass: byClass, HeldElsewhere: heldElsewhere), _countCaches);
}
