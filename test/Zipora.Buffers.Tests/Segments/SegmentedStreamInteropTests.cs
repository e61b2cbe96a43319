using System;
using System.Buffers;
using System.IO;
using System.IO.Compression;
using System.IO.Pipelines;
using System.Linq;
using System.Net.Http;
using System.Security.Cryptography;
using System.Text.Json;
using System.Threading.Tasks;

namespace Zipora.Buffers.Tests;

/// <summary>The segmented stream and writer wherever a <see cref="MemoryStream"/> or an <see cref="IBufferWriter{T}"/> is used.</summary>
public sealed class SegmentedStreamInteropTests : IDisposable
{
    private readonly TieredMemoryPool _pool = new();

    public void Dispose() => _pool.Dispose();

    private SegmentedMemoryStream NewStream() => new(new SegmentedBufferOptions { Pool = _pool, InitialSegmentSize = 1024, MaxSegmentSize = 16 * 1024 });

    private static Document SampleDocument() => new()
    {
        Name = "segments",
        Values = [.. Enumerable.Range(0, 5000).Select(static i => i * 31)],
        Notes = [.. Enumerable.Range(0, 500).Select(static i => $"note {i}: {new string('x', i % 40)}")],
    };

    [Fact]
    public async Task JsonSerializerSerializesIntoItAndDeserializesFromIt()
    {
        Document document = SampleDocument();
        await using SegmentedMemoryStream stream = NewStream();
        await JsonSerializer.SerializeAsync(stream, document, cancellationToken: TestContext.Current.CancellationToken);
        Assert.False(stream.TryGetSingleSegment(out _));
        Assert.Equal(JsonSerializer.SerializeToUtf8Bytes(document), stream.ToArray());

        stream.Position = 0;
        Document? read = await JsonSerializer.DeserializeAsync<Document>(stream, cancellationToken: TestContext.Current.CancellationToken);
        Assert.Equal(document.Values, read!.Values);
        Assert.Equal(document.Notes, read.Notes);
    }

    [Fact]
    public void Utf8JsonWriterWritesIntoTheWriterAndIntoTheStream()
    {
        using var writer = new SegmentedBufferWriter(new SegmentedBufferOptions { Pool = _pool, InitialSegmentSize = 256, MaxSegmentSize = 4096 });
        using (var json = new Utf8JsonWriter(writer))
        {
            JsonSerializer.Serialize(json, SampleDocument());
        }

        byte[] expected = JsonSerializer.SerializeToUtf8Bytes(SampleDocument());
        Assert.Equal(expected, writer.ToArray());
        var reader = new Utf8JsonReader(writer.GetReadOnlySequence());
        Assert.Equal(SampleDocument().Values, JsonSerializer.Deserialize<Document>(ref reader)!.Values);

        using SegmentedMemoryStream stream = NewStream();
        using (var json = new Utf8JsonWriter(stream))
        {
            JsonSerializer.Serialize(json, SampleDocument());
        }

        Assert.Equal(expected, stream.ToArray());
    }

    [Fact]
    public async Task StreamContentSendsItsBytes()
    {
        byte[] payload = RandomNumberGenerator.GetBytes(100_000);
        SegmentedMemoryStream stream = NewStream();
        stream.Write(payload);
        stream.Position = 0;
        using var content = new StreamContent(stream);
        Assert.Equal(payload, await content.ReadAsByteArrayAsync(TestContext.Current.CancellationToken));

        // The content disposes the stream with itself.
        content.Dispose();
        Assert.False(stream.CanRead);
    }

    [Fact]
    public void GZipCompressesIntoItAndDecompressesFromIt()
    {
        byte[] payload = [.. Enumerable.Range(0, 200_000).Select(static i => (byte)(i % 251 % 17))];
        using SegmentedMemoryStream compressed = NewStream();
        using (var gzip = new GZipStream(compressed, CompressionLevel.Fastest, leaveOpen: true))
        {
            gzip.Write(payload);
        }

        compressed.Position = 0;
        using SegmentedMemoryStream decompressed = NewStream();
        using (var gunzip = new GZipStream(compressed, CompressionMode.Decompress, leaveOpen: true))
        {
            gunzip.CopyTo(decompressed);
        }

        Assert.Equal(payload, decompressed.ToArray());
    }

    [Fact]
    public async Task APipeReaderReadsItAndAPipeWriterWritesIt()
    {
        byte[] payload = RandomNumberGenerator.GetBytes(70_000);
        await using SegmentedMemoryStream target = NewStream();
        PipeWriter pipeWriter = PipeWriter.Create(target, new StreamPipeWriterOptions(pool: _pool, leaveOpen: true));
        await pipeWriter.WriteAsync(payload, TestContext.Current.CancellationToken);
        await pipeWriter.CompleteAsync();
        Assert.Equal(payload, target.ToArray());

        target.Position = 0;
        PipeReader pipeReader = PipeReader.Create(target, new StreamPipeReaderOptions(pool: _pool, leaveOpen: true));
        using var received = new MemoryStream();
        while (true)
        {
            ReadResult result = await pipeReader.ReadAsync(TestContext.Current.CancellationToken);
            foreach (ReadOnlyMemory<byte> memory in result.Buffer)
            {
                received.Write(memory.Span);
            }

            pipeReader.AdvanceTo(result.Buffer.End);
            if (result.IsCompleted)
            {
                break;
            }
        }

        await pipeReader.CompleteAsync();
        Assert.Equal(payload, received.ToArray());
    }

    [Fact]
    public void ABinaryWriterAndReaderRoundTrip()
    {
        using SegmentedMemoryStream stream = NewStream();
        using (var writer = new BinaryWriter(stream, System.Text.Encoding.UTF8, leaveOpen: true))
        {
            for (int i = 0; i < 1000; i++)
            {
                writer.Write(i);
                writer.Write($"item {i}");
            }
        }

        stream.Seek(0, SeekOrigin.Begin);
        using var reader = new BinaryReader(stream, System.Text.Encoding.UTF8, leaveOpen: true);
        for (int i = 0; i < 1000; i++)
        {
            Assert.Equal(i, reader.ReadInt32());
            Assert.Equal($"item {i}", reader.ReadString());
        }
    }

    public sealed class Document
    {
        public string Name { get; set; } = "";

        public int[] Values { get; set; } = [];

        public string[] Notes { get; set; } = [];
    }
}
