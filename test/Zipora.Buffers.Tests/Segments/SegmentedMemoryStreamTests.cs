using System;
using System.Buffers;
using System.IO;
using System.Linq;
using System.Threading;
using System.Threading.Tasks;

#pragma warning disable CA1835 // The array overloads are part of the contract under test.

namespace Zipora.Buffers.Tests;

/// <summary>The <see cref="Stream"/> contract as a user of <see cref="MemoryStream"/> relies on it.</summary>
public sealed partial class SegmentedMemoryStreamTests : IDisposable
{
    private readonly TieredMemoryPool _pool = new();

    public void Dispose() => _pool.Dispose();

    private SegmentedMemoryStream NewStream(int initial = 64, int max = 64, long maxLength = long.MaxValue) =>
        new(new SegmentedBufferOptions { Pool = _pool, InitialSegmentSize = initial, MaxSegmentSize = max, MaxLength = maxLength });

    private static byte[] Pattern(int length, int seed = 0) => [.. Enumerable.Range(seed, length).Select(static i => (byte)(i * 13))];

    [Fact]
    public void ANewStreamIsEmptyReadableWritableAndSeekable()
    {
        using SegmentedMemoryStream stream = NewStream();
        Assert.True(stream.CanRead);
        Assert.True(stream.CanWrite);
        Assert.True(stream.CanSeek);
        Assert.False(stream.CanTimeout);
        Assert.Equal(0, stream.Length);
        Assert.Equal(0, stream.Position);
        Assert.Equal(-1, stream.ReadByte());
        Assert.Equal(0, stream.Read(new byte[10]));
    }

    [Theory]
    [InlineData(63)]
    [InlineData(64)]
    [InlineData(65)]
    [InlineData(128)]
    [InlineData(1000)]
    public void WhatIsWrittenIsReadBackAcrossSegmentBoundaries(int length)
    {
        using SegmentedMemoryStream stream = NewStream();
        byte[] data = Pattern(length);
        stream.Write(data, 0, data.Length);
        Assert.Equal(length, stream.Length);
        Assert.Equal(length, stream.Position);

        stream.Position = 0;
        byte[] read = new byte[length + 10];
        int total = 0;
        int count;
        while ((count = stream.Read(read, total, 7)) > 0)
        {
            total += count;
        }

        Assert.Equal(length, total);
        Assert.Equal(data, read[..length]);
        Assert.Equal(data, stream.ToArray());
    }

    [Fact]
    public void ReadingAndWritingSingleBytesCrossSegments()
    {
        using SegmentedMemoryStream stream = NewStream();
        for (int i = 0; i < 200; i++)
        {
            stream.WriteByte((byte)i);
        }

        stream.Seek(0, SeekOrigin.Begin);
        for (int i = 0; i < 200; i++)
        {
            Assert.Equal(i, stream.ReadByte());
        }

        Assert.Equal(-1, stream.ReadByte());
    }

    [Fact]
    public void OverwritingInTheMiddleKeepsTheLengthAndSpansSegments()
    {
        using SegmentedMemoryStream stream = NewStream();
        stream.Write(Pattern(300));
        stream.Position = 60;
        stream.Write(new byte[10]);
        Assert.Equal(300, stream.Length);
        Assert.Equal(70, stream.Position);
        byte[] expected = Pattern(300);
        Array.Clear(expected, 60, 10);
        Assert.Equal(expected, stream.ToArray());
    }

    [Fact]
    public void AWriteThatRunsPastTheEndOverwritesThenAppends()
    {
        using SegmentedMemoryStream stream = NewStream();
        stream.Write(Pattern(100));
        stream.Position = 90;
        stream.Write(Pattern(50, 1));
        Assert.Equal(140, stream.Length);
        Assert.Equal([.. Pattern(100)[..90], .. Pattern(50, 1)], stream.ToArray());
    }

    [Theory]
    [InlineData(0, SeekOrigin.Begin, 0)]
    [InlineData(10, SeekOrigin.Begin, 10)]
    [InlineData(5, SeekOrigin.Current, 55)]
    [InlineData(-50, SeekOrigin.Current, 0)]
    [InlineData(-1, SeekOrigin.End, 99)]
    [InlineData(20, SeekOrigin.End, 120)]
    [InlineData(1000, SeekOrigin.Begin, 1000)]
    public void SeekMovesFromEveryOrigin(long offset, SeekOrigin origin, long expected)
    {
        using SegmentedMemoryStream stream = NewStream();
        stream.Write(Pattern(100));
        stream.Position = 50;
        Assert.Equal(expected, stream.Seek(offset, origin));
        Assert.Equal(expected, stream.Position);
        Assert.Equal(100, stream.Length);
    }

