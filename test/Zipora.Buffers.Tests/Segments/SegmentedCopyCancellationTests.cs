using System;
using System.Buffers;
using System.IO;
using System.Threading;
using System.Threading.Tasks;

namespace Zipora.Buffers.Tests;

/// <summary>
/// <c>CopyToAsync</c> with a token cancelled while the copy runs: the copy stops before its next segment and its task
/// is cancelled, and the buffer is left whole and usable; also into a destination that ignores the token (as a user's
/// stream may), as <see cref="Stream.CopyToAsync(Stream)"/> stops before its next read.
/// </summary>
public sealed class SegmentedCopyCancellationTests
{
    private const int SegmentSize = 4096;
    private const int Length = 3 * SegmentSize;

    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public async Task AWriterCopyToAsyncCancelledAfterTheFirstSegmentStopsThereAndIsCancelled(bool destinationIgnoresTheToken)
    {
        using var pool = new TieredMemoryPool();
        using var writer = new SegmentedBufferWriter(new SegmentedBufferOptions { Pool = pool, InitialSegmentSize = SegmentSize, MaxSegmentSize = SegmentSize });
        writer.Write(new byte[Length]);
        using var cancellation = new CancellationTokenSource();
        using var destination = new CancellingAfterFirstWriteStream(cancellation, destinationIgnoresTheToken);

        await Assert.ThrowsAnyAsync<OperationCanceledException>(async () => await writer.CopyToAsync(destination, cancellation.Token));

        Assert.Equal(SegmentSize, destination.Length);
        Assert.Equal(Length, writer.Length);
        writer.Write(new byte[1]);
        Assert.Equal(Length + 1, writer.Length);
    }

    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public async Task AStreamCopyToAsyncCancelledAfterTheFirstSegmentStopsThereAndIsCancelled(bool destinationIgnoresTheToken)
    {
        using var pool = new TieredMemoryPool();
        using var stream = new SegmentedMemoryStream(new SegmentedBufferOptions { Pool = pool, InitialSegmentSize = SegmentSize, MaxSegmentSize = SegmentSize });
        stream.Write(new byte[Length]);
        stream.Position = 0;
        using var cancellation = new CancellationTokenSource();
        using var destination = new CancellingAfterFirstWriteStream(cancellation, destinationIgnoresTheToken);

        await Assert.ThrowsAnyAsync<OperationCanceledException>(() => stream.CopyToAsync(destination, cancellation.Token));

        Assert.Equal(SegmentSize, destination.Length);
        Assert.Equal(Length, stream.Length);
        stream.Position = Length;
        stream.WriteByte(1);
        Assert.Equal(Length + 1, stream.Length);
    }

    /// <summary>
    /// A memory stream whose first write cancels <paramref name="cancellation"/> once it is done, so the copy's next write
    /// sees it; with <paramref name="ignoresTheToken"/> its writes never look at a token.
    /// </summary>
    private sealed class CancellingAfterFirstWriteStream(CancellationTokenSource cancellation, bool ignoresTheToken) : MemoryStream
    {
        public override async ValueTask WriteAsync(ReadOnlyMemory<byte> buffer, CancellationToken cancellationToken = default)
        {
            await base.WriteAsync(buffer, ignoresTheToken ? CancellationToken.None : cancellationToken);
            await cancellation.CancelAsync();
        }
    }
}
