using System;
using System.Buffers;
using System.Collections.Generic;
using Microsoft.Extensions.Time.Testing;

namespace Zipora.Buffers.Tests;

/// <summary>
/// A writer made on a thread whose last message parked its block takes that block as its first segment at once, so
/// its first <c>GetSpan</c> takes no guard. It must behave as a writer that rents its first block at that call: empty
/// until written, the same memory for every request, the same growth, and the same statistics.
/// </summary>
public sealed class SegmentedKeptHeadTests
{
    private const int Message = ParkedBlocks.Message;

    [Fact]
    public void AWriterMadeWhereAMessageParkedItsBlockStartsEmptyWithThatBlockAsItsFirstSegment()
    {
        using TieredMemoryPool pool = ParkedBlocks.NewPool(new FakeTimeProvider());
        var options = new SegmentedBufferOptions { Pool = pool };
        nint parked = ParkedBlocks.WriteMessage(options, 1);
        long rents = pool.GetStatistics().Medium.Rents;
        long messages = pool.GetStatistics().Segmented.Messages;

        using (var writer = new SegmentedBufferWriter(options))
        {
            // Empty by every measure, though it holds the block.
            Assert.Equal(0, writer.Length);
            Assert.True(writer.GetReadOnlySequence().IsEmpty);
            Assert.Empty(writer.ToArray());
            writer.CopyTo(Span<byte>.Empty);
            writer.AdvanceTo(writer.GetReadOnlySequence().End);
            Assert.Equal(0, writer.Length);
            Assert.Equal(4096, pool.GetStatistics().Segmented.BytesHeld);

            // The first request within the block gets the block itself, from its start.
            Memory<byte> memory = writer.GetMemory(Message);
            Assert.Equal(parked, SegmentedBuffers.AddressOf(memory));
            Assert.Equal(4096, memory.Length);
        }

        // Disposed unwritten: no message counted, nothing rented, and the block parked again for the next writer.
        TieredMemoryPoolStatistics statistics = pool.GetStatistics();
        Assert.Equal(messages, statistics.Segmented.Messages);
        Assert.Equal(rents, statistics.Medium.Rents);
        Assert.Equal(0, statistics.BytesInUse);
        Assert.Equal(parked, ParkedBlocks.WriteMessage(options, 2));
        Assert.Equal(messages + 1, pool.GetStatistics().Segmented.Messages);
        SegmentedBuffers.AssertBalanced(pool);
    }

    /// <summary>
    /// Advance without GetMemory counts nothing in a writer that took a kept block, as in one that rents its first
    /// block at its first request: no memory was given. Before the fix the kept block was counted as given, so
    /// <c>Advance(1024)</c> on a new writer succeeded and its data was the previous writer's message.
    /// </summary>
    [Fact]
    public void AdvanceBeforeAnyGetMemoryIsRefusedInAWriterThatTookAKeptBlockAndShowsNoEarlierMessage()
    {
        using TieredMemoryPool pool = ParkedBlocks.NewPool(new FakeTimeProvider());
        var options = new SegmentedBufferOptions { Pool = pool };
        _ = ParkedBlocks.WriteMessage(options, 0xAB);

        using (var writer = new SegmentedBufferWriter(options))
        {
            Assert.Equal(4096, pool.GetStatistics().Segmented.BytesHeld);
            writer.Advance(0);
            Assert.Equal("count", Assert.Throws<ArgumentOutOfRangeException>(() => writer.Advance(Message)).ParamName);
            Assert.Equal(0, writer.Length);
            Assert.Empty(writer.ToArray());

            // Once memory is given, Advance counts into it as in any writer.
            writer.GetSpan(1)[0] = 7;
            writer.Advance(1);
            Assert.Equal(new byte[] { 7 }, writer.ToArray());
        }

        SegmentedBuffers.AssertBalanced(pool);
    }

