using System;
using System.Buffers;
using System.IO;
using System.Threading;
using System.Threading.Tasks;

namespace Zipora.Buffers.Tests;

/// <summary>
/// <c>CopyToAsync</c> with a token cancelled while it runs, into a destination that ignores the token (as a user's
/// stream may): the copy itself stops before the next segment, as <see cref="Stream.CopyToAsync(Stream)"/> stops before
/// its next read, and its task is cancelled, not completed as if every byte were meant to go.
/// </summary>
public sealed class SegmentedCopyCancelledMidwayTests
{
    private const int SegmentSize = 4096;
    private const int Length = 3 * SegmentSize;

    [Fact]
    public async Task AWriterCopyCancelledAfterTheFirstSegmentStopsThereEvenIfTheDestinationIgnoresTheToken()
    {
        using var pool = new TieredMemoryPool();
        using var writer = new SegmentedBufferWriter(new SegmentedBufferOptions { Pool = pool, InitialSegmentSize = SegmentSize, MaxSegmentSize = SegmentSize });
        writer.Write(new byte[Length]);
        using var cancellation = new CancellationTokenSource();
        using var destination = new CancellingAndIgnoringStream(cancellation);

        await Assert.ThrowsAnyAsync<OperationCanceledException>(async () => await writer.CopyToAsync(destination, cancellation.Token));

        Assert.Equal(SegmentSize, destination.Length);
        Assert.Equal(Length, writer.Length);
    }

    [Fact]
    public async Task AStreamCopyCancelledAfterTheFirstSegmentStopsThereEvenIfTheDestinationIgnoresTheToken()
    {
        using var pool = new TieredMemoryPool();
        using var stream = new SegmentedMemoryStream(new SegmentedBufferOptions { Pool = pool, InitialSegmentSize = SegmentSize, MaxSegmentSize = SegmentSize });
        stream.Write(new byte[Length]);
        stream.Position = 0;
        using var cancellation = new CancellationTokenSource();
        using var destination = new CancellingAndIgnoringStream(cancellation);

        await Assert.ThrowsAnyAsync<OperationCanceledException>(() => stream.CopyToAsync(destination, cancellation.Token));

        Assert.Equal(SegmentSize, destination.Length);
        Assert.Equal(0, stream.Position);
    }

    /// <summary>A memory stream whose first write cancels <paramref name="cancellation"/>, and whose writes never look at a token.</summary>
    private sealed class CancellingAndIgnoringStream(CancellationTokenSource cancellation) : MemoryStream
    {
        public override async ValueTask WriteAsync(ReadOnlyMemory<byte> buffer, CancellationToken cancellationToken = default)
        {
            Write(buffer.Span);
            await cancellation.CancelAsync();
        }
    }
}
