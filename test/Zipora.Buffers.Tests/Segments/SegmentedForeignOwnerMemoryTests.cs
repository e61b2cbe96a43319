using System;
using System.Buffers;
using System.Threading;

namespace Zipora.Buffers.Tests;

/// <summary>
/// Another pool's owner is read for its memory once, when it is rented: its length is checked against what was asked
/// and that very memory becomes the segment's. An owner whose <see cref="IMemoryOwner{T}.Memory"/> answers differently
/// at a second read (a pool's bug, or a lazily made owner) once passed the check with one and gave the segment the
/// other, so <c>GetSpan(100)</c> gave one byte; one whose <c>Memory</c> throws (an owner the pool had disposed already)
/// was never given back.
/// </summary>
public sealed class SegmentedForeignOwnerMemoryTests
{
    [Fact]
    public void AForeignOwnerWhoseMemoryShrinksAfterItsFirstReadStillGivesTheWriterAtLeastTheHint()
    {
        var pool = new FickleOwnerPool { Shrinks = true };
        using (var writer = new SegmentedBufferWriter(new SegmentedBufferOptions { Pool = pool, InitialSegmentSize = 1024, MaxSegmentSize = 1024 }))
        {
            Span<byte> span = writer.GetSpan(100);
            Assert.True(span.Length >= 100, $"GetSpan(100) gave {span.Length} bytes");
            span[..100].Fill(7);
            writer.Advance(100);
            Assert.Equal(100, writer.ToArray().Length);
            Assert.All(writer.ToArray(), static b => Assert.Equal(7, b));
        }

        Assert.Equal(0, pool.Outstanding);
    }

    [Fact]
    public void AForeignOwnerWhoseMemoryShrinksAfterItsFirstReadStillTakesAStreamsWrite()
    {
        var pool = new FickleOwnerPool { Shrinks = true };
        byte[] data = new byte[5000];
        new Random(3).NextBytes(data);
        using (var stream = new SegmentedMemoryStream(new SegmentedBufferOptions { Pool = pool, InitialSegmentSize = 1024, MaxSegmentSize = 1024 }))
        {
            stream.Write(data);
            Assert.Equal(data, stream.ToArray());

            // Five segments of a whole kilobyte each, not a segment per byte past the first.
            Assert.Equal(5, pool.Rents);
        }

        Assert.Equal(0, pool.Outstanding);
    }

    [Fact]
    public void AForeignOwnerWhoseMemoryThrowsIsGivenBackAndItsErrorPassedOn()
    {
        var pool = new FickleOwnerPool { ThrowsFor = static rent => rent == 0 };
        using (var writer = new SegmentedBufferWriter(new SegmentedBufferOptions { Pool = pool, InitialSegmentSize = 1024, MaxSegmentSize = 1024 }))
        {
            InvalidOperationException error = Assert.Throws<InvalidOperationException>(() => writer.GetSpan(100));
            Assert.Equal(FickleOwnerPool.Refusal, error.Message);
            Assert.Equal(0, pool.Outstanding);
            Assert.Equal(0, writer.Length);

            // The writer is as it was: the next owner serves it.
            writer.GetSpan(100)[0] = 1;
            writer.Advance(1);
            Assert.Equal(1, writer.Length);
        }

        Assert.Equal(0, pool.Outstanding);
    }

    [Fact]
    public void AForeignOwnerWhoseMemoryThrowsForAStreamsWriteIsGivenBackAndTheStreamKeepsItsData()
    {
        var pool = new FickleOwnerPool { ThrowsFor = static rent => rent == 1 };
        using (var stream = new SegmentedMemoryStream(new SegmentedBufferOptions { Pool = pool, InitialSegmentSize = 1024, MaxSegmentSize = 1024 }))
        {
            stream.Write(new byte[1000]);
            _ = Assert.Throws<InvalidOperationException>(() => stream.Write(new byte[2000]));
            Assert.Equal(1, pool.Outstanding);
            Assert.Equal(1000, stream.Length);
            stream.Write(new byte[2000]);
            Assert.Equal(3000, stream.Length);
        }

        Assert.Equal(0, pool.Outstanding);
    }

    /// <summary>
    /// Plain arrays, each owner counted out and back in. With <see cref="Shrinks"/>, an owner's memory is its whole
    /// array at the first read and one byte at every later one; the owners <see cref="ThrowsFor"/> picks (by rent
    /// index) throw from <c>Memory</c>, as an owner already disposed does.
    /// </summary>
    private sealed class FickleOwnerPool : MemoryPool<byte>
    {
        public const string Refusal = "The owner was disposed already.";

        private int _outstanding;

        public bool Shrinks { get; init; }

        public Func<int, bool> ThrowsFor { get; init; } = static _ => false;

        public int Rents { get; private set; }

        public int Outstanding => Volatile.Read(ref _outstanding);

        public override int MaxBufferSize => 1 << 20;

        public override IMemoryOwner<byte> Rent(int minBufferSize = -1)
        {
            Interlocked.Increment(ref _outstanding);
            return new Owner(this, new byte[Math.Max(minBufferSize, 1)], ThrowsFor(Rents++));
        }

        protected override void Dispose(bool disposing)
        {
        }

        private sealed class Owner(FickleOwnerPool pool, byte[] array, bool throws) : IMemoryOwner<byte>
        {
            private int _reads;
            private int _disposed;

            public Memory<byte> Memory => throws
                ? throw new InvalidOperationException(Refusal)
                : _reads++ == 0 || !pool.Shrinks ? array : array.AsMemory(0, 1);

            public void Dispose()
            {
                if (Interlocked.Exchange(ref _disposed, 1) == 0)
                {
                    Interlocked.Decrement(ref pool._outstanding);
                }
            }
        }
    }
}
