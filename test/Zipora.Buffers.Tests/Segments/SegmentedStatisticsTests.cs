using System;
using System.Buffers;
using System.Collections.Generic;
using System.Linq;
using Microsoft.Extensions.Diagnostics.Metrics.Testing;

namespace Zipora.Buffers.Tests;

/// <summary>The pool's statistics and meter report the segmented writers and streams that rent from it.</summary>
public sealed class SegmentedStatisticsTests
{
    [Fact]
    public void TheStatisticsCountLiveBuffersBytesHeldSegmentsPerMessageAndTheLargestMessage()
    {
        using var pool = new TieredMemoryPool();
        var options = new SegmentedBufferOptions { Pool = pool, InitialSegmentSize = 4096, MaxSegmentSize = 65536 };
        var writer = new SegmentedBufferWriter(options);
        var stream = new SegmentedMemoryStream(options);
        writer.Write(new byte[10_000]);
        stream.Write(new byte[3000]);

        SegmentedBufferStatistics live = pool.GetStatistics().Segmented;
        Assert.Equal(2, live.LiveBuffers);
        Assert.Equal(4096 + 8192 + 4096, live.BytesHeld);
        Assert.Equal(0, live.Messages);

        writer.Dispose();
        stream.Dispose();
        SegmentedBufferStatistics done = pool.GetStatistics().Segmented;
        Assert.Equal(0, done.LiveBuffers);
        Assert.Equal(0, done.BytesHeld);
        Assert.Equal(2, done.Messages);
        Assert.Equal(3, done.MessageSegments);
        Assert.Equal(1.5, done.MeanSegmentsPerMessage);
        Assert.Equal(10_000, done.LargestMessage);
        Assert.Contains("1.5 segments per message", done.ToString(), StringComparison.Ordinal);
        Assert.Contains("segmented buffers: 0 live", pool.GetStatistics().ToString(), StringComparison.Ordinal);
    }

    [Fact]
    public void AStreamShortenedBeforeItsMessageEndsCountsTheMostTheMessageHeld()
    {
        using var pool = new TieredMemoryPool();
        var options = new SegmentedBufferOptions { Pool = pool };
        using (var stream = new SegmentedMemoryStream(options))
        {
            // 100 KB held, cut to 10 bytes, then disposed: the message held 100 KB.
            stream.Write(new byte[100_000]);
            stream.SetLength(10);
        }

        Assert.Equal(100_000, pool.GetStatistics().Segmented.LargestMessage);

        using var reused = new SegmentedMemoryStream(options);
        reused.Write(new byte[200_000]);
        reused.SetLength(20);
        reused.SetLength(0);
        reused.Write(new byte[50]);
        reused.SetLength(0);

        // The first stream's message, then this one's two: the first held 200 KB, the second 50 bytes.
        SegmentedBufferStatistics statistics = pool.GetStatistics().Segmented;
        Assert.Equal(3, statistics.Messages);
        Assert.Equal(200_000, statistics.LargestMessage);
        reused.Dispose();
        Assert.Equal(3, pool.GetStatistics().Segmented.Messages);
    }

    [Fact]
    public void EachResetEndsAMessageAndAnEmptyOneIsNotCounted()
    {
        using var pool = new TieredMemoryPool();
        using var writer = new SegmentedBufferWriter(new SegmentedBufferOptions { Pool = pool });
        writer.Reset();
        writer.Write(new byte[100]);
        writer.Reset();
        writer.Write(new byte[300]);
        writer.Consume(300);
        writer.Reset();
        SegmentedBufferStatistics statistics = pool.GetStatistics().Segmented;
        Assert.Equal(2, statistics.Messages);
        Assert.Equal(300, statistics.LargestMessage);
    }

    [Fact]
    public void AnotherPoolKeepsNoCountsAndTheTieredPoolsStayZero()
    {
        using var pool = new TieredMemoryPool();
        using var writer = new SegmentedBufferWriter(new SegmentedBufferOptions { Pool = MemoryPool<byte>.Shared });
        writer.Write(new byte[100]);
        Assert.Equal(0, pool.GetStatistics().Segmented.LiveBuffers);
    }

    [Theory]
    [InlineData("zipora.buffers.segmented.live", 1)]
    [InlineData("zipora.buffers.segmented.held", 4096)]
    [InlineData("zipora.buffers.segmented.messages", 1)]
    [InlineData("zipora.buffers.segmented.segments", 2)]
    [InlineData("zipora.buffers.segmented.largest", 5000)]
    [InlineData("zipora.buffers.segmented.leaks", 0)]
    public void TheMeterReportsTheStatisticsTaggedWithThePoolsOwner(string instrument, long expected)
    {
        string owner = $"segmented-{Guid.NewGuid():N}";
        using var pool = new TieredMemoryPool(new TieredMemoryPoolOptions { Name = owner });
        using var collector = new MetricCollector<long>(null, PoolMetrics.MeterName, instrument);
        var options = new SegmentedBufferOptions { Pool = pool };
        using (var finished = new SegmentedBufferWriter(options))
        {
            finished.Write(new byte[5000]);
        }

        using var open = new SegmentedMemoryStream(options);
        open.WriteByte(1);

        collector.RecordObservableInstruments();
        CollectedMeasurement<long> measurement = Assert.Single(Latest(collector, owner));
        Assert.Equal(expected, measurement.Value);
        Assert.Equal(PoolMetrics.SegmentedTier, measurement.Tags[PoolMetrics.TierTag]);
    }

    private static List<CollectedMeasurement<long>> Latest(MetricCollector<long> collector, string owner) =>
        [.. collector.GetMeasurementSnapshot().Where(measurement => Equals(measurement.Tags[PoolMetrics.OwnerTag], owner))];
}
