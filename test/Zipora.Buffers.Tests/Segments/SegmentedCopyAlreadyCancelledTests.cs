using System;
using System.Buffers;
using System.IO;
using System.Threading;
using System.Threading.Tasks;

namespace Zipora.Buffers.Tests;

/// <summary>
/// <c>CopyToAsync</c> given a token cancelled before the call: a cancelled task and nothing written, as the stream's
/// own <c>CopyToAsync</c> (and <see cref="MemoryStream"/>'s) do, whether or not the destination looks at the token.
/// </summary>
public sealed class SegmentedCopyAlreadyCancelledTests
{
    [Fact]
    public async Task AWriterCopyToAsyncWithAnAlreadyCancelledTokenIsCancelledAndWritesNothing()
    {
        using var pool = new TieredMemoryPool();
        using var writer = new SegmentedBufferWriter(new SegmentedBufferOptions { Pool = pool, InitialSegmentSize = 64, MaxSegmentSize = 256 });
        writer.Write(new byte[1000]);
        using var cancelled = new CancellationTokenSource();
        await cancelled.CancelAsync();
        using var destination = new TokenIgnoringStream();

        Task copy = writer.CopyToAsync(destination, cancelled.Token).AsTask();

        Assert.True(copy.IsCanceled);
        Assert.Equal(0, destination.Length);
        Assert.Equal(1000, writer.Length);
        writer.Write(new byte[1]);
        Assert.Equal(1001, writer.Length);
    }

    [Fact]
    public async Task AnEmptyWritersCopyToAsyncWithAnAlreadyCancelledTokenIsCancelled()
    {
        using var pool = new TieredMemoryPool();
        using var writer = new SegmentedBufferWriter(new SegmentedBufferOptions { Pool = pool });
        using var cancelled = new CancellationTokenSource();
        await cancelled.CancelAsync();

        Assert.True(writer.CopyToAsync(Stream.Null, cancelled.Token).AsTask().IsCanceled);
    }

    [Fact]
    public async Task TheStreamsCopyToAsyncWithAnAlreadyCancelledTokenIsCancelledAndWritesNothing()
    {
        using var pool = new TieredMemoryPool();
        using var stream = new SegmentedMemoryStream(new SegmentedBufferOptions { Pool = pool, InitialSegmentSize = 64, MaxSegmentSize = 256 });
        stream.Write(new byte[1000]);
        stream.Position = 0;
        using var cancelled = new CancellationTokenSource();
        await cancelled.CancelAsync();
        using var destination = new TokenIgnoringStream();

        Assert.True(stream.CopyToAsync(destination, cancelled.Token).IsCanceled);
        Assert.Equal(0, destination.Length);
        Assert.Equal(0, stream.Position);
    }

    /// <summary>A memory stream whose asynchronous write ignores its token, as a user's stream may.</summary>
    private sealed class TokenIgnoringStream : MemoryStream
    {
        public override ValueTask WriteAsync(ReadOnlyMemory<byte> buffer, CancellationToken cancellationToken = default)
        {
            Write(buffer.Span);
            return ValueTask.CompletedTask;
        }
    }
}
