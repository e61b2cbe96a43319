using System;
using System.Buffers;
using System.IO;
using System.IO.Pipelines;
using System.Linq;
using System.Text.Json;
using System.Threading.Tasks;
using BenchmarkDotNet.Attributes;
using BenchmarkDotNet.Configs;
using Microsoft.IO;
using Nerdbank.Streams;

namespace Zipora.Buffers.Benchmarks;

/// <summary>
/// Serializing a ~100 KB JSON document into each peer (streams through <see cref="JsonSerializer.SerializeAsync{TValue}(Stream, TValue, JsonSerializerOptions?, System.Threading.CancellationToken)"/>,
/// buffer writers through a <see cref="Utf8JsonWriter"/>), and copying a 1 MB message out to a stream.
/// </summary>
[MemoryDiagnoser]
[GroupBenchmarksBy(BenchmarkLogicalGroupRule.ByCategory)]
[CategoriesColumn]
public class SegmentedSerializationBenchmarks
{
    private const int CopySize = 1024 * 1024;

    private static readonly RecyclableMemoryStreamManager s_recyclable = new();

    private readonly Document _document = Document.Sample();
    private readonly MemoryStream _destination = new(CopySize);
    private readonly byte[] _chunk = new byte[4096];
    private TieredMemoryPool _pool = null!;
    private SegmentedBufferOptions _options = null!;

    [GlobalSetup]
    public void Setup()
    {
        _pool = Peers.CreateTieredPool();
        _options = new SegmentedBufferOptions { Pool = _pool };
        int length = JsonSerializer.SerializeToUtf8Bytes(_document).Length;
        if (length is < 90_000 or > 130_000)
        {
            throw new InvalidOperationException($"The document should be about 100 KB of JSON, not {length} bytes.");
        }
    }

    [GlobalCleanup]
    public void Cleanup() => _pool.Dispose();

    [Benchmark(Baseline = true)]
    [BenchmarkCategory("json")]
    public async Task<long> JsonMemoryStream()
    {
        using var stream = new MemoryStream();
        await JsonSerializer.SerializeAsync(stream, _document);
        return stream.Length;
    }

    [Benchmark]
    [BenchmarkCategory("json")]
    public async Task<long> JsonRecyclableMemoryStream()
    {
        using RecyclableMemoryStream stream = s_recyclable.GetStream();
        await JsonSerializer.SerializeAsync(stream, _document);
        return stream.Length;
    }

    [Benchmark]
    [BenchmarkCategory("json")]
    public async Task<long> JsonSegmentedMemoryStream()
    {
        using var stream = new SegmentedMemoryStream(_options);
        await JsonSerializer.SerializeAsync(stream, _document);
        return stream.Length;
    }

    [Benchmark]
    [BenchmarkCategory("json")]
    public long JsonSegmentedBufferWriter()
    {
        using var writer = new SegmentedBufferWriter(_options);
        Serialize(writer);
        return writer.Length;
    }

    [Benchmark]
    [BenchmarkCategory("json")]
    public long JsonArrayBufferWriter()
    {
        var writer = new ArrayBufferWriter<byte>();
        Serialize(writer);
        return writer.WrittenCount;
    }

    [Benchmark]
    [BenchmarkCategory("json")]
    public long JsonNerdbankSequence()
    {
        using var sequence = new Sequence<byte>(ArrayPool<byte>.Shared);
        Serialize(sequence);
        return sequence.Length;
    }

    [Benchmark]
    [BenchmarkCategory("json")]
    public long JsonPipe()
    {
        var pipe = new Pipe(new PipeOptions(pauseWriterThreshold: 0, useSynchronizationContext: false));
        Serialize(pipe.Writer);
        // Completing the writer commits what it wrote, as a flush would, without an awaitable to wait on.
        pipe.Writer.Complete();
        pipe.Reader.TryRead(out ReadResult result);
        long length = result.Buffer.Length;
        pipe.Reader.AdvanceTo(result.Buffer.End);
        pipe.Reader.Complete();
        return length;
    }

    [Benchmark(Baseline = true)]
    [BenchmarkCategory("copy")]
    public long CopyMemoryStream()
    {
        using var stream = new MemoryStream();
        return FillAndCopy(stream);
    }

    [Benchmark]
    [BenchmarkCategory("copy")]
    public long CopyRecyclableMemoryStream()
    {
        using RecyclableMemoryStream stream = s_recyclable.GetStream();
        return FillAndCopy(stream);
    }

    [Benchmark]
    [BenchmarkCategory("copy")]
    public long CopySegmentedMemoryStream()
    {
        using var stream = new SegmentedMemoryStream(_options);
        return FillAndCopy(stream);
    }

    [Benchmark]
    [BenchmarkCategory("copy")]
    public long CopySegmentedBufferWriter()
    {
        using var writer = new SegmentedBufferWriter(_options);
        for (int written = 0; written < CopySize; written += _chunk.Length)
        {
            writer.Write(_chunk);
        }

        _destination.Position = 0;
        writer.CopyTo(_destination);
        return _destination.Position;
    }

    [Benchmark]
    [BenchmarkCategory("copy")]
    public long CopyNerdbankSequence()
    {
        using var sequence = new Sequence<byte>(ArrayPool<byte>.Shared);
        for (int written = 0; written < CopySize; written += _chunk.Length)
        {
            sequence.Write(_chunk);
        }

        _destination.Position = 0;
        foreach (ReadOnlyMemory<byte> memory in sequence.AsReadOnlySequence)
        {
            _destination.Write(memory.Span);
        }

        return _destination.Position;
    }

    private long FillAndCopy(Stream stream)
    {
        for (int written = 0; written < CopySize; written += _chunk.Length)
        {
            stream.Write(_chunk);
        }

        stream.Position = 0;
        _destination.Position = 0;
        stream.CopyTo(_destination);
        return _destination.Position;
    }

    private void Serialize(IBufferWriter<byte> writer)
    {
        using var json = new Utf8JsonWriter(writer);
        JsonSerializer.Serialize(json, _document);
    }

    /// <summary>A document of about 100 KB of JSON: numbers, strings and nested objects.</summary>
    public sealed class Document
    {
        public string Name { get; set; } = "";

        public Item[] Items { get; set; } = [];

        public static Document Sample() => new()
        {
            Name = "segmented",
            Items = [.. Enumerable.Range(0, 1350).Select(static i => new Item { Id = i, Label = $"item number {i}", Weight = i * 0.25, Tags = ["a", "bb", "ccc"] })],
        };
    }

    public sealed class Item
    {
        public int Id { get; set; }

        public string Label { get; set; } = "";

        public double Weight { get; set; }

        public string[] Tags { get; set; } = [];
    }
}
