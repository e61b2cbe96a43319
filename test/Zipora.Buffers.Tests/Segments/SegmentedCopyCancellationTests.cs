using System;
using System.Buffers;
using System.IO;
using System.Threading;
using System.Threading.Tasks;

namespace Zipora.Buffers.Tests;

/// <summary>
/// <c>CopyToAsync</c> with a token cancelled while the copy runs: each segment's write is given the token, so the
/// copy stops at the next segment and its task is cancelled, and the buffer is left whole and usable.
/// </summary>
public sealed class SegmentedCopyCancellationTests
{
    private const int SegmentSize = 4096;
    private const int Length = 3 * SegmentSize;

    [Fact]
    public async Task AWriterCopyToAsyncCancelledAfterTheFirstSegmentStopsThereAndIsCancelled()
    {
        using var pool = new TieredMemoryPool();
        using var writer = new SegmentedBufferWriter(new SegmentedBufferOptions { Pool = pool, InitialSegmentSize = SegmentSize, MaxSegmentSize = SegmentSize });
        writer.Write(new byte[Length]);
        using var cancellation = new CancellationTokenSource();
        using var destination = new CancellingAfterFirstWriteStream(cancellation);

        await Assert.ThrowsAnyAsync<OperationCanceledException>(async () => await writer.CopyToAsync(destination, cancellation.Token));

        Assert.Equal(SegmentSize, destination.Length);
        Assert.Equal(Length, writer.Length);
        writer.Write(new byte[1]);
        Assert.Equal(Length + 1, writer.Length);
    }

    [Fact]
    public async Task AStreamCopyToAsyncCancelledAfterTheFirstSegmentStopsThereAndIsCancelled()
    {
        using var pool = new TieredMemoryPool();
        using var stream = new SegmentedMemoryStream(new SegmentedBufferOptions { Pool = pool, InitialSegmentSize = SegmentSize, MaxSegmentSize = SegmentSize });
        stream.Write(new byte[Length]);
        stream.Position = 0;
        using var cancellation = new CancellationTokenSource();
        using var destination = new CancellingAfterFirstWriteStream(cancellation);

        await Assert.ThrowsAnyAsync<OperationCanceledException>(() => stream.CopyToAsync(destination, cancellation.Token));

        Assert.Equal(SegmentSize, destination.Length);
        Assert.Equal(Length, stream.Length);
        stream.Position = Length;
        stream.WriteByte(1);
        Assert.Equal(Length + 1, stream.Length);
    }

    /// <summary>A memory stream whose first write cancels <paramref name="cancellation"/> once it is done: the copy's next write sees it.</summary>
    private sealed class CancellingAfterFirstWriteStream(CancellationTokenSource cancellation) : MemoryStream
    {
        public override async ValueTask WriteAsync(ReadOnlyMemory<byte> buffer, CancellationToken cancellationToken = default)
        {
            await base.WriteAsync(buffer, cancellationToken);
            await cancellation.CancelAsync();
        }
    }
}
