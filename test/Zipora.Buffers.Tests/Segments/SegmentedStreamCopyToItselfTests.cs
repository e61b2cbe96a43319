using System;
using System.Buffers;
using System.IO;
using System.Linq;
using System.Runtime.InteropServices;
using System.Threading.Tasks;

#pragma warning disable CA1835 // MemoryStream's array overloads are the model compared against.

namespace Zipora.Buffers.Tests;

/// <summary>
/// CopyTo, CopyToAsync and WriteTo with the stream itself as destination, and self-copies beyond
/// <see cref="SegmentedStreamSelfCopyTests"/>: a failed append to itself leaves the stream as it was (the first three
/// failed before the fix, from a review of it); the others widen the coverage of the random self-copy test (growing segment sizes, an ArrayPool-backed pool, positions past the end
/// with a gap, the asynchronous overloads, every CopyTo/CopyToAsync/WriteTo(itself) shape against MemoryStream, and
/// an overlapping write whose growth the pool refuses).
/// </summary>
public sealed class SegmentedStreamCopyToItselfTests : IDisposable
{
    private readonly TieredMemoryPool _pool = new();

    public void Dispose() => _pool.Dispose();

    private SegmentedMemoryStream NewStream(long maxLength = SegmentedBufferOptions.DefaultMaxLength) =>
        new(new SegmentedBufferOptions { Pool = _pool, InitialSegmentSize = 16, MaxSegmentSize = 16, MaxLength = maxLength });

    private static byte[] Counting(int length) => [.. Enumerable.Range(0, length).Select(static i => (byte)(i + 1))];

    /// <summary>
    /// CopyTo(itself) whose append would pass MaxLength throws IOException and leaves the stream as it was, its position
    /// included, as every failed write and a CopyTo whose destination throws do (before the fix the position had moved
    /// to the end; a non-expandable MemoryStream moves it too, but this stream's contract is that a failed write
    /// changes nothing).
    /// </summary>
    [Fact]
    public void CopyToItselfPastMaxLengthLeavesThePositionWhereItWas()
    {
        using SegmentedMemoryStream stream = NewStream(maxLength: 10);
        stream.Write(Counting(10));
        stream.Position = 3;

        Assert.Throws<IOException>(() => stream.CopyTo(stream));

        Assert.Equal(10, stream.Length);
        Assert.Equal(3, stream.Position);
    }

    /// <summary>As above, asynchronously: the task faults, and the position stays where it was.</summary>
    [Fact]
    public async Task CopyToAsyncItselfPastMaxLengthLeavesThePositionWhereItWas()
    {
        using SegmentedMemoryStream stream = NewStream(maxLength: 10);
        stream.Write(Counting(10));
        stream.Position = 3;

        await Assert.ThrowsAsync<IOException>(() => stream.CopyToAsync(stream));

        Assert.Equal(10, stream.Length);
        Assert.Equal(3, stream.Position);
    }

    /// <summary>
    /// WriteTo(itself) after dispose says the stream was disposed, not that ToArray (a call the caller never made) has
    /// nothing to copy.
    /// </summary>
    [Fact]
    public void WriteToItselfAfterDisposeDoesNotBlameToArray()
    {
        SegmentedMemoryStream stream = NewStream();
        stream.Write(Counting(20));
        stream.Dispose();

        ObjectDisposedException error = Assert.Throws<ObjectDisposedException>(() => stream.WriteTo(stream));

        Assert.DoesNotContain("ToArray", error.Message, StringComparison.Ordinal);
    }

    public static TheoryData<int, int, int> SelfCopyShapes()
    {
        var data = new TheoryData<int, int, int>();
        foreach (int length in new[] { 0, 1, 15, 16, 17, 40, 48 })
        {
            foreach (int position in new[] { 0, 1, 8, 15, 16, 17, 39, 40, 48, 60 })
            {
                for (int operation = 0; operation < 3; operation++)
                {
                    data.Add(length, position, operation);
                }
            }
        }

        return data;
    }

    /// <summary>Passes: CopyTo, CopyToAsync and WriteTo with the stream itself, for empty, one- and multi-segment streams, the position anywhere (also past the end), as MemoryStream.</summary>
    [Theory]
    [MemberData(nameof(SelfCopyShapes))]
    public async Task CopyToAndWriteToItselfMatchMemoryStreamForEveryShape(int length, int position, int operation)
    {
        using var model = new MemoryStream();
        using SegmentedMemoryStream stream = NewStream();
        model.Write(Counting(length));
        stream.Write(Counting(length));
        model.Position = position;
        stream.Position = position;
        switch (operation)
        {
            case 0:
                model.CopyTo(model);
                stream.CopyTo(stream);
                break;
            case 1:
                await model.CopyToAsync(model);
                await stream.CopyToAsync(stream);
                break;
            default:
                model.WriteTo(model);
                stream.WriteTo(stream);
                break;
        }

        Assert.Equal(model.Position, stream.Position);
        Assert.Equal(model.Length, stream.Length);
        Assert.Equal(Convert.ToHexString(model.ToArray()), Convert.ToHexString(stream.ToArray()));
    }

