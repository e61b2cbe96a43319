using System;
using System.IO;
using System.Threading;
using System.Threading.Tasks;

namespace Zipora.Buffers.Tests;

/// <summary>
/// A destination whose first write (synchronous or asynchronous) waits until <see cref="Release"/>: the caller's copy
/// is then pending inside it, as a copy to a slow socket is. It copies what it is given at once, when the write is
/// entered, and again when it is released, so a block that went back to the pool under the pending write shows up as
/// a difference between the two.
/// </summary>
internal sealed class HeldDestinationStream : Stream
{
    private readonly TaskCompletionSource _gate = new(TaskCreationOptions.RunContinuationsAsynchronously);
    private readonly ManualResetEventSlim _entered = new();
    private int _writes;

    public MemoryStream Received { get; } = new();

    /// <summary>Bytes of the held write that changed between its start and its release (another renter's stamps).</summary>
    public int ChangedWhileHeld { get; private set; }

    public override bool CanRead => false;

    public override bool CanSeek => false;

    public override bool CanWrite => true;

    public override long Length => throw new NotSupportedException();

    public override long Position { get => throw new NotSupportedException(); set => throw new NotSupportedException(); }

    /// <summary>Waits until the first write is held.</summary>
    public bool WaitEntered(TimeSpan timeout) => _entered.Wait(timeout);

    public void Release() => _gate.TrySetResult();

    public override async ValueTask WriteAsync(ReadOnlyMemory<byte> buffer, CancellationToken cancellationToken = default)
    {
        if (Interlocked.Increment(ref _writes) == 1)
        {
            byte[] before = buffer.ToArray();
            _entered.Set();

            // Honours the token, as a socket does: a cancelled copy leaves here, not when released.
            await _gate.Task.WaitAsync(cancellationToken).ConfigureAwait(false);
            ChangedWhileHeld = Differences(before, buffer.Span);
        }

        Received.Write(buffer.Span);
    }

    public override void Write(ReadOnlySpan<byte> buffer)
    {
        if (Interlocked.Increment(ref _writes) == 1)
        {
            byte[] before = buffer.ToArray();
            _entered.Set();
            _gate.Task.Wait();
            ChangedWhileHeld = Differences(before, buffer);
        }

        Received.Write(buffer);
    }

    public override void Write(byte[] buffer, int offset, int count) => Write(buffer.AsSpan(offset, count));

    public override void Flush()
    {
    }

    public override int Read(byte[] buffer, int offset, int count) => throw new NotSupportedException();

    public override long Seek(long offset, SeekOrigin origin) => throw new NotSupportedException();

    public override void SetLength(long value) => throw new NotSupportedException();

    protected override void Dispose(bool disposing)
    {
        if (disposing)
        {
            _entered.Dispose();
        }

        base.Dispose(disposing);
    }

    private static int Differences(byte[] before, ReadOnlySpan<byte> after)
    {
        int changed = 0;
        for (int i = 0; i < before.Length; i++)
        {
            changed += before[i] != after[i] ? 1 : 0;
        }

        return changed;
    }
}
