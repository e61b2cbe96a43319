using System;
using System.Buffers;
using System.IO;
using BenchmarkDotNet.Attributes;
using Microsoft.IO;
using Nerdbank.Streams;

namespace Zipora.Buffers.Benchmarks;

/// <summary>
/// <see cref="SegmentedBufferBenchmarks"/>' message with every buffer kept across messages, as a connection's or a
/// serializer's own buffer is: emptied (each type's own way: <c>SetLength(0)</c>, <c>ResetWrittenCount</c>,
/// <c>Reset</c>), written with <see cref="Size"/> bytes in chunks of up to 4 KB, and read back the same way. No object
/// per message for anyone: what is left is each buffer's own work.
/// </summary>
[MemoryDiagnoser]
public class SegmentedReuseBenchmarks
{
    private const int Chunk = 4096;

    private readonly RecyclableMemoryStreamManager _manager = new();
    private byte[] _chunk = [];
    private byte[] _readBack = [];
    private TieredMemoryPool _pool = null!;
    private MemoryStream _memoryStream = null!;
    private RecyclableMemoryStream _recyclable = null!;
    private ArrayBufferWriter<byte> _arrayWriter = null!;
    private Sequence<byte> _sequence = null!;
    private SegmentedMemoryStream _stream = null!;
    private SegmentedBufferWriter _writer = null!;

    [Params(1024, 64 * 1024)]
    public int Size { get; set; }

    [GlobalSetup]
    public void Setup()
    {
        _chunk = new byte[Math.Min(Chunk, Size)];
        new Random(42).NextBytes(_chunk);
        _readBack = new byte[_chunk.Length];
        _pool = Peers.CreateTieredPool();
        var options = new SegmentedBufferOptions { Pool = _pool };
        _memoryStream = new MemoryStream();
        _recyclable = _manager.GetStream();
        _arrayWriter = new ArrayBufferWriter<byte>();
        _sequence = new Sequence<byte>(ArrayPool<byte>.Shared);
        _stream = new SegmentedMemoryStream(options);
        _writer = new SegmentedBufferWriter(options);
    }

    [GlobalCleanup]
    public void Cleanup()
    {
        _recyclable.Dispose();
        _sequence.Dispose();
        _stream.Dispose();
        _writer.Dispose();
        _pool.Dispose();
    }

    [Benchmark(Baseline = true)]
    public long MemoryStream()
    {
        _memoryStream.SetLength(0);
        return SegmentedBufferBenchmarks.RoundTrip(_memoryStream, _chunk, _readBack, Size);
    }

    [Benchmark]
    public long RecyclableMemoryStream()
    {
        _recyclable.SetLength(0);
        return SegmentedBufferBenchmarks.RoundTrip(_recyclable, _chunk, _readBack, Size);
    }

    [Benchmark]
    public long ArrayBufferWriter()
    {
        _arrayWriter.ResetWrittenCount();
        SegmentedBufferBenchmarks.Fill(_arrayWriter, _chunk, Size);
        return SegmentedBufferBenchmarks.ReadBack(new ReadOnlySequence<byte>(_arrayWriter.WrittenMemory), _readBack);
    }

    [Benchmark]
    public long NerdbankSequence()
    {
        _sequence.Reset();
        SegmentedBufferBenchmarks.Fill(_sequence, _chunk, Size);
        return SegmentedBufferBenchmarks.ReadBack(_sequence.AsReadOnlySequence, _readBack);
    }

    [Benchmark]
    public long SegmentedMemoryStream()
    {
        _stream.SetLength(0);
        return SegmentedBufferBenchmarks.RoundTrip(_stream, _chunk, _readBack, Size);
    }

    [Benchmark]
    public long SegmentedBufferWriter()
    {
        _writer.Reset();
        SegmentedBufferBenchmarks.Fill(_writer, _chunk, Size);
        return SegmentedBufferBenchmarks.ReadBack(_writer.GetReadOnlySequence(), _readBack);
    }
}
