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
