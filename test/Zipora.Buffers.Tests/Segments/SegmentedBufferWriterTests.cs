using System;
using System.Buffers;
using System.IO;
using System.Linq;
using System.Threading.Tasks;

namespace Zipora.Buffers.Tests;

/// <summary>The <see cref="IBufferWriter{T}"/> contract as a user relies on it, consuming from the front, and copying out.</summary>
public sealed class SegmentedBufferWriterTests : IDisposable
{
    private readonly TieredMemoryPool _pool = new();

    public void Dispose() => _pool.Dispose();

    private SegmentedBufferWriter NewWriter(int initial = 64, int max = 256, long maxLength = long.MaxValue) =>
        new(new SegmentedBufferOptions { Pool = _pool, InitialSegmentSize = initial, MaxSegmentSize = max, MaxLength = maxLength });

    private static byte[] Pattern(int length, int seed = 0) => [.. Enumerable.Range(seed, length).Select(static i => (byte)(i * 7))];

    [Theory]
    [InlineData(0)]
    [InlineData(1)]
    [InlineData(64)]
    [InlineData(65)]
    [InlineData(5000)]
    public void GetMemoryGivesAtLeastTheHintAndZeroMeansSomeNonEmptyBuffer(int sizeHint)
    {
        using SegmentedBufferWriter writer = NewWriter();
        Assert.True(writer.GetMemory(sizeHint).Length >= Math.Max(sizeHint, 1));
        Assert.True(writer.GetSpan(sizeHint).Length >= Math.Max(sizeHint, 1));
    }

    [Fact]
    public void AHintAboveTheMaximumSegmentSizeGetsOneSegmentThatLarge()
    {
        using SegmentedBufferWriter writer = NewWriter(max: 256);
        Memory<byte> memory = writer.GetMemory(100_000);
        Assert.True(memory.Length >= 100_000);
        Pattern(100_000).CopyTo(memory);
        writer.Advance(100_000);
        Assert.True(writer.GetReadOnlySequence().IsSingleSegment);
        Assert.Equal(Pattern(100_000), writer.ToArray());
    }

    [Fact]
    public void AHintAboveThePoolsLargestBufferThrowsNamingTheHint()
    {
        using var small = new TieredMemoryPool(new TieredMemoryPoolOptions { MaxBufferSize = 1 << 20 });
        using var writer = new SegmentedBufferWriter(new SegmentedBufferOptions { Pool = small });
        ArgumentOutOfRangeException error = Assert.Throws<ArgumentOutOfRangeException>(() => writer.GetMemory((1 << 20) + 1));
        Assert.Equal("sizeHint", error.ParamName);
        Assert.Equal(0, writer.Length);
    }

    [Fact]
    public void ANegativeHintOrAdvanceThrowsNamingTheArgument()
    {
        using SegmentedBufferWriter writer = NewWriter();
        Assert.Equal("sizeHint", Assert.Throws<ArgumentOutOfRangeException>(() => writer.GetMemory(-1)).ParamName);
        Assert.Equal("sizeHint", Assert.Throws<ArgumentOutOfRangeException>(() => writer.GetSpan(-1)).ParamName);
        writer.GetMemory(10);
        Assert.Equal("count", Assert.Throws<ArgumentOutOfRangeException>(() => writer.Advance(-1)).ParamName);
    }

    [Fact]
    public void AdvancePastTheMemoryGivenThrowsAndChangesNothing()
    {
        using SegmentedBufferWriter writer = NewWriter(initial: 64);
        int given = writer.GetMemory(10).Length;
        Assert.Equal("count", Assert.Throws<ArgumentOutOfRangeException>(() => writer.Advance(given + 1)).ParamName);
        Assert.Equal(0, writer.Length);
        writer.Advance(given);
        Assert.Equal(given, writer.Length);
    }

    [Fact]
    public void AdvanceWithoutGetMemoryAcceptsOnlyZero()
    {
        using SegmentedBufferWriter writer = NewWriter();
        writer.Advance(0);
        Assert.Throws<ArgumentOutOfRangeException>(() => writer.Advance(1));
        Assert.Equal(0, writer.Length);
    }

