using System;

namespace Zipora.Buffers;

/// <summary>
/// Requests of 1 to 1023 bytes: 20 size classes (see <see cref="SmallClasses"/>), each with a per-thread cache in
/// front of a shared depot, carved from 64 KB slabs (see <see cref="CachedSlabTier{TClasses}"/>).
/// </summary>
internal sealed class SmallTier : CachedSlabTier<SmallClasses>
{
    /// <summary>The largest request this tier serves.</summary>
    public const int MaxSize = 1023;

    /// <summary>
    /// The most bytes of small blocks one thread keeps (or the medium budget, when that is smaller), split evenly
    /// over the 20 classes: about 3 KB each, so 51 blocks of 64 bytes and 3 of 1 KB. Small blocks are cheap to
    /// move from the depot in batches, and a thread that only ever rents a few sizes should not hold much.
    /// </summary>
    public const int ThreadCacheMaxBytes = 64 * 1024;

    /// <summary>A small tier whose threads keep at most <paramref name="threadCacheMaxBytes"/> (the medium budget) or 64 KB each.</summary>
    public SmallTier(PageSource pages, IdleClock clock, DeferredUnmaps unmaps, LeakQuarantine quarantine, int threadCacheMaxBuffers, int threadCacheMaxBytes, bool adaptive)
        : base(pages, clock, unmaps, quarantine, SmallClasses.Count, threadCacheMaxBuffers, Math.Min(threadCacheMaxBytes, ThreadCacheMaxBytes), adaptive)
    {
    }
}
