using System;
using System.IO.Pipelines;
using System.Threading.Tasks;
using static Zipora.Buffers.Tests.PositionPattern;

namespace Zipora.Buffers.Tests;

public sealed class PipeTests
{
    private const long BytesPerRun = 256L * 1024 * 1024;

    [Theory]
    [InlineData(4 * 1024)]
    [InlineData(16 * 1024)]
    [InlineData(64 * 1024)]
    [InlineData(1024 * 1024)]
    public async Task APipeMovesAQuarterGigabyteIntactWithAConcurrentReaderAndWriter(int segmentSize)
    {
        using var pool = new TieredMemoryPool();
        var pipe = new Pipe(new PipeOptions(pool: pool, minimumSegmentSize: segmentSize, pauseWriterThreshold: 8 * 1024 * 1024, resumeWriterThreshold: 4 * 1024 * 1024, useSynchronizationContext: false));
        Task writing = Task.Run(async () =>
        {
            var random = new Random(segmentSize);
            for (long position = 0; position < BytesPerRun;)
            {
                int size = (int)Math.Min(random.Next(1, 3 * segmentSize), BytesPerRun - position);
                Memory<byte> memory = pipe.Writer.GetMemory(size);
                Fill(memory.Span[..size], position);
                pipe.Writer.Advance(size);
                position += size;
                await pipe.Writer.FlushAsync();
            }

            await pipe.Writer.CompleteAsync();
        });

        long read = await ReadToEndCheckingAsync(pipe.Reader);

        await writing;
        await pipe.Reader.CompleteAsync();
        Assert.Equal(BytesPerRun, read);
        TieredMemoryPoolStatistics statistics = pool.GetStatistics();
        Assert.True(statistics.Medium.Rents + statistics.Large.Rents > 0, "the pipe did not rent from the pool");
        Assert.Equal(0, statistics.BytesInUse);
    }

    [Fact]
    public void GetMemoryBelowMaxBufferSizeRentsFromThePoolAndAboveFallsBackToTheArrayPool()
    {
        using var pool = new TieredMemoryPool(new TieredMemoryPoolOptions { MaxBufferSize = 64 * 1024 });
        var pipe = new Pipe(new PipeOptions(pool: pool, useSynchronizationContext: false));

        Memory<byte> small = pipe.Writer.GetMemory(10_000);
        Assert.True(small.Length >= 10_000);
        pipe.Writer.Advance(10_000);
        Assert.Equal(1, pool.GetStatistics().Medium.Rents);

        // Above MaxBufferSize the pipe allocates the segment itself, without asking the pool.
        Memory<byte> big = pipe.Writer.GetMemory(200_000);
        Assert.True(big.Length >= 200_000);
        pipe.Writer.Advance(200_000);
        TieredMemoryPoolStatistics statistics = pool.GetStatistics();
        Assert.Equal(0, statistics.Large.Rents + statistics.Huge.Rents);
        pipe.Writer.Complete();
        pipe.Reader.Complete();
        Assert.Equal(0, pool.GetStatistics().BytesInUse);
    }
}