    [Fact]
    public void AdvanceAfterALargerGetMemoryCountsIntoTheLatestMemory()
    {
        using SegmentedBufferWriter writer = NewWriter(initial: 64, max: 64);
        writer.GetSpan(10)[0] = 1;
        writer.Advance(1);
        Span<byte> large = writer.GetSpan(200);
        Pattern(200).CopyTo(large);
        writer.Advance(200);
        Assert.Equal([1, .. Pattern(200)], writer.ToArray());
    }

    [Fact]
    public void AGetMemoryNotAdvancedIntoLeavesNoEmptySegmentBehind()
    {
        using SegmentedBufferWriter writer = NewWriter(initial: 64, max: 64);
        writer.GetMemory(10);
        writer.GetMemory(1000);
        Pattern(1000).CopyTo(writer.GetSpan(1000));
        writer.Advance(1000);
        ReadOnlySequence<byte> data = writer.GetReadOnlySequence();
        Assert.True(data.IsSingleSegment);
        Assert.Equal(1000, data.FirstSpan.Length);

        // The 64-byte segment went back: only the 1 KB one is held.
        Assert.Equal(1024, _pool.GetStatistics().Segmented.BytesHeld);
    }

    [Fact]
    public void TheSequenceHoldsEveryByteWrittenAcrossSegmentsWithoutCopying()
    {
        using SegmentedBufferWriter writer = NewWriter(initial: 16, max: 64);
        byte[] data = Pattern(1000);
        for (int offset = 0; offset < data.Length; offset += 10)
        {
            writer.Write(data.AsSpan(offset, 10));
        }

        ReadOnlySequence<byte> sequence = writer.GetReadOnlySequence();
        Assert.False(sequence.IsSingleSegment);
        Assert.Equal(data, sequence.ToArray());
        Assert.Equal(1000, writer.Length);

        // The sequence's memory is the writer's segment memory: a byte written through GetMemory shows in it.
        Assert.Equal(data[999], sequence.Slice(999).FirstSpan[0]);
    }

    [Fact]
    public void TheSegmentsGrowGeometricallyUpToTheMaximum()
    {
        using SegmentedBufferWriter writer = NewWriter(initial: 1024, max: 8192);
        writer.Write(new byte[64 * 1024]);
        int[] lengths = [.. EnumerateSegments(writer.GetReadOnlySequence()).Select(static memory => memory.Length)];
        Assert.Equal([1024, 2048, 4096, 8192, 8192], lengths[..5]);
        Assert.All(lengths, static length => Assert.True(length <= 8192));
    }

    [Fact]
    public void ConsumeReleasesWholeSegmentsAndKeepsTheRest()
    {
        using SegmentedBufferWriter writer = NewWriter(initial: 64, max: 64);
        byte[] data = Pattern(640);
        writer.Write(data);
        long held = _pool.GetStatistics().Segmented.BytesHeld;

        writer.Consume(130);
        Assert.Equal(510, writer.Length);
        Assert.Equal(data[130..], writer.ToArray());
        Assert.Equal(held - 128, _pool.GetStatistics().Segmented.BytesHeld);

        writer.Consume(0);
        Assert.Equal(data[130..], writer.ToArray());
    }

    [Fact]
    public void AdvanceToAPositionOfTheSequenceConsumesTheBytesBeforeIt()
    {
        using SegmentedBufferWriter writer = NewWriter(initial: 64, max: 64);
        byte[] data = Pattern(300);
        writer.Write(data);
        ReadOnlySequence<byte> sequence = writer.GetReadOnlySequence();

        writer.AdvanceTo(sequence.GetPosition(128));
        Assert.Equal(data[128..], writer.ToArray());

        sequence = writer.GetReadOnlySequence();
        writer.AdvanceTo(sequence.End);
        Assert.Equal(0, writer.Length);
        writer.AdvanceTo(writer.GetReadOnlySequence().Start);
    }

    [Fact]
    public void APositionFromAnotherWriterOrAlreadyConsumedIsRefused()
    {
        using SegmentedBufferWriter writer = NewWriter(initial: 64, max: 64);
        using SegmentedBufferWriter other = NewWriter(initial: 64, max: 64);
        writer.Write(Pattern(300));
        other.Write(Pattern(300));
        Assert.Equal("consumed", Assert.Throws<ArgumentOutOfRangeException>(() => writer.AdvanceTo(other.GetReadOnlySequence().GetPosition(10))).ParamName);

        SequencePosition early = writer.GetReadOnlySequence().GetPosition(10);
        writer.Consume(20);
        Assert.Throws<ArgumentOutOfRangeException>(() => writer.AdvanceTo(early));
        Assert.Equal(280, writer.Length);
    }

