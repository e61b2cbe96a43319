using System;
using System.Buffers;
using System.IO;
using System.IO.Pipelines;
using System.Threading;
using System.Threading.Tasks;
using static Zipora.Buffers.Tests.PositionPattern;

namespace Zipora.Buffers.Tests;

/// <summary>A hostile app driving System.IO.Pipelines over the tiered pool.</summary>
public sealed class PipeHostileUseTests
{
    private const int Max = 64 * 1024;

    public static TheoryData<int, bool> SegmentSizes
    {
        get
        {
            var data = new TheoryData<int, bool>();
            foreach (bool reuse in new[] { false, true })
            {
                foreach (int size in new[] { 0, 1, 4096, 65536, Max + 1, 1024 * 1024 })
                {
                    data.Add(size, reuse);
                }
            }

            return data;
        }
    }

    [Theory]
    [MemberData(nameof(SegmentSizes))]
    public async Task EveryMinimumSegmentSizeAndHintAboveMaxBufferSizeKeepsDataAndReturnsEveryByte(int minimumSegmentSize, bool reuse)
    {
        using var pool = new TieredMemoryPool(new TieredMemoryPoolOptions { MaxBufferSize = Max, ReuseOwners = reuse, EnableHugepages = false });
        var pipe = new Pipe(new PipeOptions(pool: pool, minimumSegmentSize: minimumSegmentSize, pauseWriterThreshold: 0, useSynchronizationContext: false));
        var random = new Random(minimumSegmentSize);
        long position = 0;
        const long total = 8L * 1024 * 1024;
        while (position < total)
        {
            int hint = random.Next(4) switch { 0 => 0, 1 => random.Next(1, 100), 2 => random.Next(1, Max), _ => random.Next(Max, 4 * Max) };
            Memory<byte> memory = pipe.Writer.GetMemory(hint);
            Assert.True(memory.Length >= Math.Max(hint, 1), $"GetMemory({hint}) gave {memory.Length}");
            int count = (int)Math.Min(Math.Max(hint, 1), total - position);
            Fill(memory.Span[..count], position);

            // Advance past the memory: Pipe refuses, and nothing is lost.
            Assert.ThrowsAny<Exception>(() => pipe.Writer.Advance(memory.Length + 1));
            pipe.Writer.Advance(count);
            position += count;
            if (random.Next(3) == 0)
            {
                await pipe.Writer.FlushAsync(TestContext.Current.CancellationToken);
            }
        }

        await pipe.Writer.CompleteAsync();
        long read = await ReadToEndCheckingAsync(pipe.Reader);

        await pipe.Reader.CompleteAsync();
        Assert.Equal(total, read);
        Assert.Equal(0, pool.GetStatistics().BytesInUse);
    }

    [Fact]
    public async Task AStaleReadResultOfACompletedPipeNeverShowsAnotherPipesBytes()
    {
        using var pool = new TieredMemoryPool(new TieredMemoryPoolOptions { EnableHugepages = false });
        foreach (int size in new[] { 16, 4096, 16 * 1024, 200 * 1024, 4 * 1024 * 1024 })
        {
            var a = new Pipe(new PipeOptions(pool: pool, minimumSegmentSize: size, pauseWriterThreshold: 0, useSynchronizationContext: false));
            Memory<byte> m = a.Writer.GetMemory(size);
            m.Span[..size].Fill((byte)'A');
            a.Writer.Advance(size);
            await a.Writer.FlushAsync(TestContext.Current.CancellationToken);
            ReadResult held = await a.Reader.ReadAsync(TestContext.Current.CancellationToken);
            ReadOnlyMemory<byte> first = held.Buffer.First;
            ReadOnlySequence<byte> sequence = held.Buffer;

            // Complete both ends while the reader holds the buffer: the segments go back to the pool.
            await a.Writer.CompleteAsync();
            await a.Reader.CompleteAsync();

            // Another pipe takes the same blocks and writes its own bytes.
            var b = new Pipe(new PipeOptions(pool: pool, minimumSegmentSize: size, pauseWriterThreshold: 0, useSynchronizationContext: false));
            for (int i = 0; i < 4; i++)
            {
                Memory<byte> mb = b.Writer.GetMemory(size);
                mb.Span.Fill((byte)'B');
                b.Writer.Advance(size);
            }

            await b.Writer.FlushAsync(TestContext.Current.CancellationToken);

            // The stale memory throws, for good; never shows B's bytes.
            Assert.Throws<ObjectDisposedException>(() => first.Span[0]);
            try
            {
                byte[] copy = sequence.ToArray();
                Assert.DoesNotContain((byte)'B', copy);
            }
            catch (Exception e) when (e is ObjectDisposedException or ArgumentOutOfRangeException or InvalidOperationException)
            {
                // Pipe reset its segment: fine.
            }

            await b.Writer.CompleteAsync();
            await b.Reader.CompleteAsync();
        }

        Assert.Equal(0, pool.GetStatistics().BytesInUse);
    }

