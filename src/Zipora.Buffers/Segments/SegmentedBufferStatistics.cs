namespace Zipora.Buffers;

/// <summary>
/// What the <see cref="SegmentedBufferWriter"/>s and <see cref="SegmentedMemoryStream"/>s renting from a
/// <see cref="TieredMemoryPool"/> hold and have done (<see cref="TieredMemoryPoolStatistics.Segmented"/>). A message
/// is what a writer or stream held from its creation or last <c>Reset</c> (a stream's <c>SetLength(0)</c>) to its next
/// <c>Reset</c> (<c>SetLength(0)</c>) or its dispose.
/// </summary>
public sealed class SegmentedBufferStatistics
{
    /// <summary>Writers and streams created and not yet disposed (nor collected).</summary>
    public long LiveBuffers { get; init; }

    /// <summary>Bytes of the segments the live writers and streams hold (whole segments, written or not).</summary>
    public long BytesHeld { get; init; }

    /// <summary>Messages ended: each <c>Reset</c> (a stream's <c>SetLength(0)</c>) and each dispose of a writer or stream that held data.</summary>
    public long Messages { get; init; }

    /// <summary>Segments rented over all ended messages (<see cref="MeanSegmentsPerMessage"/> divides it by <see cref="Messages"/>).</summary>
    public long MessageSegments { get; init; }

    /// <summary>The mean number of segments an ended message took; 0 before the first.</summary>
    public double MeanSegmentsPerMessage => Messages == 0 ? 0 : (double)MessageSegments / Messages;

    /// <summary>The most bytes one message held (for a writer consumed as a queue, the most written between resets).</summary>
    public long LargestMessage { get; init; }

    /// <summary>Writers and streams garbage collected without dispose; their segments went back through the pool's leak reclaim.</summary>
    public long Leaked { get; init; }

    /// <inheritdoc />
    public override string ToString() => StatisticsText.Format(
        $"segmented buffers: {LiveBuffers} live holding {StatisticsText.Bytes(BytesHeld)}, {Messages} messages, {MeanSegmentsPerMessage:0.##} segments per message, largest {StatisticsText.Bytes(LargestMessage)}, {Leaked} leaked");
}