    [Fact]
    public void ConsumeMoreThanTheLengthThrowsAndChangesNothing()
    {
        using SegmentedBufferWriter writer = NewWriter();
        writer.Write(Pattern(100));
        Assert.Equal("count", Assert.Throws<ArgumentOutOfRangeException>(() => writer.Consume(101)).ParamName);
        Assert.Throws<ArgumentOutOfRangeException>(() => writer.Consume(-1));
        Assert.Equal(Pattern(100), writer.ToArray());
    }

    [Fact]
    public void WritesAfterConsumingEverythingReuseTheLastSegmentAsAQueue()
    {
        using SegmentedBufferWriter writer = NewWriter(initial: 64, max: 64);
        for (int round = 0; round < 100; round++)
        {
            byte[] message = Pattern(40, round);
            writer.Write(message);
            Assert.Equal(message, writer.ToArray());
            writer.Consume(writer.Length);
        }

        // The queue never held more than one or two segments at once.
        Assert.True(_pool.GetStatistics().Segmented.BytesHeld <= 128);
    }

    [Fact]
    public void WritesAfterAPartialConsumeAppendAfterTheRest()
    {
        using SegmentedBufferWriter writer = NewWriter(initial: 64, max: 64);
        writer.Write(Pattern(100));
        writer.Consume(70);
        writer.Write(Pattern(100, 100));
        Assert.Equal([.. Pattern(100)[70..], .. Pattern(100, 100)], writer.ToArray());
    }

    [Fact]
    public void ResetForgetsTheDataKeepsOneSegmentAndStartsTheGrowthOver()
    {
        using SegmentedBufferWriter writer = NewWriter(initial: 64, max: 256);
        writer.Write(Pattern(2000));
        writer.Reset();
        Assert.Equal(0, writer.Length);
        Assert.True(writer.GetReadOnlySequence().IsEmpty);
        Assert.Equal(64, _pool.GetStatistics().Segmented.BytesHeld);

        writer.Write(Pattern(10, 5));
        Assert.Equal(Pattern(10, 5), writer.ToArray());

        // The growth starts over: past the kept segment, the next one is a new writer's second (twice the initial
        // size), not the largest reached.
        writer.Write(Pattern(90, 15));
        Assert.Equal([.. Pattern(10, 5), .. Pattern(90, 15)], writer.ToArray());
        Assert.Equal(64 + 128, _pool.GetStatistics().Segmented.BytesHeld);
    }

    [Fact]
    public void MaxLengthBoundsTheMemoryGivenAndAWriteBeyondItThrows()
    {
        using SegmentedBufferWriter writer = NewWriter(initial: 64, max: 64, maxLength: 100);
        writer.Write(Pattern(90));
        Assert.Equal(10, writer.GetMemory().Length);
        InvalidOperationException error = Assert.Throws<InvalidOperationException>(() => writer.GetMemory(11));
        Assert.Contains("MaxLength (100)", error.Message, StringComparison.Ordinal);
        Assert.Throws<ArgumentOutOfRangeException>(() => writer.Advance(11));
        writer.Advance(10);
        Assert.Throws<InvalidOperationException>(() => writer.GetMemory());

        // Consuming makes room again.
        writer.Consume(50);
        Assert.True(writer.GetMemory(50).Length >= 50);
    }

