using System;
using System.Collections.Generic;
using System.IO;
using System.IO.Compression;
using System.IO.Pipelines;
using System.Runtime.CompilerServices;
using System.Text;
using System.Text.Json;
using System.Threading;
using System.Threading.Tasks;
using static Zipora.Buffers.Tests.SegmentedBuffers;

namespace Zipora.Buffers.Tests;

/// <summary>
/// The stream under the .NET wrappers that close what they wrap (compression streams, StreamWriter, pipes), closed in
/// every order and cancelled midway: a wrapper that reaches the stream after its dispose gets
/// <see cref="ObjectDisposedException"/> (as it would from a closed <see cref="MemoryStream"/>), a cancelled one
/// <see cref="OperationCanceledException"/>, and every block goes back once, whichever order the owners close in.
/// </summary>
public sealed class SegmentedStreamWrapperOrderTests
{
    public static TheoryData<string, bool, bool> CompressionOrders
    {
        get
        {
            var data = new TheoryData<string, bool, bool>();
            foreach (string kind in new[] { "gzip", "brotli", "deflate" })
            {
                foreach (bool leaveOpen in new[] { false, true })
                {
                    data.Add(kind, leaveOpen, false);
                    data.Add(kind, leaveOpen, true);
                }
            }

            return data;
        }
    }

    [Theory]
    [MemberData(nameof(CompressionOrders))]
    public async Task ACompressionStreamClosedBeforeOrAfterTheStreamFailsOnlyAsOverAClosedStreamAndReturnsEveryBlock(string kind, bool leaveOpen, bool streamFirst)
    {
        using var pool = new TieredMemoryPool();
        var stream = new SegmentedMemoryStream(new SegmentedBufferOptions { Pool = pool, InitialSegmentSize = 4096, MaxSegmentSize = 4096 });
        Stream compressor = kind switch
        {
            "gzip" => new GZipStream(stream, CompressionLevel.Fastest, leaveOpen),
            "brotli" => new BrotliStream(stream, CompressionLevel.Fastest, leaveOpen),
            _ => new DeflateStream(stream, CompressionLevel.Fastest, leaveOpen),
        };
        byte[] payload = Encoding.UTF8.GetBytes(string.Join(',', new int[50_000]));
        await compressor.WriteAsync(payload, TestContext.Current.CancellationToken);

        if (streamFirst)
        {
            // The compressor's pending output reaches a closed stream: its dispose says so, as over a MemoryStream.
            await stream.DisposeAsync();
            await Assert.ThrowsAsync<ObjectDisposedException>(async () => await compressor.DisposeAsync());
        }
        else
        {
            await compressor.DisposeAsync();
            Assert.Equal(!leaveOpen, !stream.CanRead);
            if (leaveOpen)
            {
                stream.Position = 0;
                await using var decompressor = kind switch
                {
                    "gzip" => (Stream)new GZipStream(stream, CompressionMode.Decompress, leaveOpen: false),
                    "brotli" => new BrotliStream(stream, CompressionMode.Decompress, leaveOpen: false),
                    _ => new DeflateStream(stream, CompressionMode.Decompress, leaveOpen: false),
                };
                using var back = new MemoryStream();
                await decompressor.CopyToAsync(back, TestContext.Current.CancellationToken);
                Assert.Equal(payload, back.ToArray());
            }
            else
            {
                Assert.Throws<ObjectDisposedException>(stream.ToArray);
            }
        }

        await stream.DisposeAsync();
        AssertBalanced(pool);
    }

    [Fact]
    public async Task SerializeAsyncCancelledMidwayLeavesAUsableStreamAndReturnsEveryBlock()
    {
        using var pool = new TieredMemoryPool();
        var stream = new SegmentedMemoryStream(new SegmentedBufferOptions { Pool = pool, InitialSegmentSize = 4096, MaxSegmentSize = 4096 });
        using var cancellation = new CancellationTokenSource();

        await Assert.ThrowsAnyAsync<OperationCanceledException>(() => JsonSerializer.SerializeAsync(stream, Items(cancellation, 200_000, 100_000), cancellationToken: cancellation.Token));

        // What went out before the cancel is a prefix of the document, and the stream takes the next one whole.
        long prefix = stream.Length;
        Assert.True(prefix > 0, "the serializer wrote nothing before the cancel");
        Assert.StartsWith("[\"item 0\",", Encoding.UTF8.GetString(stream.ToArray()), StringComparison.Ordinal);
        stream.SetLength(0);
        await JsonSerializer.SerializeAsync(stream, Items(null, 3, 0), cancellationToken: TestContext.Current.CancellationToken);
        Assert.Equal("[\"item 0\",\"item 1\",\"item 2\"]", Encoding.UTF8.GetString(stream.ToArray()));
        await stream.DisposeAsync();
        AssertBalanced(pool);
    }

    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public async Task PipesOverTheStreamCompletedInEitherOrderFailAsOverAMemoryStreamAndReturnEveryBlock(bool streamFirst)
    {
        using var pool = new TieredMemoryPool();
        var options = new SegmentedBufferOptions { Pool = pool, InitialSegmentSize = 4096, MaxSegmentSize = 4096 };

        // The pipes' own buffers from a pool of their own: a pipe whose completion threw may keep its buffers (the
        // pipe's business); the stream's pool must balance whatever the pipes did.
        using var pipePool = new TieredMemoryPool();
        string[] expected = await PipeSteps(new MemoryStream(), pipePool, streamFirst);
        string[] actual = await PipeSteps(new SegmentedMemoryStream(options), pipePool, streamFirst);
        Assert.Equal(expected, actual);
        AssertBalanced(pool);
    }

