using System;
using System.Buffers;
using System.IO;
using System.IO.Pipelines;
using BenchmarkDotNet.Attributes;
using Microsoft.IO;
using Nerdbank.Streams;

namespace Zipora.Buffers.Benchmarks;

/// <summary>
/// One message: a fresh buffer (or stream) written with <see cref="Size"/> bytes in chunks of <see cref="Chunk"/>, then
/// read back whole into a chunk-sized buffer, then let go of. Every peer writes and reads the same bytes the same way
/// (a stream with Write and Read, a buffer writer with GetSpan/Advance and its sequence or span); a pooled peer is
/// disposed or returned as its users do.
/// </summary>
[MemoryDiagnoser]
public class SegmentedBufferBenchmarks
{
    private static readonly RecyclableMemoryStreamManager s_recyclable = new();

    private byte[] _chunk = [];
    private byte[] _readBack = [];
    private TieredMemoryPool _pool = null!;
    private SegmentedBufferOptions _options = null!;

    [Params(1024, 64 * 1024, 1024 * 1024, 64 * 1024 * 1024)]
    public int Size { get; set; }

    [Params(4096, 64 * 1024)]
    public int Chunk { get; set; }

    private int ChunkLength => Math.Min(Chunk, Size);

    [GlobalSetup]
    public void Setup()
    {
        _chunk = new byte[ChunkLength];
        new Random(42).NextBytes(_chunk);
        _readBack = new byte[ChunkLength];
        _pool = Peers.CreateTieredPool();
        _options = new SegmentedBufferOptions { Pool = _pool };
    }

    [GlobalCleanup]
    public void Cleanup() => _pool.Dispose();

    [Benchmark(Baseline = true)]
    public long MemoryStream()
    {
        using var stream = new MemoryStream();
        return RoundTrip(stream);
    }

    [Benchmark]
    public long RecyclableMemoryStream()
    {
        using RecyclableMemoryStream stream = s_recyclable.GetStream();
        return RoundTrip(stream);
    }

    [Benchmark]
    public long SegmentedMemoryStream()
    {
        using var stream = new SegmentedMemoryStream(_options);
        return RoundTrip(stream);
    }

    [Benchmark]
    public long SegmentedBufferWriter()
    {
        using var writer = new SegmentedBufferWriter(_options);
        Fill(writer);
        return ReadBack(writer.GetReadOnlySequence());
    }

    [Benchmark]
    public long ArrayBufferWriter()
    {
        var writer = new ArrayBufferWriter<byte>();
        Fill(writer);
        return ReadBack(new ReadOnlySequence<byte>(writer.WrittenMemory));
    }

    [Benchmark]
    public long NerdbankSequence()
    {
        using var sequence = new Sequence<byte>(ArrayPool<byte>.Shared);
        Fill(sequence);
        return ReadBack(sequence.AsReadOnlySequence);
    }

    /// <summary>A Pipe with its default pool and no back-pressure, so one thread can write the whole message before reading it.</summary>
    [Benchmark]
    public long Pipe()
    {
        var pipe = new Pipe(new PipeOptions(pauseWriterThreshold: 0, useSynchronizationContext: false));
        Fill(pipe.Writer);
        // Completing the writer commits what it wrote, as a flush would, without an awaitable to wait on.
        pipe.Writer.Complete();
        if (!pipe.Reader.TryRead(out ReadResult result))
        {
            throw new InvalidOperationException("The pipe holds the whole message after the flush.");
        }

        long checksum = ReadBack(result.Buffer);
        pipe.Reader.AdvanceTo(result.Buffer.End);
        pipe.Reader.Complete();
        return checksum;
    }

    private long RoundTrip(Stream stream) => RoundTrip(stream, _chunk, _readBack, Size);

    private void Fill(IBufferWriter<byte> writer) => Fill(writer, _chunk, Size);

    /// <summary>Writes <paramref name="size"/> bytes into <paramref name="stream"/> in chunks, then reads them back from its start; a checksum of what was read.</summary>
    internal static long RoundTrip(Stream stream, byte[] chunk, byte[] readBack, int size)
    {
        for (int written = 0; written < size; written += chunk.Length)
        {
            stream.Write(chunk);
        }

        stream.Position = 0;
        long checksum = 0;
        int read;
        while ((read = stream.Read(readBack)) > 0)
        {
            checksum += readBack[read - 1];
        }

        return checksum;
    }

    /// <summary>Writes <paramref name="size"/> bytes into <paramref name="writer"/> in chunks, through GetSpan and Advance.</summary>
    internal static void Fill(IBufferWriter<byte> writer, byte[] chunk, int size)
    {
        for (int written = 0; written < size; written += chunk.Length)
        {
            chunk.CopyTo(writer.GetSpan(chunk.Length));
            writer.Advance(chunk.Length);
        }
    }

    /// <summary>Copies the message out chunk by chunk, as the streams' reads do.</summary>
    private long ReadBack(ReadOnlySequence<byte> message) => ReadBack(message, _readBack);

    /// <summary>Copies <paramref name="message"/> out into <paramref name="readBack"/>, one chunk at a time; a checksum of what was read.</summary>
    internal static long ReadBack(ReadOnlySequence<byte> message, byte[] readBack)
    {
        long checksum = 0;
        while (!message.IsEmpty)
        {
            int length = (int)Math.Min(readBack.Length, message.Length);
            message.Slice(0, length).CopyTo(readBack);
            checksum += readBack[length - 1];
            message = message.Slice(length);
        }

        return checksum;
    }
}