    [Fact]
    public void AMessageWrittenIntoTheKeptBlockCountsOneSegmentAndReadsBackAsWritten()
    {
        using TieredMemoryPool pool = ParkedBlocks.NewPool(new FakeTimeProvider());
        var options = new SegmentedBufferOptions { Pool = pool };
        _ = ParkedBlocks.WriteMessage(options, 1);
        SegmentedBufferStatistics before = pool.GetStatistics().Segmented;
        using (var writer = new SegmentedBufferWriter(options))
        {
            writer.Write(SegmentedBuffers.Filled(3000, 7));
            writer.Write(SegmentedBuffers.Filled(3000, 8));
            byte[] expected = [.. SegmentedBuffers.Filled(3000, 7), .. SegmentedBuffers.Filled(3000, 8)];
            Assert.Equal(expected, writer.GetReadOnlySequence().ToArray());
            Assert.False(writer.GetReadOnlySequence().IsSingleSegment);
        }

        SegmentedBufferStatistics after = pool.GetStatistics().Segmented;
        Assert.Equal(before.Messages + 1, after.Messages);
        Assert.Equal(before.MessageSegments + 2, after.MessageSegments);
        SegmentedBuffers.AssertBalanced(pool);
    }

    /// <summary>
    /// Every request of a series gets memory of the length a writer with no kept block gets for it, so the kept block
    /// changes neither the first segment's class (a larger first request replaces it) nor the growth after it.
    /// </summary>
    [Theory]
    [InlineData(4096, new[] { 100, 5000, 5000 })]
    [InlineData(4096, new[] { 5000, 9000, 20000, 1 })]
    [InlineData(4096, new[] { 4096, 1, 1, 1 })]
    [InlineData(3000, new[] { 3500, 5000, 6000 })]
    [InlineData(3000, new[] { 5000, 1, 1 })]
    [InlineData(9000, new[] { 17000, 30000 })]
    [InlineData(1024, new[] { 100_000, 1 })]
    public void EveryRequestGetsTheMemoryAWriterWithoutAKeptBlockGets(int initialSegmentSize, int[] requests)
    {
        List<int> fresh;
        using (var alone = new TieredMemoryPool(new TieredMemoryPoolOptions { EnableHugepages = false }))
        {
            fresh = Lengths(new SegmentedBufferOptions { Pool = alone, InitialSegmentSize = initialSegmentSize }, requests);
        }

        using TieredMemoryPool pool = ParkedBlocks.NewPool(new FakeTimeProvider());
        var options = new SegmentedBufferOptions { Pool = pool, InitialSegmentSize = initialSegmentSize };
        _ = ParkedBlocks.WriteMessage(options, 1);
        Assert.Equal(fresh, Lengths(options, requests));
        SegmentedBuffers.AssertBalanced(pool);
    }

    /// <summary>
    /// A consume of nothing (or an advance to the empty data's start) and a reset of an unwritten writer forget no byte:
    /// a writer that took the kept block must grow after them as one with no kept block grows (its first segment, then
    /// one twice as large), not start the growth over as if its block were a finished message's.
    /// </summary>
    [Theory]
    [InlineData("Consume(0)")]
    [InlineData("AdvanceTo(Start)")]
    [InlineData("AdvanceTo(End)")]
    [InlineData("Reset")]
    public void ACallThatForgetsNoByteOfAnUnwrittenWriterLeavesItsGrowthAsAWriterWithoutAKeptBlocks(string call)
    {
        int fresh;
        using (var alone = new TieredMemoryPool(new TieredMemoryPoolOptions { EnableHugepages = false }))
        {
            fresh = SecondSegmentAfter(new SegmentedBufferOptions { Pool = alone }, call);
        }

        using TieredMemoryPool pool = ParkedBlocks.NewPool(new FakeTimeProvider());
        var options = new SegmentedBufferOptions { Pool = pool };
        _ = ParkedBlocks.WriteMessage(options, 1);
        Assert.Equal(8192, fresh);
        Assert.Equal(fresh, SecondSegmentAfter(options, call));
        SegmentedBuffers.AssertBalanced(pool);
    }

    /// <summary>
    /// An unwritten writer copied into another writer that has no room left copies nothing and throws nothing, whether or
    /// not it took its thread's kept block (an empty segment in its data must not ask the destination for memory).
    /// </summary>
    [Fact]
    public void CopyingAnUnwrittenWriterThatTookAKeptBlockIntoAFullWriterCopiesNothing()
    {
        using TieredMemoryPool pool = ParkedBlocks.NewPool(new FakeTimeProvider());
        var options = new SegmentedBufferOptions { Pool = pool };
        _ = ParkedBlocks.WriteMessage(options, 1);
        using (var empty = new SegmentedBufferWriter(options))
        using (var full = new SegmentedBufferWriter(new SegmentedBufferOptions { Pool = pool, MaxLength = 0 }))
        {
            Assert.Equal(4096, pool.GetStatistics().Segmented.BytesHeld);
            empty.CopyTo(full);
            Assert.Equal(0, full.Length);
        }

        SegmentedBuffers.AssertBalanced(pool);
    }

