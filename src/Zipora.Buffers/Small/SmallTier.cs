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
    /// over the 20 classes: about 3 KB each, so 51 blocks of 64 bytes. A thread that rents a few sizes holds little,
    /// and a thread's whole small cache stays under about 80 KB with the floor below.
    /// </summary>
    public const int ThreadCacheMaxBytes = 64 * 1024;

    /// <summary>
    /// The fewest blocks of one class a thread may keep (unless <see cref="TieredMemoryPoolOptions.ThreadCacheMaxBuffers"/>
    /// is lower, or <see cref="TieredMemoryPoolOptions.ThreadCacheMaxBytes"/> is 0): the byte budget alone would allow 3 blocks of 1 KB, and a stack that small sends nearly every rent
    /// of a short burst to the depot's lock.
    /// </summary>
    public const int ThreadCacheMinBuffers = 8;

    /// <summary>A small tier whose threads keep at most <paramref name="threadCacheMaxBytes"/> (the medium budget) or 64 KB each, and at least 8 blocks of a class.</summary>
    public SmallTier(PageSource pages, IdleClock clock, DeferredUnmaps unmaps, LeakQuarantine quarantine, int threadCacheMaxBuffers, int threadCacheMaxBytes, bool adaptive)
        : base(pages, clock, unmaps, quarantine, SmallClasses.Count, threadCacheMaxBuffers, Math.Min(threadCacheMaxBytes, ThreadCacheMaxBytes), threadCacheMaxBytes == 0 ? 0 : ThreadCacheMinBuffers, adaptive)
    {
    }
}