    [Fact]
    public async Task AStreamWriterAndReaderOverAStreamClosedUnderThemFailAsOverAMemoryStreamAndReturnEveryBlock()
    {
        using var pool = new TieredMemoryPool();
        string[] expected = await TextSteps(new MemoryStream());
        string[] actual = await TextSteps(new SegmentedMemoryStream(new SegmentedBufferOptions { Pool = pool }));
        Assert.Equal(expected, actual);
        AssertBalanced(pool);
    }

    /// <summary>
    /// A pipe writer and a pipe reader over <paramref name="stream"/> (the writer leaving it open, the reader closing it),
    /// bytes unflushed in the writer and unread in the reader, then the stream and the pipes closed in an order; the
    /// outcome of each step.
    /// </summary>
    private static async Task<string[]> PipeSteps(Stream stream, TieredMemoryPool pool, bool streamFirst)
    {
        var outcomes = new List<string>();
        PipeWriter writer = PipeWriter.Create(stream, new StreamPipeWriterOptions(pool: pool, leaveOpen: true));
        await writer.WriteAsync(Filled(100_000, 0x5A), TestContext.Current.CancellationToken);
        stream.Position = 0;
        PipeReader reader = PipeReader.Create(stream, new StreamPipeReaderOptions(pool: pool, bufferSize: 4096, leaveOpen: false));
        ReadResult first = await reader.ReadAsync(TestContext.Current.CancellationToken);
        reader.AdvanceTo(first.Buffer.GetPosition(100));
        writer.GetSpan(10).Fill(1);
        writer.Advance(10);
        if (streamFirst)
        {
            await stream.DisposeAsync();
        }
        else
        {
            outcomes.Add(await Outcome(async () => await reader.CompleteAsync()));
            outcomes.Add(stream.CanRead.ToString());
        }

        outcomes.Add(await Outcome(async () =>
        {
            ReadResult again = await reader.ReadAsync(TestContext.Current.CancellationToken);
            reader.AdvanceTo(again.Buffer.End);
            again = await reader.ReadAsync(TestContext.Current.CancellationToken);
            reader.AdvanceTo(again.Buffer.End);
        }));
        outcomes.Add(await Outcome(async () => await writer.FlushAsync(TestContext.Current.CancellationToken)));
        outcomes.Add(await Outcome(async () => await writer.CompleteAsync()));
        outcomes.Add(await Outcome(async () => await reader.CompleteAsync()));
        await stream.DisposeAsync();
        return [.. outcomes];
    }

    /// <summary>A StreamWriter with text pending when <paramref name="stream"/> is closed under it, then a StreamReader made over the closed stream; the outcome of each step.</summary>
    private static async Task<string[]> TextSteps(Stream stream)
    {
        var text = new StreamWriter(stream, Encoding.UTF8, bufferSize: 256, leaveOpen: false);
        await text.WriteAsync(new string('x', 10_000).AsMemory(), TestContext.Current.CancellationToken);
        await text.WriteAsync("pending");
        await stream.DisposeAsync();
        return
        [
            await Outcome(async () => await text.FlushAsync(TestContext.Current.CancellationToken)),
            await Outcome(async () => await text.DisposeAsync()),
            await Outcome(async () =>
            {
                using var reader = new StreamReader(stream);
                _ = await reader.ReadToEndAsync(TestContext.Current.CancellationToken);
            }),
        ];
    }

    private static async Task<string> Outcome(Func<Task> step)
    {
        try
        {
            await step();
            return "completed";
        }
        catch (Exception exception) when (exception is ObjectDisposedException or ArgumentException or InvalidOperationException or OperationCanceledException)
        {
            return exception.GetType().Name;
        }
    }

    private static async IAsyncEnumerable<string> Items(CancellationTokenSource? cancellation, int count, int cancelAt, [EnumeratorCancellation] CancellationToken cancellationToken = default)
    {
        for (int i = 0; i < count; i++)
        {
            if (i == cancelAt && cancellation is not null)
            {
                await cancellation.CancelAsync();
            }

            cancellationToken.ThrowIfCancellationRequested();
            if (i % 1000 == 0)
            {
                await Task.Yield();
            }

            yield return $"item {i}";
        }
    }
}