    [Fact]
    public async Task ResetReturnsEverySegmentAndThePipeWorksAgain()
    {
        using var pool = new TieredMemoryPool(new TieredMemoryPoolOptions { EnableHugepages = false });
        var pipe = new Pipe(new PipeOptions(pool: pool, minimumSegmentSize: 4096, pauseWriterThreshold: 0, useSynchronizationContext: false));
        for (int round = 0; round < 20; round++)
        {
            for (int i = 0; i < 10; i++)
            {
                Memory<byte> m = pipe.Writer.GetMemory(3000 * (i + 1));
                m.Span[..100].Fill((byte)round);
                pipe.Writer.Advance(100 + i);
            }

            await pipe.Writer.FlushAsync(TestContext.Current.CancellationToken);
            Assert.True(pool.GetStatistics().BytesInUse > 0);
            await pipe.Writer.CompleteAsync();
            await pipe.Reader.CompleteAsync();
            Assert.Equal(0, pool.GetStatistics().BytesInUse);
            pipe.Reset();
        }
    }

    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public async Task DisposingThePoolUnderLivePipesThrowsObjectDisposedOnRentAndKeepsWhatIsWritten(bool reuse)
    {
        var pool = new TieredMemoryPool(new TieredMemoryPoolOptions { ReuseOwners = reuse, EnableHugepages = false });
        var pipes = new Pipe[8];
        for (int p = 0; p < pipes.Length; p++)
        {
            pipes[p] = new Pipe(new PipeOptions(pool: pool, minimumSegmentSize: 4096 << p, pauseWriterThreshold: 0, useSynchronizationContext: false));
            Memory<byte> m = pipes[p].Writer.GetMemory(1000 << p);
            Fill(m.Span[..(1000 << p)], p);
            pipes[p].Writer.Advance(1000 << p);
            await pipes[p].Writer.FlushAsync(TestContext.Current.CancellationToken);
        }

        pool.Dispose();

        for (int p = 0; p < pipes.Length; p++)
        {
            // The write head still has room: writing into it goes on.
            Memory<byte> m = pipes[p].Writer.GetMemory(1);
            m.Span[0] = Expected(p + (1000 << p));
            pipes[p].Writer.Advance(1);
            await pipes[p].Writer.FlushAsync(TestContext.Current.CancellationToken);

            // A new segment: the disposed pool refuses with ObjectDisposedException.
            Assert.Throws<ObjectDisposedException>(() => pipes[p].Writer.GetMemory(pool.MaxBufferSize));

            ReadResult result = await pipes[p].Reader.ReadAsync(TestContext.Current.CancellationToken);
            Assert.Equal((1000 << p) + 1, result.Buffer.Length);
            Assert.True(Matches(result.Buffer.ToArray(), p));
            pipes[p].Reader.AdvanceTo(result.Buffer.End);
            await pipes[p].Writer.CompleteAsync();
            await pipes[p].Reader.CompleteAsync();
        }

        Assert.Equal(0, pool.GetStatistics().BytesInUse);
    }

    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public async Task TrimInALoopWhilePipesStreamKeepsEveryByte(bool reuse)
    {
        using var pool = new TieredMemoryPool(new TieredMemoryPoolOptions { ReuseOwners = reuse, EnableHugepages = false });
        using var stop = new CancellationTokenSource();
        Task trimming = Task.Run(() =>
        {
            while (!stop.IsCancellationRequested)
            {
                pool.Trim();
                Thread.Yield();
            }
        }, TestContext.Current.CancellationToken);

        var streams = new Task[4];
        for (int s = 0; s < streams.Length; s++)
        {
            int seed = s;
            streams[s] = Task.Run(() => StreamThroughAPipe(pool, seed, 32L * 1024 * 1024), TestContext.Current.CancellationToken);
        }

        try
        {
            await Task.WhenAll(streams);
        }
        finally
        {
            await stop.CancelAsync();
            await trimming;
        }

        Assert.Equal(0, pool.GetStatistics().BytesInUse);
    }

    public static TheoryData<int, int, bool> StreamEdges
    {
        get
        {
            var data = new TheoryData<int, int, bool>();
            foreach ((int bufferSize, int minimumReadSize) in new[] { (1, 1), (16, 1), (4096, 4096), (Max, 1), (Max + 1, Max), (4 * Max, 4 * Max) })
            {
                data.Add(bufferSize, minimumReadSize, false);
                data.Add(bufferSize, minimumReadSize, true);
            }

            return data;
        }
    }

