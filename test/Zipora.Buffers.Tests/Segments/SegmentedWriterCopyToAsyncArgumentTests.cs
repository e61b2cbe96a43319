using System;
using System.Buffers;
using System.IO;
using System.Threading;
using System.Threading.Tasks;

namespace Zipora.Buffers.Tests;

/// <summary>
/// The writer's <c>CopyToAsync</c> checks its destination and itself when called, as <see cref="Stream.CopyToAsync(Stream)"/>
/// (and the segmented stream's) does: a bad call throws at once, instead of giving a faulted task, or nothing at all
/// for an empty writer.
/// </summary>
public sealed class SegmentedWriterCopyToAsyncArgumentTests
{
    [Fact]
    public void ANullDestinationThrowsWhenCalled()
    {
        using var pool = new TieredMemoryPool();
        using var writer = new SegmentedBufferWriter(new SegmentedBufferOptions { Pool = pool });

        ArgumentNullException error = ThrowsWhenCalled<ArgumentNullException>(() => writer.CopyToAsync(null!));
        Assert.Equal("destination", error.ParamName);
    }

    [Theory]
    [InlineData(0)]
    [InlineData(100)]
    public void AReadOnlyDestinationThrowsWhenCalledWhetherOrNotThereIsDataToCopy(int length)
    {
        using var pool = new TieredMemoryPool();
        using var writer = new SegmentedBufferWriter(new SegmentedBufferOptions { Pool = pool });
        writer.Write(new byte[length]);
        using var readOnly = new MemoryStream(new byte[10], writable: false);

        NotSupportedException error = ThrowsWhenCalled<NotSupportedException>(() => writer.CopyToAsync(readOnly));
        Assert.Contains("destination", error.Message, StringComparison.Ordinal);
        Assert.Equal(length, writer.Length);
    }

    [Fact]
    public void ADisposedDestinationThrowsObjectDisposedWhenCalled()
    {
        using var pool = new TieredMemoryPool();
        using var writer = new SegmentedBufferWriter(new SegmentedBufferOptions { Pool = pool });
        writer.Write(new byte[100]);
        var disposed = new MemoryStream();
        disposed.Dispose();

        ThrowsWhenCalled<ObjectDisposedException>(() => writer.CopyToAsync(disposed));
    }

    [Fact]
    public async Task ADisposedWriterThrowsWhenCalledEvenWithACancelledToken()
    {
        using var pool = new TieredMemoryPool();
        var writer = new SegmentedBufferWriter(new SegmentedBufferOptions { Pool = pool });
        writer.Write(new byte[100]);
        writer.Dispose();
        using var cancelled = new CancellationTokenSource();
        await cancelled.CancelAsync();

        ThrowsWhenCalled<ObjectDisposedException>(() => writer.CopyToAsync(Stream.Null));
        ThrowsWhenCalled<ObjectDisposedException>(() => writer.CopyToAsync(Stream.Null, cancelled.Token));
    }

    [Fact]
    public async Task ACallWhileACopyIsPendingThrowsWhenCalledAndTheFirstCopyCompletes()
    {
        using var pool = new TieredMemoryPool();
        using var writer = new SegmentedBufferWriter(new SegmentedBufferOptions { Pool = pool });
        writer.Write(new byte[100]);
        var release = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        using var slow = new GatedStream(release.Task);

        ValueTask first = writer.CopyToAsync(slow);
        ThrowsWhenCalled<InvalidOperationException>(() => writer.CopyToAsync(Stream.Null));
        release.SetResult();
        await first;

        Assert.Equal(100, slow.Length);
        await writer.CopyToAsync(slow);
        Assert.Equal(200, slow.Length);
    }

    /// <summary>The exception of type <typeparamref name="T"/> the call threw before it returned a task; fails if it returned one.</summary>
    private static T ThrowsWhenCalled<T>(Func<ValueTask> call)
        where T : Exception
    {
        ValueTask task;
        try
        {
            task = call();
        }
        catch (T expected)
        {
            return expected;
        }

        Task returned = task.AsTask();
        Assert.Fail($"The call returned a task ({returned.Status}, {returned.Exception?.InnerException?.GetType().Name}) instead of throwing {typeof(T).Name}.");
        return null!;
    }

    /// <summary>A memory stream whose asynchronous writes wait for a gate.</summary>
    private sealed class GatedStream(Task gate) : MemoryStream
    {
        public override async ValueTask WriteAsync(ReadOnlyMemory<byte> buffer, CancellationToken cancellationToken = default)
        {
            await gate.ConfigureAwait(false);
            Write(buffer.Span);
        }
    }
}