    [Fact]
    public void SeekingBeforeTheStartThrowsIOExceptionAndLeavesThePosition()
    {
        using SegmentedMemoryStream stream = NewStream();
        stream.Write(Pattern(10));
        Assert.Throws<IOException>(() => stream.Seek(-11, SeekOrigin.End));
        Assert.Throws<IOException>(() => stream.Seek(-1, SeekOrigin.Begin));
        Assert.Equal(10, stream.Position);
        Assert.Throws<ArgumentOutOfRangeException>(() => stream.Position = -1);
        Assert.Throws<ArgumentException>(() => stream.Seek(0, (SeekOrigin)7));
        stream.Position = long.MaxValue;
        Assert.Throws<ArgumentOutOfRangeException>(() => stream.Seek(1, SeekOrigin.Current));
    }

    [Fact]
    public void AWritePastTheEndZeroFillsTheGapAsMemoryStreamDoes()
    {
        using SegmentedMemoryStream stream = NewStream();
        using var expected = new MemoryStream();
        foreach (Stream each in new Stream[] { stream, expected })
        {
            each.Write(Pattern(30));
            each.Position = 200;
            Assert.Equal(0, each.Read(new byte[5]));
            Assert.Equal(30, each.Length);
            each.Write(Pattern(10, 3));
        }

        Assert.Equal(expected.ToArray(), stream.ToArray());
        Assert.Equal(210, stream.Length);
    }

    [Fact]
    public void AWritePastMaxLengthThrowsIOExceptionAndWritesNothing()
    {
        using SegmentedMemoryStream stream = NewStream(maxLength: 100);
        stream.Write(Pattern(90));
        IOException error = Assert.Throws<IOException>(() => stream.Write(Pattern(11)));
        Assert.Contains("MaxLength (100", error.Message, StringComparison.Ordinal);
        Assert.Equal(90, stream.Length);
        Assert.Equal(90, stream.Position);
        stream.Write(Pattern(10));
        Assert.Equal(100, stream.Length);
        Assert.Throws<IOException>(() => stream.WriteByte(1));

        stream.Position = long.MaxValue;
        Assert.Throws<IOException>(() => stream.WriteByte(1));
        Assert.Equal(100, stream.Length);
    }

    [Fact]
    public void ZeroLengthOperationsChangeNothing()
    {
        using SegmentedMemoryStream stream = NewStream();
        stream.Write([]);
        stream.Write(new byte[5], 5, 0);
        Assert.Equal(0, stream.Length);
        Assert.Equal(0, stream.Read([]));
        stream.Write(Pattern(10));
        stream.Position = 5;
        Assert.Equal(0, stream.Read(Span<byte>.Empty));
        Assert.Equal(5, stream.Position);
        stream.SetLength(10);
        stream.CopyTo(Stream.Null);
        Assert.Equal(10, stream.Position);
    }

    [Fact]
    public void ArrayArgumentsAreValidatedAsStreamsDo()
    {
        using SegmentedMemoryStream stream = NewStream();
        Assert.Throws<ArgumentNullException>(() => stream.Write(null!, 0, 0));
        Assert.Throws<ArgumentOutOfRangeException>(() => stream.Write(new byte[4], -1, 1));
        Assert.ThrowsAny<ArgumentException>(() => stream.Write(new byte[4], 2, 3));
        Assert.Throws<ArgumentNullException>(() => stream.Read(null!, 0, 0));
        Assert.ThrowsAny<ArgumentException>(() => stream.Read(new byte[4], 3, 2));
    }

    [Fact]
    public void CopyToWritesFromThePositionAndMovesItToTheEnd()
    {
        using SegmentedMemoryStream stream = NewStream();
        stream.Write(Pattern(500));
        stream.Position = 100;
        using var destination = new MemoryStream();
        stream.CopyTo(destination);
        Assert.Equal(Pattern(500)[100..], destination.ToArray());
        Assert.Equal(500, stream.Position);
        Assert.Throws<ArgumentNullException>(() => stream.CopyTo(null!));
        Assert.Throws<NotSupportedException>(() => stream.CopyTo(new MemoryStream([], writable: false)));
    }

    [Fact]
    public async Task CopyToAsyncWritesEachSegmentAndHonoursCancellation()
    {
        using SegmentedMemoryStream stream = NewStream();
        stream.Write(Pattern(500));
        stream.Position = 0;
        using var destination = new MemoryStream();
        await stream.CopyToAsync(destination, TestContext.Current.CancellationToken);
        Assert.Equal(Pattern(500), destination.ToArray());

        stream.Position = 0;
        Task cancelled = stream.CopyToAsync(destination, new CancellationToken(canceled: true));
        Assert.True(cancelled.IsCanceled);
        Assert.Equal(0, stream.Position);
    }

    [Fact]
    public void WriteToWritesEverythingWhateverThePosition()
    {
        using SegmentedMemoryStream stream = NewStream();
        stream.Write(Pattern(300));
        stream.Position = 200;
        using var destination = new MemoryStream();
        stream.WriteTo(destination);
        Assert.Equal(Pattern(300), destination.ToArray());
        Assert.Equal(200, stream.Position);
        Assert.Throws<ArgumentNullException>(() => stream.WriteTo(null!));
    }