    [Theory]
    [MemberData(nameof(StreamEdges))]
    public async Task StreamPipesOverASegmentedMemoryStreamOnThePoolKeepEveryByte(int bufferSize, int minimumReadSize, bool reuse)
    {
        using var pool = new TieredMemoryPool(new TieredMemoryPoolOptions { MaxBufferSize = Max, ReuseOwners = reuse, EnableHugepages = false });
        const int total = 3 * 1024 * 1024 + 17;
        await using (var stream = new SegmentedMemoryStream(new SegmentedBufferOptions { Pool = pool, MaxSegmentSize = Max }))
        {
            PipeWriter writer = PipeWriter.Create(stream, new StreamPipeWriterOptions(pool: pool, minimumBufferSize: bufferSize, leaveOpen: true));
            var random = new Random(bufferSize);
            for (int position = 0; position < total;)
            {
                int hint = Math.Min(random.Next(0, 3 * Max), total - position);
                Memory<byte> m = writer.GetMemory(hint);
                int count = Math.Min(Math.Max(hint, 1), total - position);
                Fill(m.Span[..count], position);
                writer.Advance(count);
                position += count;
                if (random.Next(4) == 0)
                {
                    await writer.FlushAsync(TestContext.Current.CancellationToken);
                }
            }

            await writer.CompleteAsync();
            Assert.Equal(total, stream.Length);
            stream.Position = 0;

            PipeReader reader = PipeReader.Create(stream, new StreamPipeReaderOptions(pool: pool, bufferSize: bufferSize, minimumReadSize: minimumReadSize, leaveOpen: true));
            long read = await ReadToEndCheckingAsync(reader);

            await reader.CompleteAsync();
            Assert.Equal(total, read);
        }

        Assert.Equal(0, pool.GetStatistics().BytesInUse);
    }

    /// <summary>
    /// Only the pool is given, and its largest buffer is below the default segment sizes: the defaults give way to it
    /// (before, the default MaxSegmentSize of 128 KB was refused). A MaxSegmentSize set above it is still refused.
    /// </summary>
    [Theory]
    [InlineData(4096)]
    [InlineData(Max)]
    public void ASegmentedStreamOnAPoolWhoseMaxBufferSizeIsBelowTheDefaultSegmentSizeNeedsNoExtraOption(int maxBufferSize)
    {
        using var pool = new TieredMemoryPool(new TieredMemoryPoolOptions { MaxBufferSize = maxBufferSize, EnableHugepages = false });
        using (var stream = new SegmentedMemoryStream(new SegmentedBufferOptions { Pool = pool }))
        {
            stream.Write(new byte[300_000]);
            Assert.Equal(300_000, stream.Length);
            foreach (ReadOnlyMemory<byte> segment in stream.GetReadOnlySequence())
            {
                Assert.InRange(segment.Length, 1, maxBufferSize);
            }
        }

        var refused = Assert.Throws<ArgumentOutOfRangeException>(() => new SegmentedMemoryStream(new SegmentedBufferOptions { Pool = pool, MaxSegmentSize = maxBufferSize + 1 }));
        Assert.Contains(nameof(SegmentedBufferOptions.MaxSegmentSize), refused.Message, StringComparison.Ordinal);
        Assert.Equal(0, pool.GetStatistics().BytesInUse);
    }

    private static async Task StreamThroughAPipe(TieredMemoryPool pool, int seed, long total)
    {
        var pipe = new Pipe(new PipeOptions(pool: pool, minimumSegmentSize: 1024 << seed, pauseWriterThreshold: 1024 * 1024, resumeWriterThreshold: 512 * 1024, useSynchronizationContext: false));
        Task writing = Task.Run(async () =>
        {
            var random = new Random(seed);
            for (long position = 0; position < total;)
            {
                int size = (int)Math.Min(random.Next(1, 300_000), total - position);
                Memory<byte> memory = pipe.Writer.GetMemory(size);
                Fill(memory.Span[..size], position);
                pipe.Writer.Advance(size);
                position += size;
                await pipe.Writer.FlushAsync();
            }

            await pipe.Writer.CompleteAsync();
        });

        long read = 0;
        while (true)
        {
            ReadResult result = await pipe.Reader.ReadAsync();
            foreach (ReadOnlyMemory<byte> segment in result.Buffer)
            {
                if (!Matches(segment.Span, read))
                {
                    throw new InvalidDataException($"pipe {seed}: wrong byte in the segment at {read}");
                }

                read += segment.Length;
            }

            pipe.Reader.AdvanceTo(result.Buffer.End);
            if (result.IsCompleted)
            {
                break;
            }
        }

        await writing;
        await pipe.Reader.CompleteAsync();
        if (read != total)
        {
            throw new InvalidDataException($"pipe {seed}: read {read} of {total}");
        }
    }
}
