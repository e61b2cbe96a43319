using System;
using System.Buffers;
using System.Collections.Generic;
using System.IO;
using System.Linq;
using System.Runtime.CompilerServices;
using System.Threading;
using System.Threading.Tasks;

namespace Zipora.Buffers.Tests;

/// <summary>
/// The registry of what live writers hold, and the other helpers: revived writers with a spare, a foreign pool, a
/// destination that completes later.
/// </summary>
public sealed partial class SegmentedBufferIsolationSafetyTests
{
    private void HoldAFreshWriterAcross(Barrier both, SegmentedBufferOptions options, byte id)
    {
        using var writer = new SegmentedBufferWriter(options);
        writer.Write(Filled(id, 100));
        Register(writer, id);
        Assert.True(both.SignalAndWait(TimeSpan.FromSeconds(5)), "the other thread's fresh writer never came");
        AssertHoldsOnly(writer, id);
        Assert.True(both.SignalAndWait(TimeSpan.FromSeconds(5)), "the other thread's fresh writer failed");
        Unregister(writer, id);
    }

    [MethodImpl(MethodImplOptions.NoInlining)]
    private static SegmentedBufferWriter CollectARevivedWriterWithASpare(TieredMemoryPool pool, SegmentedBufferOptions options)
    {
        var revived = new StrongBox<SegmentedBufferWriter?>();
        DropARevivedWriterWithASpare(options, revived);
        GC.Collect();
        GC.WaitForPendingFinalizers();

        // The sweep finds the writer collected and retires its tracker, spare segment and all.
        _ = pool.GetStatistics();
        return revived.Value!;
    }

    [MethodImpl(MethodImplOptions.NoInlining)]
    private static void DropARevivedWriterWithASpare(SegmentedBufferOptions options, StrongBox<SegmentedBufferWriter?> revived)
    {
        var writer = new SegmentedBufferWriter(options);
        writer.Write(Filled(9, 150));
        writer.Consume(100);
        _ = new Reviver(writer, revived);
    }

    private static byte[] Filled(byte id, int length)
    {
        byte[] bytes = new byte[length];
        Array.Fill(bytes, id);
        return bytes;
    }

    private static void AssertHoldsOnly(SegmentedBufferWriter writer, byte id)
    {
        foreach (ReadOnlyMemory<byte> segment in writer.GetReadOnlySequence())
        {
            int other = segment.Span.IndexOfAnyExcept(id);
            Assert.True(other < 0, $"writer {id} holds a byte {(other < 0 ? 0 : segment.Span[other])} of another writer");
        }
    }

    private static List<BufferSegment> SegmentsOf(SegmentedBufferWriter writer)
    {
        var segments = new List<BufferSegment>();
        ReadOnlySequence<byte> sequence = writer.GetReadOnlySequence();
        for (var segment = sequence.Start.GetObject() as BufferSegment; segment is not null; segment = segment.NextSegment)
        {
            segments.Add(segment);
        }

        return segments;
    }

    /// <summary>Claims the writer's segments and blocks for <paramref name="id"/>: each must be free or already this writer's.</summary>
    private void Register(SegmentedBufferWriter writer, byte id)
    {
        // Segments the writer let go of since are no longer its: released first, so a reuse by this writer is no clash.
        foreach (KeyValuePair<BufferSegment, byte> entry in _segments.Where(entry => entry.Value == id).ToList())
        {
            _ = _segments.TryRemove(entry);
        }

        foreach (KeyValuePair<nint, byte> entry in _blocks.Where(entry => entry.Value == id).ToList())
        {
            _ = _blocks.TryRemove(entry);
        }

        foreach (BufferSegment segment in SegmentsOf(writer))
        {
            byte holder = _segments.GetOrAdd(segment, id);
            Assert.True(holder == id, $"a segment object of writer {holder} is also in writer {id}");
            if (segment.BlockAddress != 0)
            {
                byte blockHolder = _blocks.GetOrAdd(segment.BlockAddress, id);
                Assert.True(blockHolder == id, $"a block of writer {blockHolder} is also in writer {id}");
            }
        }
    }

    private void Unregister(SegmentedBufferWriter writer, byte id)
    {
        foreach (BufferSegment segment in SegmentsOf(writer))
        {
            _ = _segments.TryRemove(new KeyValuePair<BufferSegment, byte>(segment, id));
            _ = _blocks.TryRemove(new KeyValuePair<nint, byte>(segment.BlockAddress, id));
        }
    }

    /// <summary>Puts the writer it held where the test finds it again, once the collection that found both unreachable is over.</summary>
    private sealed class Reviver(SegmentedBufferWriter writer, StrongBox<SegmentedBufferWriter?> revived)
    {
        ~Reviver() => revived.Value = writer;
    }

    /// <summary>A foreign pool whose owners' memory starts 7 bytes into an array filled with stale bytes (BlockAddress 0).</summary>
    private sealed class OffsetPool : MemoryPool<byte>
    {
        private long _rents;
        private long _returns;

        public long Rents => Volatile.Read(ref _rents);

        public long Returns => Volatile.Read(ref _returns);

        public override int MaxBufferSize => 1 << 20;

        public override IMemoryOwner<byte> Rent(int minBufferSize = -1)
        {
            Interlocked.Increment(ref _rents);
            byte[] array = new byte[Math.Max(minBufferSize, 16) + 20];
            Array.Fill(array, (byte)0xCC);
            return new Owner(this, array.AsMemory(7, array.Length - 13));
        }

        protected override void Dispose(bool disposing)
        {
        }

        private sealed class Owner(OffsetPool pool, Memory<byte> memory) : IMemoryOwner<byte>
        {
            private int _disposed;

            public Memory<byte> Memory => memory;

            public void Dispose()
            {
                if (Interlocked.Exchange(ref _disposed, 1) == 0)
                {
                    Interlocked.Increment(ref pool._returns);
                }
            }
        }
    }

    [MethodImpl(MethodImplOptions.NoInlining)]
    private static void LeakAStreamAndParkAWriter(SegmentedBufferOptions options, byte id)
    {
        var leaked = new SegmentedMemoryStream(options);
        leaked.Write(Filled(id, 150));
        leaked.SetLength(50);
        using var parked = new SegmentedBufferWriter(options);
        parked.Write(Filled(id, 150));
        parked.Consume(100);
    }

    /// <summary>A destination whose every write completes later, on another thread.</summary>
    private sealed class YieldingStream : Stream
    {
        public override bool CanRead => false;

        public override bool CanSeek => false;

        public override bool CanWrite => true;

        public override long Length => throw new NotSupportedException();

        public override long Position
        {
            get => throw new NotSupportedException();
            set => throw new NotSupportedException();
        }

        public override async ValueTask WriteAsync(ReadOnlyMemory<byte> buffer, CancellationToken cancellationToken = default)
        {
            await Task.Yield();
            Assert.True(buffer.Span.IndexOfAnyExcept((byte)0, (byte)1) < 0, "the copy read a byte that is not the stream's");
        }

        public override void Write(byte[] buffer, int offset, int count) => throw new NotSupportedException();

        public override void Flush()
        {
        }

        public override int Read(byte[] buffer, int offset, int count) => throw new NotSupportedException();

        public override long Seek(long offset, SeekOrigin origin) => throw new NotSupportedException();

        public override void SetLength(long value) => throw new NotSupportedException();
    }
}
