namespace Zipora.Buffers;

/// <summary>The sums over a region tier's per-thread slots that its statistics fold in.</summary>
internal sealed class SlotCounts(int classCount)
{
    /// <summary>Rents served from the slots, per class.</summary>
    public long[] HitsByClass { get; } = new long[classCount];

    /// <summary>Regions parked in the slots now, per class.</summary>
    public int[] ParkedByClass { get; } = new int[classCount];

    /// <summary>Returns that parked a region in a slot.</summary>
    public long Parks { get; set; }

    /// <summary>Bytes asked for by the rents the slots served.</summary>
    public long RequestedBytes { get; set; }

    /// <summary>Buffer bytes of the regions parked now.</summary>
    public long ParkedBufferBytes { get; set; }

    /// <summary>Mapped bytes of the regions parked now.</summary>
    public long ParkedMappedBytes { get; set; }
}
