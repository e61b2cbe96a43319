using System;
using System.Threading;

namespace Zipora.Buffers.Tests;

/// <summary>
/// With a <see cref="TieredMemoryPool"/> in its default mode (an owner per rent for everyone else), a message built,
/// read back and disposed allocates only the writer or stream object: segments rent their blocks without owners and
/// their segment objects are pooled; a writer kept across messages allocates nothing.
/// </summary>
public sealed class SegmentedAllocationTests
{
    private const int Messages = 200;
    private const int ChunkSize = 4096;
    private const int MessageSize = 64 * 1024;

    [Fact]
    public void AWriterMessageLoopAllocatesOnlyTheWriterAfterWarmUp() =>
        AssertASteadyLoopAllocatesOnlyTheBuffers(static options => new SegmentedBufferWriter(options), WriterMessage);

    [Fact]
    public void AStreamMessageLoopAllocatesOnlyTheStreamAfterWarmUp() =>
        AssertASteadyLoopAllocatesOnlyTheBuffers(static options => new SegmentedMemoryStream(options), StreamMessage);

    /// <summary>
    /// A writer kept across messages, each ended by <see cref="SegmentedBufferWriter.Reset"/> or consumed whole (a queue),
    /// allocates nothing at all in the steady state: 0 B per message, 1 KB or 64 KB long.
    /// </summary>
    [Theory]
    [InlineData(true, 1024)]
    [InlineData(true, MessageSize)]
    [InlineData(false, 1024)]
    [InlineData(false, MessageSize)]
    public void AWriterReusedAcrossMessagesAllocatesNothingAfterWarmUp(bool reset, int messageSize)
    {
        using var pool = new TieredMemoryPool(new TieredMemoryPoolOptions { IdleReleaseDelay = Timeout.InfiniteTimeSpan });
        using var writer = new SegmentedBufferWriter(new SegmentedBufferOptions { Pool = pool });
        byte[] chunk = new byte[Math.Min(ChunkSize, messageSize)];
        byte[] readBack = new byte[messageSize];
        void Message(SegmentedBufferOptions options, byte[] unusedChunk, byte[] unusedReadBack)
        {
            for (int written = 0; written < messageSize; written += chunk.Length)
            {
                chunk.CopyTo(writer.GetSpan(chunk.Length));
                writer.Advance(chunk.Length);
            }

            writer.CopyTo(readBack);
            if (reset)
            {
                writer.Reset();
            }
            else
            {
                writer.Consume(writer.Length);
            }
        }

        AssertASteadyLoopAllocates(pool, Message, perMessage: 0);
    }

    /// <summary>
    /// Warms a pool up with 50 messages, then checks that a loop of <see cref="Messages"/> more allocates exactly one
    /// buffer object per message. A round in which the pool missed its caches (mapped or carved memory again) is not
    /// the steady state: another test's pressure trim of every pool in the process causes that. Up to three rounds are
    /// run, and one of them must miss nothing.
    /// </summary>
    private static void AssertASteadyLoopAllocatesOnlyTheBuffers(Func<SegmentedBufferOptions, IDisposable> create, Action<SegmentedBufferOptions, byte[], byte[]> message)
    {
        using var pool = new TieredMemoryPool(new TieredMemoryPoolOptions { IdleReleaseDelay = Timeout.InfiniteTimeSpan });
        var options = new SegmentedBufferOptions { Pool = pool };

        // One warm message first: the thread's first buffer also makes its caches.
        message(options, new byte[ChunkSize], new byte[MessageSize]);
        long bufferSize = SizeOfOne(() => create(options));
        AssertASteadyLoopAllocates(pool, message, bufferSize);
        Assert.Equal(0, pool.GetStatistics().BytesInUse);
    }

    /// <summary>As <see cref="AssertASteadyLoopAllocatesOnlyTheBuffers"/>, with <paramref name="perMessage"/> bytes allowed per message.</summary>
    private static void AssertASteadyLoopAllocates(TieredMemoryPool pool, Action<SegmentedBufferOptions, byte[], byte[]> message, long perMessage)
    {
        var options = new SegmentedBufferOptions { Pool = pool };
        byte[] chunk = new byte[ChunkSize];
        byte[] readBack = new byte[MessageSize];
        for (int i = 0; i < 50; i++)
        {
            message(options, chunk, readBack);
        }

        for (int round = 1; ; round++)
        {
            long missesBefore = Misses(pool.GetStatistics());
            long allocated = ThreadAllocations.During(() =>
            {
                for (int i = 0; i < Messages; i++)
                {
                    message(options, chunk, readBack);
                }
            });
            TieredMemoryPoolStatistics statistics = pool.GetStatistics();
            long misses = Misses(statistics) - missesBefore;
            TestContext.Current.TestOutputHelper?.WriteLine($"round {round}: {perMessage} B allowed per message; {Messages} messages allocated {allocated} B, {misses} cache misses");
            if (misses == 0 || round == 3)
            {
                Assert.True(misses == 0, $"three rounds of {Messages} messages missed the pool's caches: {statistics}");
                Assert.True(Messages * perMessage == allocated, $"{Messages} messages allocated {allocated} B, not {Messages} x {perMessage} B: {statistics}");
                return;
            }
        }
    }

    private static long Misses(TieredMemoryPoolStatistics statistics) =>
        statistics.Small.CacheMisses + statistics.Medium.CacheMisses + statistics.Large.CacheMisses + statistics.Huge.CacheMisses;

    /// <summary>The bytes one <c>new</c> allocates, measured alone (the object is disposed outside the measurement).</summary>
    private static long SizeOfOne(Func<IDisposable> create)
    {
        IDisposable? created = null;
        long size = ThreadAllocations.During(() => created = create());
        created!.Dispose();
        Assert.InRange(size, 24, 256);
        return size;
    }

    private static void WriterMessage(SegmentedBufferOptions options, byte[] chunk, byte[] readBack)
    {
        var writer = new SegmentedBufferWriter(options);
        for (int written = 0; written < MessageSize; written += ChunkSize)
        {
            chunk.CopyTo(writer.GetSpan(ChunkSize));
            writer.Advance(ChunkSize);
        }

        writer.CopyTo(readBack);
        writer.Dispose();
    }

    private static void StreamMessage(SegmentedBufferOptions options, byte[] chunk, byte[] readBack)
    {
        var stream = new SegmentedMemoryStream(options);
        for (int written = 0; written < MessageSize; written += ChunkSize)
        {
            stream.Write(chunk);
        }

        stream.Position = 0;
        int read = 0;
        while (read < MessageSize)
        {
            read += stream.Read(readBack.AsSpan(read, ChunkSize));
        }

        stream.Dispose();
    }
}
