using System;
using System.Buffers;
using System.IO.Pipelines;
using System.Threading.Tasks;

namespace Zipora.Buffers.Benchmarks;

/// <summary>
/// Bytes moved through pipes on a pool the way a connection's transport moves them: per pipe, a writer task writes
/// 4 to 64 KB at a time and flushes (pausing at the pipe's threshold), and a reader task on another thread pool work
/// item reads what is there and touches a byte per cache line.
/// </summary>
public static class PipeTraffic
{
    /// <summary>Moves <paramref name="bytesPerPipe"/> through each of <paramref name="pipes"/> pipes at once; returns a checksum of what was read.</summary>
    public static async Task<long> MoveAsync(MemoryPool<byte> pool, int pipes, long bytesPerPipe)
    {
        if (pipes == 1)
        {
            return await MoveThroughOneAsync(pool, bytesPerPipe, seed: 42);
        }

        var moving = new Task<long>[pipes];
        for (int i = 0; i < pipes; i++)
        {
            int seed = 42 + i;
            moving[i] = Task.Run(() => MoveThroughOneAsync(pool, bytesPerPipe, seed));
        }

        long checksum = 0;
        foreach (long one in await Task.WhenAll(moving))
        {
            checksum += one;
        }

        return checksum;
    }

    private static async Task<long> MoveThroughOneAsync(MemoryPool<byte> pool, long bytes, int seed)
    {
        var pipe = new Pipe(new PipeOptions(pool: pool, useSynchronizationContext: false));
        Task writing = Task.Run(async () =>
        {
            var random = new Random(seed);
            for (long written = 0; written < bytes;)
            {
                int size = (int)Math.Min(random.Next(4 * 1024, (64 * 1024) + 1), bytes - written);
                Memory<byte> memory = pipe.Writer.GetMemory(size);
                memory.Span[..size].Fill((byte)written);
                pipe.Writer.Advance(size);
                written += size;
                await pipe.Writer.FlushAsync();
            }

            await pipe.Writer.CompleteAsync();
        });

        long checksum = 0;
        while (true)
        {
            ReadResult result = await pipe.Reader.ReadAsync();
            foreach (ReadOnlyMemory<byte> segment in result.Buffer)
            {
                ReadOnlySpan<byte> span = segment.Span;
                for (int i = 0; i < span.Length; i += 64)
                {
                    checksum += span[i];
                }
            }

            pipe.Reader.AdvanceTo(result.Buffer.End);
            if (result.IsCompleted)
            {
                break;
            }
        }

        await writing;
        await pipe.Reader.CompleteAsync();
        return checksum;
    }
}
