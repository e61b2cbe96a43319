namespace Zipora.Buffers;

/// <summary>
/// A cached slab tier's idle tick's tables, one entry per class, made with the tier and reused at every tick: the tick
/// runs for the pool's life, at the GC heap limit too, and reads its counters without allocating.
/// </summary>
internal sealed class SlabTickTables(int classCount)
{
    public ClassCounts[] Counts { get; } = new ClassCounts[classCount];

    public long[] HeldElsewhere { get; } = new long[classCount];

    public long[] ActivityElsewhere { get; } = new long[classCount];

    public long[] InUse { get; } = new long[classCount];

    public bool[] Idle { get; } = new bool[classCount];
}
