using System;
using System.Buffers;
using System.Threading;
using BenchmarkDotNet.Attributes;

namespace Zipora.Buffers.Benchmarks;

/// <summary>
/// The floor under <see cref="SegmentedBufferBenchmarks"/>: the same message written and read back in the same chunks,
/// but into memory that is already there, so only the unavoidable copies are left; then the copies plus the one object
/// a message costs, plain (as a segmented buffer is), or finalizable (as a segmented buffer over a
/// <see cref="TieredMemoryPool"/> was until its leak accounting moved to the pool's trackers: what that cost); then
/// the copies, the object and the guard a stream that refuses concurrent misuse and racing disposes cannot do without:
/// one compare-exchange per call that touches the memory (each chunk's write and each chunk's read) and one for the
/// dispose, each placed where the stream's own call makes it, after the copies before it, whose stores a locked
/// instruction waits for; and last those plus one pooled block rented and given back, as a one-segment message's is.
/// The buffer writers' case reads back through a <see cref="ReadOnlySequence{T}"/>, not a stream's reads: its floors
/// write into a native block and read it back so, bare and with a writer's least guards and pooled block.
/// </summary>
[MemoryDiagnoser]
public class SegmentedFloorBenchmarks
{
    // The default SegmentedBufferOptions.InitialSegmentSize: a message's first segment is at least this large.
    private const int FirstSegmentSize = 4096;

    private static int s_finalized;

    private byte[] _chunk = [];
    private byte[] _readBack = [];
    private byte[] _message = [];
    private TieredMemoryPool _pool = null!;
    private NativeSegment? _written;

    [Params(1024, 64 * 1024, 1024 * 1024, 64 * 1024 * 1024)]
    public int Size { get; set; }

    [Params(4096, 64 * 1024)]
    public int Chunk { get; set; }

    [GlobalSetup]
    public void Setup()
    {
        int chunk = Math.Min(Chunk, Size);
        _chunk = new byte[chunk];
        new Random(42).NextBytes(_chunk);
        _readBack = new byte[chunk];
        _message = new byte[Size];
        _pool = Peers.CreateTieredPoolReusingOwners();
    }

    [Benchmark(Baseline = true)]
    public long CopiesOnly() => RoundTrip(null);

    [Benchmark]
    public long CopiesAndAnObject()
    {
        GC.KeepAlive(new MessageObject());
        return RoundTrip(null);
    }

    [Benchmark]
    public long CopiesAndAFinalizableObject()
    {
        var message = new FinalizableMessageObject();
        GC.SuppressFinalize(message);
        return RoundTrip(null);
    }

    /// <summary>The copies, the object, and a guard taken and given back around each call, as the stream's calls take it.</summary>
    [Benchmark]
    public long CopiesAnObjectAndAGuardPerCall()
    {
        var message = new MessageObject();
        long checksum = RoundTrip(message);
        Guard(message);
        return checksum;
    }

    /// <summary>
    /// The copies, the object, the guard per call, and one block of the first segment's size rented from a
    /// <see cref="TieredMemoryPool"/> and given back (its owner-reusing mode: no owner object per rent): the least a
    /// one-segment message over pooled native memory does while it refuses misuse.
    /// </summary>
    [Benchmark]
    public long CopiesAnObjectAGuardPerCallAndAPooledBlock()
    {
        using IMemoryOwner<byte> block = _pool.Rent(FirstSegmentSize);
        return CopiesAnObjectAndAGuardPerCall();
    }

    /// <summary>
    /// A buffer writer's message at its least: the chunks copied into a block of native memory that is already there,
    /// then read back through a one-segment <see cref="ReadOnlySequence{T}"/> over it, as the writers' case reads
    /// (<see cref="SegmentedBufferBenchmarks.ReadBack(ReadOnlySequence{byte}, byte[])"/>), and the one object.
    /// </summary>
    [Benchmark]
    public long CopiesAnObjectAndASequenceReadBack()
    {
        GC.KeepAlive(new MessageObject());
        return WriteAndReadBackThroughASequence();
    }

