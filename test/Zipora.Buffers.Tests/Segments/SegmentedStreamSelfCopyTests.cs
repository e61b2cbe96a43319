using System;
using System.IO;
using System.IO.Compression;
using System.Linq;
using System.Runtime.InteropServices;

#pragma warning disable CA1835 // MemoryStream's array overloads are the model compared against.

namespace Zipora.Buffers.Tests;

/// <summary>
/// The stream's own memory written or read back into it, as <see cref="MemoryStream"/> users do with
/// <c>GetBuffer()</c>: the bytes arrive as from one memmove, also across segments, where a copy part by part would
/// overwrite source bytes before reading them; and <c>ToArray</c> after a wrapping stream closed it. Found by a review
/// against MemoryStream; each of the first four failed on the code before the fix.
/// </summary>
public sealed class SegmentedStreamSelfCopyTests : IDisposable
{
    private readonly TieredMemoryPool _pool = new();

    public void Dispose() => _pool.Dispose();

    // 16-byte segments: the contents 0..31 lie in two segments, [0, 16) and [16, 32).
    private SegmentedMemoryStream NewStream() =>
        new(new SegmentedBufferOptions { Pool = _pool, InitialSegmentSize = 16, MaxSegmentSize = 16 });

    private static byte[] Counting(int length) => [.. Enumerable.Range(0, length).Select(static i => (byte)i)];

    /// <summary>
    /// A write whose source is the stream's own first segment (from <see cref="SegmentedMemoryStream.GetReadOnlySequence"/>,
    /// valid until the stream is next written), moved one byte forward, so the destination runs into the second
    /// segment. MemoryStream (its <c>GetBuffer()</c> written into itself) copies as memmove does: 0, 0..15, 17..31.
    /// The stream copies segment by segment: the first part overwrites source byte 15 before the second part reads
    /// it, so position 16 gets 14 instead of 15. Silent corruption of the stream's own data.
    /// </summary>
    [Fact]
    public void AWriteOfTheStreamsOwnMemoryOverlappingForwardAcrossASegmentBoundaryCopiesAsMemoryStreamDoes()
    {
        using var model = new MemoryStream();
        using SegmentedMemoryStream stream = NewStream();
        model.Write(Counting(32));
        stream.Write(Counting(32));

        model.Position = 1;
        model.Write(model.GetBuffer(), 0, 16);
        ReadOnlyMemory<byte> firstSegment = stream.GetReadOnlySequence().First;
        Assert.Equal(16, firstSegment.Length);
        stream.Position = 1;
        stream.Write(firstSegment.Span);

        Assert.Equal(Convert.ToHexString(model.ToArray()), Convert.ToHexString(stream.ToArray()));
    }

    /// <summary>
    /// As above, with the write also running past the end (the stream appends the part past the end first, then
    /// overwrites the rest segment by segment): stream 0..15 | 16..20, source the first segment, written at 10.
    /// MemoryStream gives 0..9, 0..15; the stream's second segment gets 6..9 then 0 (byte 10 of the source was
    /// already overwritten with 0) where MemoryStream has 6..10.
    /// </summary>
    [Fact]
    public void AWriteOfTheStreamsOwnMemoryOverlappingForwardAndPastTheEndCopiesAsMemoryStreamDoes()
    {
        using var model = new MemoryStream();
        using SegmentedMemoryStream stream = NewStream();
        model.Write(Counting(21));
        stream.Write(Counting(21));

        model.Position = 10;
        model.Write(model.GetBuffer(), 0, 16);
        ReadOnlyMemory<byte> firstSegment = stream.GetReadOnlySequence().First;
        stream.Position = 10;
        stream.Write(firstSegment.Span);

        Assert.Equal(Convert.ToHexString(model.ToArray()), Convert.ToHexString(stream.ToArray()));
    }

    /// <summary>
    /// The read direction: a read from position 8 (source bytes 8..23, across the boundary) into the stream's own
    /// second segment (bytes 16..31). MemoryStream's Read into its own buffer is a memmove: 16..31 become 8..23.
    /// The stream copies 8..15 over 16..23 first, then reads 16..23 (already overwritten): 16..31 become 8..15, 8..15.
    /// Needs a writable view of the sequence's memory (MemoryMarshal.AsMemory), as TryGetBuffer's array would give.
    /// </summary>
    [Fact]
    public void AReadIntoTheStreamsOwnMemoryOverlappingAcrossASegmentBoundaryCopiesAsMemoryStreamDoes()
    {
        using var model = new MemoryStream();
        using SegmentedMemoryStream stream = NewStream();
        model.Write(Counting(32));
        stream.Write(Counting(32));

        model.Position = 8;
        Assert.Equal(16, model.Read(model.GetBuffer(), 16, 16));
        Memory<byte> secondSegment = MemoryMarshal.AsMemory(stream.GetReadOnlySequence().Slice(16).First);
        Assert.Equal(16, secondSegment.Length);
        stream.Position = 8;
        Assert.Equal(16, stream.Read(secondSegment.Span));

        Assert.Equal(Convert.ToHexString(model.ToArray()), Convert.ToHexString(stream.ToArray()));
    }