    /// <summary>An unwritten writer that took its thread's kept block writes nothing to a stream: no call at all, as one without.</summary>
    [Fact]
    public async System.Threading.Tasks.Task CopyingAnUnwrittenWriterThatTookAKeptBlockToAStreamMakesNoWrite()
    {
        using TieredMemoryPool pool = ParkedBlocks.NewPool(new FakeTimeProvider());
        var options = new SegmentedBufferOptions { Pool = pool };
        _ = ParkedBlocks.WriteMessage(options, 1);
        using (var empty = new SegmentedBufferWriter(options))
        {
            using var destination = new WriteCountingStream();
            empty.CopyTo(destination);
            await empty.CopyToAsync(destination, TestContext.Current.CancellationToken);
            Assert.Equal(0, destination.Writes);
        }

        SegmentedBuffers.AssertBalanced(pool);
    }

    /// <summary>The length of the memory a writer's second segment gives, after <paramref name="call"/> on the new writer and a first segment's worth written.</summary>
    private static int SecondSegmentAfter(SegmentedBufferOptions options, string call)
    {
        using var writer = new SegmentedBufferWriter(options);
        switch (call)
        {
            case "Consume(0)":
                writer.Consume(0);
                break;
            case "AdvanceTo(Start)":
                writer.AdvanceTo(writer.GetReadOnlySequence().Start);
                break;
            case "AdvanceTo(End)":
                writer.AdvanceTo(writer.GetReadOnlySequence().End);
                break;
            default:
                writer.Reset();
                break;
        }

        writer.Write(SegmentedBuffers.Filled(4096, 3));
        return writer.GetMemory(1).Length;
    }

    /// <summary>A stream that counts the writes made to it and keeps nothing.</summary>
    private sealed class WriteCountingStream : System.IO.Stream
    {
        public int Writes { get; private set; }

        public override bool CanRead => false;

        public override bool CanSeek => false;

        public override bool CanWrite => true;

        public override long Length => throw new NotSupportedException();

        public override long Position { get => throw new NotSupportedException(); set => throw new NotSupportedException(); }

        public override void Flush()
        {
        }

        public override int Read(byte[] buffer, int offset, int count) => throw new NotSupportedException();

        public override long Seek(long offset, System.IO.SeekOrigin origin) => throw new NotSupportedException();

        public override void SetLength(long value) => throw new NotSupportedException();

        public override void Write(byte[] buffer, int offset, int count) => Writes++;

        public override void Write(ReadOnlySpan<byte> buffer) => Writes++;

        public override System.Threading.Tasks.ValueTask WriteAsync(ReadOnlyMemory<byte> buffer, System.Threading.CancellationToken cancellationToken = default)
        {
            Writes++;
            return default;
        }
    }

    /// <summary>
    /// A kept block twice the size a writer's first request rents is of the class above, not the pool's for that
    /// size: the writer rents the smaller class, as one with no kept block does, and the kept block waits.
    /// </summary>
    [Fact]
    public void AKeptBlockTwiceTheSizeOfTheFirstRequestIsNotTakenForIt()
    {
        using TieredMemoryPool pool = ParkedBlocks.NewPool(new FakeTimeProvider());
        _ = ParkedBlocks.WriteMessage(new SegmentedBufferOptions { Pool = pool, InitialSegmentSize = 8192 }, 1);

        var options = new SegmentedBufferOptions { Pool = pool, InitialSegmentSize = 4096 };
        using (var writer = new SegmentedBufferWriter(options))
        {
            Assert.Equal(4096, writer.GetMemory(100).Length);
        }

        SegmentedBuffers.AssertBalanced(pool);
    }

    /// <summary>For each request, the length of the memory GetMemory gives, filled and advanced over whole.</summary>
    private static List<int> Lengths(SegmentedBufferOptions options, int[] requests)
    {
        var lengths = new List<int>();
        using var writer = new SegmentedBufferWriter(options);
        foreach (int request in requests)
        {
            Memory<byte> memory = writer.GetMemory(request);
            lengths.Add(memory.Length);
            memory.Span.Fill(3);
            writer.Advance(memory.Length);
        }

        // And one request that is not written, then a larger one: the empty tail grows in place.
        lengths.Add(writer.GetMemory(10).Length);
        lengths.Add(writer.GetMemory(50_000).Length);
        return lengths;
    }
}
