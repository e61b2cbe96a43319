using System;
using System.Buffers;
using System.IO;
using System.Linq;
using System.Threading.Tasks;
using static Zipora.Buffers.Tests.SegmentedBuffers;

namespace Zipora.Buffers.Tests;

/// <summary>
/// A call that gives segments back while an owner of another pool throws on dispose finishes its own work first: the
/// count consumed, the writer emptied, the stream shortened with its position and search state, then the error. Found
/// by a hostile review: a consume left the next segment with the old head's offset (a negative length, a sequence that
/// could not be made, a writer jammed for good and its segments never given back). Also: a copy of nothing into the
/// stream itself writes nothing, as MemoryStream's does.
/// </summary>
public sealed class SegmentedFailedReleaseSafetyTests
{
    private const int SmallSegment = 16;

    [Theory]
    [InlineData(21, 12, 4)] // Ends exactly at the first segment's end: the head goes, the next starts at 0.
    [InlineData(21, 10, 9)] // Crosses into the second segment.
    [InlineData(40, 0, 35)] // Crosses two segments in one call.
    public void AConsumeWhoseReleasedOwnerThrowsStillConsumesExactlyTheCount(int written, int firstConsume, int secondConsume)
    {
        // The first segment's owner refuses; the first consume stays within it.
        var pool = new MisbehavingPool { Refuses = static index => index == 0 };
        byte[] data = [.. Enumerable.Range(1, written).Select(static value => (byte)value)];
        var writer = new SegmentedBufferWriter(new SegmentedBufferOptions { Pool = pool, InitialSegmentSize = SmallSegment, MaxSegmentSize = SmallSegment });
        writer.Write(data);
        writer.Consume(firstConsume);
        Assert.Throws<InvalidOperationException>(() => writer.Consume(secondConsume));

        int consumed = firstConsume + secondConsume;
        Assert.Equal(written - consumed, writer.Length);
        Assert.Equal(data[consumed..], writer.GetReadOnlySequence().ToArray());
        Assert.Equal(data[consumed..], writer.ToArray());

        // Not jammed: it writes and reads on.
        writer.Write<byte>([200, 201]);
        Assert.Equal([.. data[consumed..], 200, 201], writer.ToArray());
        writer.Dispose();

        // Only the owner that refused is still out, and no other was given back twice.
        Assert.Equal(1, pool.Outstanding);
        Assert.Equal(0, pool.DoubleDisposes);
    }

    [Fact]
    public void AResetWhoseReleasedOwnerThrowsStillEmptiesTheWriter()
    {
        var pool = new MisbehavingPool { Refuses = static index => index == 1 };
        var writer = new SegmentedBufferWriter(new SegmentedBufferOptions { Pool = pool, InitialSegmentSize = SmallSegment, MaxSegmentSize = SmallSegment });
        writer.Write(Filled(40, 7));

        Assert.Throws<InvalidOperationException>(writer.Reset);

        Assert.Equal(0, writer.Length);
        writer.Write<byte>([1, 2, 3]);
        Assert.Equal([1, 2, 3], writer.ToArray());
        writer.Dispose();
        Assert.Equal(1, pool.Outstanding);
        Assert.Equal(0, pool.DoubleDisposes);
    }

    [Fact]
    public void AStreamShortenedWhileAReleasedOwnerThrowsKeepsItsPositionAndNeverWritesIntoAnotherBuffersSegment()
    {
        var pool = new MisbehavingPool { Refuses = static index => index == 4 };
        var options = new SegmentedBufferOptions { Pool = pool, InitialSegmentSize = SmallSegment, MaxSegmentSize = SmallSegment };
        var stream = new SegmentedMemoryStream(options);
        var model = new MemoryStream();
        foreach (Stream each in new Stream[] { stream, model })
        {
            each.Write(Filled(96, 1));

            // A read behind the cursor builds the index of segments, which the shortening then cuts.
            each.Position = 90;
            _ = each.ReadByte();
            each.Position = 5;
            _ = each.ReadByte();
            each.Position = 60;
        }

        Assert.Throws<InvalidOperationException>(() => stream.SetLength(40));
        model.SetLength(40);
        Assert.Equal(model.Length, stream.Length);
        Assert.Equal(model.Position, stream.Position);

        // A second buffer takes the segment objects just given back; writes into what is left (no growth, which would
        // forget the index anyway) must find the stream's own segments.
        using var other = new SegmentedMemoryStream(options);
        other.Write(Filled(32, 9));
        foreach (Stream each in new Stream[] { stream, model })
        {
            each.Position = 20;
            each.WriteByte(7);
            each.Position = 35;
            each.WriteByte(8);
        }

        Assert.Equal(Filled(32, 9), ReadAll(other));
        Assert.Equal(model.ToArray(), ReadAll(stream));
        stream.Dispose();
        other.Dispose();
        Assert.Equal(1, pool.Outstanding);
        Assert.Equal(0, pool.DoubleDisposes);
    }

    [Theory]
    [InlineData(100)]
    [InlineData(long.MaxValue)]
    public async Task ACopyOfNothingIntoTheStreamItselfWritesNothingAsMemoryStreamDoes(long position)
    {
        foreach (bool asynchronous in new[] { false, true })
        {
            using var stream = new SegmentedMemoryStream(new SegmentedBufferOptions());
            using var model = new MemoryStream();
            foreach (Stream each in new Stream[] { stream, model })
            {
                each.Position = Math.Min(position, int.MaxValue); // MemoryStream's positions stop at int.MaxValue.
            }

            stream.Position = position;
            if (asynchronous)
            {
                await stream.CopyToAsync(stream, TestContext.Current.CancellationToken);
                await model.CopyToAsync(model, TestContext.Current.CancellationToken);
            }
            else
            {
                stream.CopyTo(stream);
                model.CopyTo(model);
            }

            Assert.Equal(model.Length, stream.Length);
            Assert.Equal(position, stream.Position);
        }
    }

    private static byte[] ReadAll(Stream stream)
    {
        stream.Position = 0;
        using var copy = new MemoryStream();
        stream.CopyTo(copy);
        return copy.ToArray();
    }
}
