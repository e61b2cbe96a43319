using System;

namespace Zipora.Buffers;

/// <summary>The counters of every size class summed, in buffers and in bytes (medium tier, array pool).</summary>
internal readonly record struct ClassTotals(long Hits, long Misses, long Returns, long BytesInUse, long BytesRented, long BytesAllocated, long BytesCached)
{
    /// <summary>Sums the classes: bytes are counted at each class's size.</summary>
    public static ClassTotals Of(ReadOnlySpan<ClassCounts> byClass)
    {
        long hits = 0, misses = 0, returns = 0, inUse = 0, rented = 0, allocated = 0, cached = 0;
        foreach (ClassCounts counts in byClass)
        {
            hits += counts.Hits;
            misses += counts.Misses;
            returns += counts.Returns;
            inUse += (counts.Hits + counts.Misses - counts.Returns) * counts.Size;
            rented += (counts.Hits + counts.Misses) * counts.Size;
            allocated += counts.Misses * counts.Size;
            cached += counts.Cached * counts.Size;
        }

        return new ClassTotals(hits, misses, returns, inUse, rented, allocated, cached);
    }
}