    [Fact]
    public void TheSequenceAndTheSingleSegmentAreTheContentsWithoutCopying()
    {
        using SegmentedMemoryStream stream = NewStream();
        Assert.True(stream.TryGetSingleSegment(out ReadOnlyMemory<byte> empty));
        Assert.True(empty.IsEmpty);

        stream.Write(Pattern(40));
        Assert.True(stream.TryGetSingleSegment(out ReadOnlyMemory<byte> single));
        Assert.Equal(Pattern(40), single.ToArray());

        stream.Write(Pattern(100, 40));
        Assert.False(stream.TryGetSingleSegment(out _));
        ReadOnlySequence<byte> sequence = stream.GetReadOnlySequence();
        Assert.Equal(140, sequence.Length);
        Assert.Equal([.. Pattern(40), .. Pattern(100, 40)], sequence.ToArray());
    }

    [Fact]
    public async Task AsyncMembersCompleteAtOnceAndACancelledTokenGivesACancelledTask()
    {
        using SegmentedMemoryStream stream = NewStream();
        CancellationToken none = TestContext.Current.CancellationToken;
        await stream.WriteAsync(Pattern(100), none);
        await stream.WriteAsync(Pattern(10), 0, 10, none);
        await stream.FlushAsync(none);
        stream.Position = 0;
        byte[] read = new byte[110];
        Assert.Equal(110, await stream.ReadAsync(read, none));
        stream.Position = 0;
        Assert.Equal(5, await stream.ReadAsync(read, 0, 5, none));

        var cancelled = new CancellationToken(canceled: true);
        Assert.True(stream.ReadAsync(read.AsMemory(), cancelled).AsTask().IsCanceled);
        Assert.True(stream.ReadAsync(read, 0, 1, cancelled).IsCanceled);
        Assert.True(stream.WriteAsync(read.AsMemory(), cancelled).AsTask().IsCanceled);
        Assert.True(stream.WriteAsync(read, 0, 1, cancelled).IsCanceled);
        Assert.True(stream.FlushAsync(cancelled).IsCanceled);
        await Assert.ThrowsAsync<TaskCanceledException>(() => stream.ReadAsync(read, 0, 1, cancelled));
        Assert.Equal(110, stream.Length);
        Assert.Equal(5, stream.Position);
    }

    [Fact]
    public async Task AnAsyncErrorTravelsInTheTask()
    {
        using SegmentedMemoryStream stream = NewStream(maxLength: 10);
        Task write = stream.WriteAsync(new byte[11], TestContext.Current.CancellationToken).AsTask();
        Assert.True(write.IsFaulted);
        await Assert.ThrowsAsync<IOException>(() => write);
    }

    [Fact]
    public void DisposeReturnsEverySegmentAndEveryMemberThenThrows()
    {
        SegmentedMemoryStream stream = NewStream();
        stream.Write(Pattern(1000));
        stream.Dispose();
        stream.Dispose();
        Assert.Equal(0, _pool.GetStatistics().BytesInUse);
        Assert.False(stream.CanRead);
        Assert.False(stream.CanWrite);
        Assert.False(stream.CanSeek);
        Assert.Throws<ObjectDisposedException>(() => stream.Length);
        Assert.Throws<ObjectDisposedException>(() => stream.Position);
        Assert.Throws<ObjectDisposedException>(() => stream.Position = 0);
        Assert.Throws<ObjectDisposedException>(() => stream.Read(new byte[1]));
        Assert.Throws<ObjectDisposedException>(() => stream.ReadByte());
        Assert.Throws<ObjectDisposedException>(() => stream.Write(new byte[1]));
        Assert.Throws<ObjectDisposedException>(() => stream.WriteByte(1));
        Assert.Throws<ObjectDisposedException>(() => stream.Seek(0, SeekOrigin.Begin));
        Assert.Throws<ObjectDisposedException>(() => stream.SetLength(0));
        Assert.Throws<ObjectDisposedException>(() => stream.ToArray());
        Assert.Throws<ObjectDisposedException>(() => stream.GetReadOnlySequence());
        Assert.Throws<ObjectDisposedException>(() => stream.TryGetSingleSegment(out _));
        Assert.Throws<ObjectDisposedException>(() => stream.CopyTo(Stream.Null));
        Assert.Throws<ObjectDisposedException>(() => stream.WriteTo(Stream.Null));
        Assert.True(stream.ReadAsync(new byte[1]).AsTask().IsFaulted);
        stream.Flush();
    }

    [Fact]
    public async Task DisposeAsyncReturnsEverySegment()
    {
        SegmentedMemoryStream stream = NewStream();
        stream.Write(Pattern(1000));
        await stream.DisposeAsync();
        Assert.Equal(0, _pool.GetStatistics().BytesInUse);
    }
}