    /// <summary>
    /// Passes: random self-writes and self-reads (sync and async) with segments of 16 to 64 bytes, over the tiered pool
    /// and over MemoryPool&lt;byte&gt;.Shared (whose segments are ArrayPool arrays, as the temporary copy is), the
    /// position also past the end, against MemoryStream given a copy of the source.
    /// </summary>
    [Fact]
    public async Task RandomSelfCopiesWithGrowingSegmentsGapsAndAsyncCallsGiveMemoryStreamsBytes()
    {
        var random = new Random(99);
        for (int round = 0; round < 300; round++)
        {
            using var model = new MemoryStream();
            MemoryPool<byte> pool = round % 2 == 0 ? _pool : MemoryPool<byte>.Shared;
            using var stream = new SegmentedMemoryStream(new SegmentedBufferOptions { Pool = pool, InitialSegmentSize = 16, MaxSegmentSize = 16 << random.Next(3) });
            int length = random.Next(1, 300);
            byte[] contents = Counting(length);
            model.Write(contents);
            for (int i = 0; i < length;)
            {
                int part = Math.Min(random.Next(1, 40), length - i);
                stream.Write(contents.AsSpan(i, part));
                i += part;
            }

            for (int step = 0; step < 8; step++)
            {
                int length0 = (int)stream.Length;
                int from = random.Next(length0);
                ReadOnlyMemory<byte> rest = stream.GetReadOnlySequence().Slice(from).First;
                int count = random.Next(1, rest.Length + 1);
                Memory<byte> source = MemoryMarshal.AsMemory(rest[..count]);
                int at = random.Next(length0 + 20);
                int kind = random.Next(4);
                model.Position = at;
                stream.Position = at;
                if (kind < 2 && at < length0)
                {
                    byte[] read = new byte[count];
                    int modelRead = model.Read(read, 0, count);
                    read.AsSpan(0, modelRead).CopyTo(model.GetBuffer().AsSpan(from));
                    Assert.Equal(modelRead, kind == 0 ? await stream.ReadAsync(source) : stream.Read(source.Span));
                }
                else
                {
                    model.Write(model.GetBuffer().AsSpan(from, count).ToArray());
                    if (kind == 2)
                    {
                        await stream.WriteAsync(source);
                    }
                    else
                    {
                        stream.Write(source.Span);
                    }
                }

                Assert.Equal(model.Position, stream.Position);
                Assert.Equal(Convert.ToHexString(model.ToArray()), Convert.ToHexString(stream.ToArray()));
            }
        }
    }

    /// <summary>Passes: an overlapping write (through the copy) whose part past the end the pool refuses, and one past MaxLength, leave contents, length and position as they were.</summary>
    [Fact]
    public void AnOverlappingWriteThatFailsLeavesTheStreamAsItWas()
    {
        // The pool's first block is 64 bytes, the next ones exactly as asked: [0, 64) | [64, 80), the tail full.
        var pool = new RefusingPool { FirstBlock = 64 };
        using var stream = new SegmentedMemoryStream(new SegmentedBufferOptions { Pool = pool, InitialSegmentSize = 16, MaxSegmentSize = 16, MaxLength = 200 });
        stream.Write(Counting(64));
        stream.Write(Counting(16));
        byte[] before = stream.ToArray();
        ReadOnlyMemory<byte> first = stream.GetReadOnlySequence().First;
        Assert.Equal(64, first.Length);

        // [0, 64) written at 30: overwrites [30, 80) across the boundary with its own bytes [0, 50), which overlap the
        // destination [30, 64) (the copy path), and its last 14 bytes need a segment, which the pool refuses.
        pool.Refusing = true;
        stream.Position = 30;
        Assert.Throws<InsufficientMemoryException>(() => stream.Write(first.Span));
        Assert.Equal(30, stream.Position);
        Assert.Equal(before, stream.ToArray());

        // [0, 64) written at 140 would end at 204, past MaxLength 200.
        pool.Refusing = false;
        stream.Position = 140;
        Assert.Throws<IOException>(() => stream.Write(first.Span));
        Assert.Equal(140, stream.Position);
        Assert.Equal(before, stream.ToArray());

        // And then it works, as MemoryStream's would.
        using var model = new MemoryStream();
        model.Write(before);
        model.Position = 30;
        model.Write(model.GetBuffer(), 0, 64);
        stream.Position = 30;
        stream.Write(first.Span);
        Assert.Equal(Convert.ToHexString(model.ToArray()), Convert.ToHexString(stream.ToArray()));
    }

    /// <summary>A pool that throws on rent while <see cref="Refusing"/>.</summary>
    private sealed class RefusingPool : MemoryPool<byte>
    {
        public bool Refusing { get; set; }

        public int FirstBlock { get; init; }

        private bool _rented;

        public override int MaxBufferSize => 1 << 20;

        public override IMemoryOwner<byte> Rent(int minBufferSize = -1)
        {
            if (Refusing)
            {
                throw new InsufficientMemoryException("refused");
            }

            int size = _rented ? Math.Max(minBufferSize, 1) : Math.Max(minBufferSize, FirstBlock);
            _rented = true;
            return new Owner(new byte[size]);
        }

        protected override void Dispose(bool disposing)
        {
        }

        private sealed class Owner(byte[] array) : IMemoryOwner<byte>
        {
            public Memory<byte> Memory => array;

            public void Dispose()
            {
            }
        }
    }
}
