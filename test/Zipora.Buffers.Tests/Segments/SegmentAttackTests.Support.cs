using System;
using System.Buffers;
using System.IO;
using System.Threading;
using System.Threading.Tasks;

namespace Zipora.Buffers.Tests;

/// <summary>What the attack tests share: fills, addresses, a race against Dispose, a gated destination, a pool that misbehaves.</summary>
public sealed partial class SegmentAttackTests
{
    // Helpers.
    // ---------------------------------------------------------------------------------------------------------------

    internal static byte[] Filled(int length, byte value)
    {
        byte[] array = new byte[length];
        array.AsSpan().Fill(value);
        return array;
    }

    internal static unsafe nint AddressOf(ReadOnlyMemory<byte> memory)
    {
        using MemoryHandle handle = memory.Pin();
        return (nint)handle.Pointer;
    }

    /// <summary>
    /// Runs <paramref name="use"/> on another thread and disposes <paramref name="target"/> while it may still run (a
    /// spin that changes with <paramref name="round"/> moves the dispose along the call), then runs
    /// <paramref name="afterDispose"/> here, before the call is over; returns what <paramref name="use"/> threw.
    /// </summary>
    internal static Exception? RaceDispose(IDisposable target, Action use, int round, Action? afterDispose = null)
    {
        int started = 0;
        Exception? error = null;
        Thread user = SegmentedBuffers.Started(() =>
        {
            Volatile.Write(ref started, 1);
            try
            {
                use();
            }
            catch (Exception exception)
            {
                error = exception;
            }
        });
        while (Volatile.Read(ref started) == 0)
        {
            Thread.SpinWait(1);
        }

        Thread.SpinWait(round % 64 * 20);
        target.Dispose();
        afterDispose?.Invoke();
        user.Join();
        return error;
    }

    /// <summary>A destination whose first asynchronous write waits for <see cref="Open"/>; it copies what it is given at once.</summary>
    private sealed class GatedStream : Stream
    {
        private readonly TaskCompletionSource _gate = new();
        private int _writes;

        public MemoryStream Received { get; } = new();

        public override bool CanRead => false;

        public override bool CanSeek => false;

        public override bool CanWrite => true;

        public override long Length => throw new NotSupportedException();

        public override long Position { get => throw new NotSupportedException(); set => throw new NotSupportedException(); }

        public void Open() => _gate.SetResult();

        public override ValueTask WriteAsync(ReadOnlyMemory<byte> buffer, CancellationToken cancellationToken = default)
        {
            Received.Write(buffer.Span);
            return _writes++ == 0 ? new ValueTask(_gate.Task) : ValueTask.CompletedTask;
        }

        public override void Write(byte[] buffer, int offset, int count) => Received.Write(buffer, offset, count);

        public override void Flush()
        {
        }

        public override int Read(byte[] buffer, int offset, int count) => throw new NotSupportedException();

        public override long Seek(long offset, SeekOrigin origin) => throw new NotSupportedException();

        public override void SetLength(long value) => throw new NotSupportedException();
    }
}