    /// <summary>
    /// <c>WriteTo</c> with the stream itself as destination: MemoryStream writes its whole contents at its position
    /// (here: appends them, doubling the stream). <c>CopyTo(this)</c> is special-cased to do as MemoryStream does, but
    /// <c>WriteTo(this)</c> is not: it holds the guard while writing into itself and throws
    /// InvalidOperationException ("called from inside one of its own calls").
    /// </summary>
    [Fact]
    public void WriteToTheStreamItselfWritesItsContentsAtThePositionAsMemoryStreamDoes()
    {
        using var model = new MemoryStream();
        using SegmentedMemoryStream stream = NewStream();
        model.Write(Counting(40));
        stream.Write(Counting(40));

        model.WriteTo(model);
        stream.WriteTo(stream);

        Assert.Equal(Convert.ToHexString(model.ToArray()), Convert.ToHexString(stream.ToArray()));
        Assert.Equal(model.Position, stream.Position);
    }

    /// <summary>
    /// The most common MemoryStream-with-GZipStream pattern takes the bytes with ToArray after the GZipStream closed the
    /// stream, which MemoryStream allows. This stream's segments went back to the pool at that close: the exception
    /// names the way out (leaveOpen), and with it the bytes are MemoryStream's.
    /// </summary>
    [Fact]
    public void ToArrayAfterAWrappingStreamClosedItNamesLeaveOpenAndWithItGivesMemoryStreamsBytes()
    {
        byte[] payload = Counting(200);
        var model = new MemoryStream();
        using (var gzip = new GZipStream(model, CompressionLevel.Fastest))
        {
            gzip.Write(payload);
        }

        SegmentedMemoryStream closed = NewStream();
        using (var gzip = new GZipStream(closed, CompressionLevel.Fastest))
        {
            gzip.Write(payload);
        }

        ObjectDisposedException refused = Assert.Throws<ObjectDisposedException>(() => closed.ToArray());
        Assert.Contains("leaveOpen", refused.Message, StringComparison.Ordinal);

        using SegmentedMemoryStream kept = NewStream();
        using (var gzip = new GZipStream(kept, CompressionLevel.Fastest, leaveOpen: true))
        {
            gzip.Write(payload);
        }

        Assert.Equal(model.ToArray(), kept.ToArray());
    }

    /// <summary>
    /// Every shape of self-copy at random (forward and backward overlap, within one segment and across several, part
    /// past the end, reads into the stream's own memory), against MemoryStream given a copy of the source: the bytes
    /// of one memmove. (MemoryStream with its own buffer copies reads and writes of up to 8 bytes byte by byte from
    /// the back, which smears some overlaps: not a behaviour anyone relies on.)
    /// </summary>
    [Fact]
    public void RandomSelfCopiesGiveMemoryStreamsBytes()
    {
        var random = new Random(1234);
        for (int round = 0; round < 300; round++)
        {
            using var model = new MemoryStream();
            using SegmentedMemoryStream stream = NewStream();
            int length = random.Next(1, 80);
            model.Write(Counting(length));
            stream.Write(Counting(length));
            for (int step = 0; step < 6; step++)
            {
                int length0 = (int)stream.Length;
                int from = random.Next(length0);
                int count = random.Next(1, Math.Min(16 - (from % 16), length0 - from) + 1);
                int at = random.Next(length0 + 1);
                bool read = random.Next(2) == 0 && at + count <= length0;
                Memory<byte> source = MemoryMarshal.AsMemory(stream.GetReadOnlySequence().Slice(from, count).First);
                Assert.Equal(count, source.Length);
                if (read)
                {
                    // Read count bytes from position `at` into the stream's own bytes [from, from + count).
                    model.Position = at;
                    byte[] read0 = new byte[count];
                    int modelRead = model.Read(read0, 0, count);
                    read0.AsSpan(0, modelRead).CopyTo(model.GetBuffer().AsSpan(from));
                    stream.Position = at;
                    Assert.Equal(modelRead, stream.Read(source.Span));
                }
                else
                {
                    model.Position = at;
                    model.Write(model.GetBuffer().AsSpan(from, count).ToArray());
                    stream.Position = at;
                    stream.Write(source.Span);
                }

                Assert.Equal(model.Position, stream.Position);
                Assert.Equal(Convert.ToHexString(model.ToArray()), Convert.ToHexString(stream.ToArray()));
            }
        }
    }
}
