using System;
using System.Buffers;
using System.IO;
using System.Threading;
using System.Threading.Tasks;

namespace Zipora.Buffers.Tests;

/// <summary>
/// README, Segmented buffers, Disposal: "Dispose returns every segment once [...]; everything else then throws
/// ObjectDisposedException". <c>CopyToAsync</c> given a token cancelled before the call answers with a cancelled task
/// without entering the buffer's guard, so the disposal check on that path is its own: a disposed buffer must still
/// say it was disposed, as <see cref="MemoryStream"/>'s <c>CopyToAsync</c> does (it checks the stream before the
/// token), not pass for a live one whose copy was merely cancelled.
/// </summary>
/// <remarks>
/// <see cref="SegmentedCopyAlreadyCancelledTests"/> covers the token on live buffers only: with the disposal check of
/// that path taken out, in the writer and in the stream, every segmented test passed.
/// </remarks>
public sealed class SegmentedDisposedCopyToAsyncTests
{
    [Fact]
    public async Task ADisposedWritersCopyToAsyncWithACancelledTokenThrowsObjectDisposed()
    {
        using var pool = new TieredMemoryPool();
        var writer = new SegmentedBufferWriter(new SegmentedBufferOptions { Pool = pool });
        writer.Write(new byte[100]);
        writer.Dispose();
        using var cancelled = new CancellationTokenSource();
        await cancelled.CancelAsync();

        // ThrowsAsync accepts a synchronous throw as well as a faulted task: either way the caller learns of the dispose.
        await Assert.ThrowsAsync<ObjectDisposedException>(async () => await writer.CopyToAsync(Stream.Null, cancelled.Token));
    }

    [Fact]
    public async Task ADisposedStreamsCopyToAsyncWithACancelledTokenThrowsObjectDisposedAsMemoryStreamDoes()
    {
        using var cancelled = new CancellationTokenSource();
        await cancelled.CancelAsync();
        var reference = new MemoryStream(new byte[100]);
        await reference.DisposeAsync();
        await Assert.ThrowsAsync<ObjectDisposedException>(() => reference.CopyToAsync(Stream.Null, 81920, cancelled.Token));

        using var pool = new TieredMemoryPool();
        var stream = new SegmentedMemoryStream(new SegmentedBufferOptions { Pool = pool });
        stream.Write(new byte[100]);
        stream.Position = 0;
        await stream.DisposeAsync();
        await Assert.ThrowsAsync<ObjectDisposedException>(() => stream.CopyToAsync(Stream.Null, 81920, cancelled.Token));
    }
}
