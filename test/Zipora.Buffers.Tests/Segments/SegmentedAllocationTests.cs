using System;
using System.Threading;

namespace Zipora.Buffers.Tests;

/// <summary>
/// With a <see cref="TieredMemoryPool"/> in its default mode (an owner per rent for everyone else), a message built,
/// read back and disposed allocates only the writer or stream object: segments rent their blocks without owners and
/// their segment objects are pooled.
/// </summary>
public sealed class SegmentedAllocationTests
{
    private const int Messages = 200;
    private const int ChunkSize = 4096;
    private const int MessageSize = 64 * 1024;

    [Fact]
    public void AWriterMessageLoopAllocatesOnlyTheWriterAfterWarmUp()
    {
        using var pool = new TieredMemoryPool(new TieredMemoryPoolOptions { IdleReleaseDelay = Timeout.InfiniteTimeSpan });
        var options = new SegmentedBufferOptions { Pool = pool };
        byte[] chunk = new byte[ChunkSize];
        byte[] readBack = new byte[MessageSize];
        for (int i = 0; i < 50; i++)
        {
            WriterMessage(options, chunk, readBack);
        }

        long writerSize = SizeOfOne(() => new SegmentedBufferWriter(options));
        long before = GC.GetAllocatedBytesForCurrentThread();
        for (int i = 0; i < Messages; i++)
        {
            WriterMessage(options, chunk, readBack);
        }

        long allocated = GC.GetAllocatedBytesForCurrentThread() - before;
        TestContext.Current.TestOutputHelper?.WriteLine($"writer object {writerSize} B; {Messages} messages allocated {allocated} B");
        Assert.Equal(Messages * writerSize, allocated);
        Assert.Equal(0, pool.GetStatistics().BytesInUse);
    }

    [Fact]
    public void AStreamMessageLoopAllocatesOnlyTheStreamAfterWarmUp()
    {
        using var pool = new TieredMemoryPool(new TieredMemoryPoolOptions { IdleReleaseDelay = Timeout.InfiniteTimeSpan });
        var options = new SegmentedBufferOptions { Pool = pool };
        byte[] chunk = new byte[ChunkSize];
        byte[] readBack = new byte[MessageSize];
        for (int i = 0; i < 50; i++)
        {
            StreamMessage(options, chunk, readBack);
        }

        long streamSize = SizeOfOne(() => new SegmentedMemoryStream(options));
        long before = GC.GetAllocatedBytesForCurrentThread();
        for (int i = 0; i < Messages; i++)
        {
            StreamMessage(options, chunk, readBack);
        }

        long allocated = GC.GetAllocatedBytesForCurrentThread() - before;
        TestContext.Current.TestOutputHelper?.WriteLine($"stream object {streamSize} B; {Messages} messages allocated {allocated} B");
        Assert.Equal(Messages * streamSize, allocated);
        Assert.Equal(0, pool.GetStatistics().BytesInUse);
    }

    /// <summary>The bytes one <c>new</c> allocates, measured alone (the object is disposed outside the measurement).</summary>
    private static long SizeOfOne(Func<IDisposable> create)
    {
        long before = GC.GetAllocatedBytesForCurrentThread();
        IDisposable created = create();
        long size = GC.GetAllocatedBytesForCurrentThread() - before;
        created.Dispose();
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
