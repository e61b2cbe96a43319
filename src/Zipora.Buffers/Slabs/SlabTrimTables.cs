namespace Zipora.Buffers;

/// <summary>
/// A cached slab tier's tables for what runs under its trim lock (a trim's counts, the pressure trim's read of what
/// the tier retains), one entry per class, made with the tier and reused: those run where managed memory is short, at
/// the GC heap limit too, and must let go of what they can without allocating first.
/// </summary>
internal sealed class SlabTrimTables(int classCount)
{
    public ClassCounts[] Counts { get; } = new ClassCounts[classCount];

    public long[] HeldElsewhere { get; } = new long[classCount];

    public long[] ActivityElsewhere { get; } = new long[classCount];

    public long[] RentedBytes { get; } = new long[classCount];

    public long[] ReturnedBy { get; } = new long[classCount];
}
