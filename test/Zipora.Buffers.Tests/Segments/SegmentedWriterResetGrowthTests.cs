using System;
using System.Buffers;
using System.Collections.Generic;

namespace Zipora.Buffers.Tests;

/// <summary>
/// A writer emptied by <see cref="SegmentedBufferWriter.Reset"/> keeps its first segment and, its documentation says,
/// forgets every byte "as a new writer would": the next message must be laid out in the segments a new writer's would,
/// as a stream emptied by <c>SetLength(0)</c> already is.
/// </summary>
public sealed class SegmentedWriterResetGrowthTests
{
    private const int MessageLength = 50_000;

    [Fact]
    public void AWriterResetBetweenMessagesLaysEachOutInTheSegmentsANewWriterWould()
    {
        using var pool = new TieredMemoryPool(new TieredMemoryPoolOptions { Name = "reset-growth" });
        var options = new SegmentedBufferOptions { Pool = pool };
        byte[] message = SegmentedBuffers.Filled(MessageLength, 0x3C);

        int[] fresh;
        using (var writer = new SegmentedBufferWriter(options))
        {
            writer.Write(message);
            fresh = SegmentLengths(writer);
        }

        using (var reused = new SegmentedBufferWriter(options))
        {
            for (int i = 0; i < 3; i++)
            {
                reused.Write(message);

                // Before the fix, every message after a reset took one more segment: the growth restarted from the
                // initial size past the kept first segment (4 KB, 4 KB, 8 KB, ... where a new writer has 4, 8, ...).
                Assert.Equal(fresh, SegmentLengths(reused));
                reused.Reset();
            }
        }

        TieredMemoryPoolStatistics statistics = pool.GetStatistics();
        Assert.Equal(4, statistics.Segmented.Messages);
        Assert.Equal(fresh.Length, statistics.Segmented.MeanSegmentsPerMessage);
        SegmentedBuffers.AssertBalanced(pool);
    }

    [Fact]
    public void AResetWriterWhoseFirstSegmentIsLargerGrowsOnFromItAsANewWriterDoes()
    {
        using var pool = new TieredMemoryPool(new TieredMemoryPoolOptions { Name = "reset-growth-large-head" });
        var options = new SegmentedBufferOptions { Pool = pool, InitialSegmentSize = 1024, MaxSegmentSize = 64 * 1024 };
        byte[] message = SegmentedBuffers.Filled(MessageLength, 0x3C);

        int[] fresh;
        using (var writer = new SegmentedBufferWriter(options))
        {
            // A first request above the initial size makes a larger first segment; the growth moves on from it.
            writer.GetSpan(10_000);
            writer.Write(message);
            fresh = SegmentLengths(writer);
        }

        using var reused = new SegmentedBufferWriter(options);
        reused.GetSpan(10_000);
        reused.Write(message);
        reused.Reset();
        reused.Write(message);

        // Before the fix: 16 KB, then 1, 2, 4, 8, 16 KB... (seven segments where a new writer took three). The
        // growth moves on from the kept segment's length, which the pool may round above what a new writer asked.
        int[] afterReset = SegmentLengths(reused);
        Assert.Equal(fresh.Length, afterReset.Length);
        Assert.All(afterReset[1..^1], length => Assert.True(length > afterReset[0], $"a segment of {length} bytes after a first of {afterReset[0]}"));
    }

    private static int[] SegmentLengths(SegmentedBufferWriter writer)
    {
        var lengths = new List<int>();
        foreach (ReadOnlyMemory<byte> segment in writer.GetReadOnlySequence())
        {
            lengths.Add(segment.Length);
        }

        return [.. lengths];
    }
}
