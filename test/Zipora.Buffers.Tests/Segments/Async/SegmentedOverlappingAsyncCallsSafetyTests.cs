using System;
using System.Diagnostics;
using System.Threading;
using System.Threading.Tasks;
using static Zipora.Buffers.Tests.SegmentedBuffers;

namespace Zipora.Buffers.Tests;

/// <summary>
/// One stream driven by two asynchronous callers at once (two reads, a write while a copy is pending, a SetLength
/// during both), as a handler sharing a stream with a background task by mistake would: each call either works on a
/// consistent stream or is refused with <see cref="InvalidOperationException"/> in its task; nothing else, no byte
/// that is not the stream's, and every block back once after a dispose that comes while calls are still running.
/// </summary>
public sealed class SegmentedOverlappingAsyncCallsSafetyTests
{
    private const byte Mine = 0x5A;

    [Fact]
    public async Task TwoAsyncCallersOnOneStreamAreRefusedOrServedAndNeverSeeAnotherBuffersBytes()
    {
        using var pool = new TieredMemoryPool();
        var options = new SegmentedBufferOptions { Pool = pool, InitialSegmentSize = 4096, MaxSegmentSize = 16384 };
        var stream = new SegmentedMemoryStream(options);
        await stream.WriteAsync(Filled(200_000, Mine), TestContext.Current.CancellationToken);
        var destination = new YieldingDestinationStream(Mine);
        long refused = 0;
        long foreignRead = 0;
        using var stampers = new PoolStampers(pool, options, 4096, threads: 1);
        var clock = Stopwatch.StartNew();

        async Task Caller(int seed)
        {
            var random = new Random(seed);
            byte[] buffer = new byte[20_000];
            while (clock.ElapsedMilliseconds < 1200)
            {
                try
                {
                    switch (random.Next(5))
                    {
                        case 0:
                            stream.Position = random.Next(250_000);
                            int read = await stream.ReadAsync(buffer.AsMemory(0, random.Next(1, buffer.Length)), TestContext.Current.CancellationToken);
                            Interlocked.Add(ref foreignRead, read - buffer.AsSpan(0, read).Count(Mine) - buffer.AsSpan(0, read).Count((byte)0));
                            break;
                        case 1:
                            stream.Position = random.Next(250_000);
                            await stream.WriteAsync(Filled(random.Next(1, 30_000), Mine), TestContext.Current.CancellationToken);
                            break;
                        case 2:
                            stream.Position = random.Next(100_000);
                            await stream.CopyToAsync(destination, TestContext.Current.CancellationToken);
                            break;
                        case 3:
                            stream.SetLength(random.Next(300_000));
                            break;
                        default:
                            await Task.Yield();
                            break;
                    }
                }
                catch (InvalidOperationException)
                {
                    Interlocked.Increment(ref refused);
                }
            }
        }

        await Task.WhenAll(Task.Run(() => Caller(1), TestContext.Current.CancellationToken), Task.Run(() => Caller(2), TestContext.Current.CancellationToken));

        // A dispose while a copy is pending: the copy completes with the stream's bytes, then the segments go back.
        stream.Position = 0;
        Task last = stream.CopyToAsync(destination, TestContext.Current.CancellationToken);
        await Task.Run(stream.Dispose, TestContext.Current.CancellationToken);
        await last;
        stampers.Dispose();

        Assert.Equal(0, Interlocked.Read(ref foreignRead));
        Assert.Equal(0, destination.Foreign);
        Assert.Equal(0, stampers.Broken);
        Assert.True(destination.Received > 0 && Interlocked.Read(ref refused) > 0, $"no overlap happened ({destination.Received} bytes copied, {refused} calls refused)");
        Assert.Throws<ObjectDisposedException>(() => stream.ReadByte());
        AssertBalanced(pool);
    }
}