    /// <summary>
    /// As <see cref="CopiesAnObjectAndASequenceReadBack"/>, with what a writer that refuses misuse and racing disposes
    /// cannot do without even when its other calls read quietly: a guard for each chunk's <c>Advance</c> and one for
    /// the dispose, and a pooled block of the first segment's size rented and given back.
    /// </summary>
    [Benchmark]
    public long CopiesAnObjectTwoGuardsAPooledBlockAndASequenceReadBack()
    {
        using IMemoryOwner<byte> block = _pool.Rent(FirstSegmentSize);
        var message = new MessageObject();
        long checksum = WriteAndReadBackThroughASequence(message);
        Guard(message);
        return checksum;
    }

    [GlobalCleanup]
    public void Cleanup()
    {
        _written?.Dispose();
        _pool.Dispose();
    }

    /// <summary>The chunks copied into the native block; an advance guarded per chunk when <paramref name="guarded"/>; the block read back as a sequence.</summary>
    private long WriteAndReadBackThroughASequence(MessageObject? guarded = null)
    {
        _written ??= new NativeSegment(_pool.Rent(Size));
        Span<byte> block = _written.Block.Span;
        for (int written = 0; written < Size; written += _chunk.Length)
        {
            _chunk.CopyTo(block[written..]);
            if (guarded is not null)
            {
                Guard(guarded);
            }
        }

        return SegmentedBufferBenchmarks.ReadBack(new ReadOnlySequence<byte>(_written, 0, _written, Size), _readBack);
    }

    /// <summary>Taken and given back as the buffers' guard is: a compare-exchange, then a plain store.</summary>
    private static void Guard(MessageObject message)
    {
        if (Interlocked.CompareExchange(ref message.Guard, 1, 0) == 0)
        {
            Volatile.Write(ref message.Guard, 0);
        }
    }

    /// <summary>The message written and read back chunk by chunk; with <paramref name="guarded"/>, a guard around each chunk's copy.</summary>
    private long RoundTrip(MessageObject? guarded)
    {
        for (int written = 0; written < Size; written += _chunk.Length)
        {
            if (guarded is not null)
            {
                Guard(guarded);
            }

            _chunk.CopyTo(_message.AsSpan(written));
        }

        long checksum = 0;
        for (int read = 0; read < Size; read += _readBack.Length)
        {
            if (guarded is not null)
            {
                Guard(guarded);
            }

            _message.AsSpan(read, _readBack.Length).CopyTo(_readBack);
            checksum += _readBack[^1];
        }

        return checksum;
    }

    /// <summary>One segment over a pooled native block, kept for the benchmark's life, as a writer's one-segment message is.</summary>
    private sealed class NativeSegment : ReadOnlySequenceSegment<byte>, IDisposable
    {
        private readonly IMemoryOwner<byte> _owner;

        public NativeSegment(IMemoryOwner<byte> owner)
        {
            _owner = owner;
            Memory = owner.Memory;
        }

        /// <summary>The block, to write into (the segment's own memory is read-only).</summary>
        public Memory<byte> Block => _owner.Memory;

        public void Dispose() => _owner.Dispose();
    }

    /// <summary>As large as a <see cref="SegmentedMemoryStream"/> (136 bytes).</summary>
    private class MessageObject
    {
#pragma warning disable CS0169, IDE0051 // The fields only give the object its size.
        private readonly long _a, _b, _c, _d, _e, _f, _g, _h, _i, _j, _k, _l, _m, _n;
#pragma warning restore CS0169, IDE0051

        /// <summary>Where the interlocked instructions of one case land.</summary>
        public int Guard;
    }

    private sealed class FinalizableMessageObject : MessageObject
    {
        // Never runs (every one is suppressed); it makes the allocation a finalizable one, as the buffers' was.
        ~FinalizableMessageObject() => Interlocked.Increment(ref s_finalized);
    }
}