    [Fact]
    public async Task CopyingOutGivesTheUnconsumedDataToEveryKindOfDestination()
    {
        using SegmentedBufferWriter writer = NewWriter(initial: 16, max: 64);
        byte[] data = Pattern(500);
        writer.Write(data);
        writer.Consume(3);
        byte[] expected = data[3..];

        byte[] span = new byte[600];
        writer.CopyTo(span);
        Assert.Equal(expected, span[..497]);
        Assert.Equal("destination", Assert.Throws<ArgumentException>(() => writer.CopyTo(new byte[496])).ParamName);

        using var stream = new MemoryStream();
        writer.CopyTo(stream);
        Assert.Equal(expected, stream.ToArray());

        using var asyncStream = new MemoryStream();
        await writer.CopyToAsync(asyncStream, TestContext.Current.CancellationToken);
        Assert.Equal(expected, asyncStream.ToArray());

        var bufferWriter = new ArrayBufferWriter<byte>();
        writer.CopyTo(bufferWriter);
        Assert.Equal(expected, bufferWriter.WrittenSpan.ToArray());
        Assert.Throws<ArgumentException>(() => writer.CopyTo(writer));

        Assert.Equal(expected, writer.ToArray());
        Assert.Equal(497, writer.Length);
    }

    [Fact]
    public void AnEmptyWriterCopiesNothing()
    {
        using SegmentedBufferWriter writer = NewWriter();
        Assert.Empty(writer.ToArray());
        Assert.True(writer.GetReadOnlySequence().IsEmpty);
        writer.CopyTo(Span<byte>.Empty);
        writer.Consume(0);
        writer.Reset();
    }

    [Fact]
    public void DisposeReturnsEverySegmentAndASecondDisposeIsHarmless()
    {
        SegmentedBufferWriter writer = NewWriter(initial: 64, max: 1024);
        writer.Write(Pattern(10_000));
        Assert.True(_pool.GetStatistics().BytesInUse > 0);
        writer.Dispose();
        writer.Dispose();
        TieredMemoryPoolStatistics statistics = _pool.GetStatistics();
        Assert.Equal(0, statistics.BytesInUse);
        Assert.Equal(0, statistics.Segmented.BytesHeld);
        Assert.Equal(0, statistics.Segmented.LiveBuffers);
    }

    [Fact]
    public void EveryMemberThrowsObjectDisposedAfterDispose()
    {
        SegmentedBufferWriter writer = NewWriter();
        writer.Write(Pattern(100));
        ReadOnlySequence<byte> before = writer.GetReadOnlySequence();
        writer.Dispose();
        Assert.Throws<ObjectDisposedException>(() => writer.GetMemory());
        Assert.Throws<ObjectDisposedException>(() => writer.GetSpan(10));
        Assert.Throws<ObjectDisposedException>(() => writer.Advance(0));
        Assert.Throws<ObjectDisposedException>(() => writer.GetReadOnlySequence());
        Assert.Throws<ObjectDisposedException>(() => writer.Consume(0));
        Assert.Throws<ObjectDisposedException>(() => writer.AdvanceTo(before.Start));
        Assert.Throws<ObjectDisposedException>(() => writer.Reset());
        Assert.Throws<ObjectDisposedException>(() => writer.ToArray());
        Assert.Throws<ObjectDisposedException>(() => writer.CopyTo(new byte[100]));
        Assert.Throws<ObjectDisposedException>(() => writer.CopyTo(Stream.Null));
    }

    [Fact]
    public void AnyMemoryPoolServesTheSegments()
    {
        using var writer = new SegmentedBufferWriter(new SegmentedBufferOptions { Pool = MemoryPool<byte>.Shared, InitialSegmentSize = 100, MaxSegmentSize = 1000 });
        writer.Write(Pattern(5000));
        Assert.Equal(Pattern(5000), writer.ToArray());
        writer.Consume(2500);
        Assert.Equal(Pattern(5000)[2500..], writer.ToArray());
    }

    [Fact]
    public void TheDefaultWriterRentsFromTheSharedPool()
    {
        using var writer = new SegmentedBufferWriter();
        writer.Write(Pattern(10));
        Assert.True(TieredMemoryPool.Shared.GetStatistics().Segmented.BytesHeld >= SegmentedBufferOptions.DefaultInitialSegmentSize);
        Assert.Equal(Pattern(10), writer.ToArray());
        Assert.Equal(SegmentedBufferOptions.DefaultMaxLength, writer.MaxLength);
    }

    private static System.Collections.Generic.IEnumerable<ReadOnlyMemory<byte>> EnumerateSegments(ReadOnlySequence<byte> sequence)
    {
        foreach (ReadOnlyMemory<byte> memory in sequence)
        {
            yield return memory;
        }
    }
}
