using System;
using System.Buffers;
using System.Collections.Generic;

namespace Zipora.Buffers.Tests;

/// <summary>The stream's length: shortened, grown again, emptied for the next message, and out of range.</summary>
public sealed partial class SegmentedMemoryStreamTests
{
    [Fact]
    public void AGapLeftByShrinkingIsZeroedWhenTheStreamGrowsAgain()
    {
        using SegmentedMemoryStream stream = NewStream();
        stream.Write(Pattern(100));
        stream.SetLength(10);
        stream.SetLength(100);
        Assert.Equal([.. Pattern(10), .. new byte[90]], stream.ToArray());

        stream.SetLength(50);
        stream.Position = 80;
        stream.WriteByte(1);
        Assert.Equal([.. Pattern(10), .. new byte[70], 1], stream.ToArray());
    }

    [Fact]
    public void SetLengthShrinksGivingSegmentsBackAndClampsThePosition()
    {
        using SegmentedMemoryStream stream = NewStream();
        stream.Write(Pattern(640));
        long held = _pool.GetStatistics().Segmented.BytesHeld;
        stream.Position = 300;
        stream.SetLength(100);
        Assert.Equal(100, stream.Length);
        Assert.Equal(100, stream.Position);
        Assert.Equal(128, _pool.GetStatistics().Segmented.BytesHeld);
        Assert.True(held > 128);

        // Emptied, it keeps its first segment (as MemoryStream keeps its capacity), empty.
        stream.SetLength(0);
        Assert.Equal(0, stream.Length);
        Assert.Equal(0, stream.Position);
        Assert.Equal(64, _pool.GetStatistics().Segmented.BytesHeld);
        Assert.Empty(stream.ToArray());
        Assert.Equal(0, stream.Read(new byte[10]));
        Assert.True(stream.GetReadOnlySequence().IsEmpty);
    }

    /// <summary>
    /// A stream reused for message after message with <c>SetLength(0)</c> keeps one first block: it rents nothing per
    /// message, and its growth starts over each time (it walked its segments up to the largest size before).
    /// </summary>
    [Fact]
    public void AStreamEmptiedWithSetLengthZeroForEachMessageRentsNothingAndGrowsFromTheStartAgain()
    {
        using var pool = new TieredMemoryPool(new TieredMemoryPoolOptions { EnableHugepages = false });
        using var stream = new SegmentedMemoryStream(new SegmentedBufferOptions { Pool = pool });
        byte[] message = Pattern(1000);
        stream.Write(message);
        TieredMemoryPoolStatistics before = pool.GetStatistics();
        for (int i = 0; i < 100; i++)
        {
            stream.SetLength(0);
            stream.Write(message);
            stream.Write(message);
            stream.Position = 0;
            Assert.Equal(message, stream.ToArray()[..1000]);
        }

        TieredMemoryPoolStatistics after = pool.GetStatistics();
        Assert.Equal(before.Medium.Rents, after.Medium.Rents);
        Assert.Equal(before.Large.Rents, after.Large.Rents);
        Assert.Equal(SegmentedBufferOptions.DefaultInitialSegmentSize, after.Segmented.BytesHeld);

        // Messages of 50 KB in 10 KB writes: each grows from the kept first segment as the first did, never from where
        // the last one left off (which walked the segments up to the largest size, 128 KB, message after message).
        var held = new List<long>();
        for (int i = 0; i < 4; i++)
        {
            stream.SetLength(0);
            for (int part = 0; part < 5; part++)
            {
                stream.Write(Pattern(10_000));
            }

            held.Add(pool.GetStatistics().Segmented.BytesHeld);
        }

        Assert.All(held, bytes => Assert.Equal(held[0], bytes));
        Assert.InRange(held[0], 50_000, 4096 + 8192 + 16384 + 32768);
    }

    [Fact]
    public void SetLengthOutOfRangeThrowsNamingTheValue()
    {
        using SegmentedMemoryStream stream = NewStream(maxLength: 1000);
        Assert.Equal("value", Assert.Throws<ArgumentOutOfRangeException>(() => stream.SetLength(-1)).ParamName);
        Assert.Equal("value", Assert.Throws<ArgumentOutOfRangeException>(() => stream.SetLength(1001)).ParamName);
        stream.SetLength(1000);
        Assert.Equal(1000, stream.Length);
    }

    /// <summary>
    /// Emptied, a stream grows from its kept first segment exactly as a new stream grows from its first: small writes
    /// find the same segment sizes (a restart from the initial size would rent that size again after the kept head).
    /// </summary>
    [Fact]
    public void AnEmptiedStreamGrowsPastItsKeptHeadAsANewStreamGrowsPastItsFirstSegment()
    {
        using var pool = new TieredMemoryPool(new TieredMemoryPoolOptions { EnableHugepages = false });
        var options = new SegmentedBufferOptions { Pool = pool, MaxSegmentSize = 64 * 1024 };
        byte[] part = Pattern(100);

        // The pool's whole count: the stream is its only buffer.
        long HeldAfterSmallWrites(SegmentedMemoryStream stream)
        {
            for (int written = 0; written < 50_000; written += part.Length)
            {
                stream.Write(part);
            }

            return pool.GetStatistics().Segmented.BytesHeld;
        }

        long fresh;
        using (var stream = new SegmentedMemoryStream(options))
        {
            fresh = HeldAfterSmallWrites(stream);
        }

        using var reused = new SegmentedMemoryStream(options);
        reused.Write(part);
        reused.SetLength(0);
        Assert.Equal(fresh, HeldAfterSmallWrites(reused));
        Assert.Equal(4096 + 8192 + 16384 + 32768, fresh);
    }

    [Fact]
    public void ASequenceTakenBeforeAShrinkIsNotTouchedByTheStreamsLaterWrites()
    {
        using SegmentedMemoryStream stream = NewStream();
        stream.Write(Pattern(100));
        ReadOnlySequence<byte> sequence = stream.GetReadOnlySequence();
        byte[] before = sequence.ToArray();
        stream.Write(Pattern(100, 5));

        // Appends never move or rewrite what a sequence covers.
        Assert.Equal(before, sequence.ToArray());
    }
}
