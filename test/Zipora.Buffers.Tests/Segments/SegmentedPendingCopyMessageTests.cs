using System;
using System.Buffers;
using System.IO;
using System.Threading;
using System.Threading.Tasks;

namespace Zipora.Buffers.Tests;

/// <summary>
/// A call made while an asynchronous <c>CopyToAsync</c> of the same buffer has not completed (started and not awaited
/// yet) is refused, as the copy holds the segments: the message must name that cause, not only a re-entry from a
/// copy's destination or a second thread, which is not what the caller did.
/// </summary>
public sealed class SegmentedPendingCopyMessageTests
{
    [Fact]
    public async Task AStreamCalledBeforeItsCopyToAsyncCompletedIsToldTheCopyIsStillRunning()
    {
        using var pool = new TieredMemoryPool();
        using var stream = new SegmentedMemoryStream(new SegmentedBufferOptions { Pool = pool });
        stream.Write(new byte[100]);
        stream.Position = 0;
        var gate = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        Task copy = stream.CopyToAsync(new GatedStream(gate.Task), TestContext.Current.CancellationToken);

        InvalidOperationException sameThread = Assert.Throws<InvalidOperationException>(() => stream.WriteByte(1));
        string otherThread = await Task.Run(() => Assert.Throws<InvalidOperationException>(() => stream.WriteByte(1)).Message, TestContext.Current.CancellationToken);

        gate.SetResult();
        await copy;
        Assert.Contains("CopyToAsync", sameThread.Message, StringComparison.Ordinal);
        Assert.Contains("CopyToAsync", otherThread, StringComparison.Ordinal);
        Assert.Equal(100, stream.Position);
    }

    [Fact]
    public async Task AWriterCalledBeforeItsCopyToAsyncCompletedIsToldTheCopyIsStillRunning()
    {
        using var pool = new TieredMemoryPool();
        using var writer = new SegmentedBufferWriter(new SegmentedBufferOptions { Pool = pool });
        writer.Write(new byte[100]);
        var gate = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        ValueTask copy = writer.CopyToAsync(new GatedStream(gate.Task), TestContext.Current.CancellationToken);

        InvalidOperationException refused = Assert.Throws<InvalidOperationException>(() => writer.Reset());

        gate.SetResult();
        await copy;
        Assert.Contains("CopyToAsync", refused.Message, StringComparison.Ordinal);
        Assert.Equal(100, writer.Length);
    }

    /// <summary>A memory stream whose writes wait for <paramref name="gate"/>: the copy stays pending until then.</summary>
    private sealed class GatedStream(Task gate) : MemoryStream
    {
        public override async ValueTask WriteAsync(ReadOnlyMemory<byte> buffer, CancellationToken cancellationToken = default)
        {
            await gate.ConfigureAwait(false);
            await base.WriteAsync(buffer, cancellationToken);
        }
    }
}
