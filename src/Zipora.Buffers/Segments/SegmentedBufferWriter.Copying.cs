using System;
using System.Buffers;
using System.IO;
using System.Threading;
using System.Threading.Tasks;

namespace Zipora.Buffers;

/// <summary>Copying the unconsumed data out, segment by segment, without consuming it.</summary>
public sealed partial class SegmentedBufferWriter
{
    /// <summary>Copies the unconsumed data to the start of <paramref name="destination"/>.</summary>
    /// <exception cref="ArgumentException"><paramref name="destination"/> is shorter than <see cref="Length"/>.</exception>
    /// <exception cref="ObjectDisposedException">The writer was disposed.</exception>
    public void CopyTo(Span<byte> destination)
    {
        _chain.Enter(TypeName);
        try
        {
            ReadOnlySequence<byte> data = DataUnsynchronized();
            if (data.Length > destination.Length)
            {
                SegmentThrowHelper.ThrowDestinationTooShort(nameof(destination), destination.Length, data.Length);
            }

            data.CopyTo(destination);
        }
        finally
        {
            _chain.Exit();
        }
    }

    /// <summary>Writes the unconsumed data to <paramref name="destination"/>, each segment's memory directly.</summary>
    /// <exception cref="ArgumentNullException"><paramref name="destination"/> is <see langword="null"/>.</exception>
    /// <exception cref="NotSupportedException"><paramref name="destination"/> cannot be written.</exception>
    /// <exception cref="ObjectDisposedException">The writer, or <paramref name="destination"/>, was disposed.</exception>
    public void CopyTo(Stream destination)
    {
        // Checked before anything is written, as CopyToAsync checks it: also when there is nothing to write.
        SegmentThrowHelper.ThrowIfNotWritable(destination);
        _chain.Enter(TypeName);
        try
        {
            DataUnsynchronized().WriteTo(destination);
        }
        finally
        {
            _chain.Exit();
        }
    }

    /// <summary>Writes the unconsumed data to <paramref name="destination"/>, each segment's memory directly.</summary>
    /// <remarks>
    /// The writer keeps its segments until the copy completes, even if it is disposed meanwhile. The arguments and the
    /// writer are checked when called, as <see cref="Stream.CopyToAsync(Stream)"/> checks them: errors are thrown, not
    /// put in the task. A token cancelled before the call gives a cancelled task and writes nothing, as the stream's
    /// <c>CopyToAsync</c> does; one cancelled during the copy stops it before its next segment.
    /// </remarks>
    /// <exception cref="ArgumentNullException"><paramref name="destination"/> is <see langword="null"/>.</exception>
    /// <exception cref="NotSupportedException"><paramref name="destination"/> cannot be written.</exception>
    /// <exception cref="ObjectDisposedException">The writer, or <paramref name="destination"/>, was disposed.</exception>
    /// <exception cref="InvalidOperationException">Another call is running (on another thread, or a copy not awaited yet).</exception>
    public ValueTask CopyToAsync(Stream destination, CancellationToken cancellationToken = default)
    {
        SegmentThrowHelper.ThrowIfNotWritable(destination);
        if (cancellationToken.IsCancellationRequested)
        {
            // Not left to the destination, which may ignore the token (and an empty writer calls it not at all).
            _chain.ThrowIfDisposed(TypeName);
            return ValueTask.FromCanceled(cancellationToken);
        }

        _chain.Enter(TypeName);
        return CopyEnteredToAsync(destination, cancellationToken);
    }

    /// <summary>Writes the unconsumed data into <paramref name="destination"/> (another writer, a <c>PipeWriter</c>).</summary>
    /// <exception cref="ArgumentNullException"><paramref name="destination"/> is <see langword="null"/>.</exception>
    /// <exception cref="ArgumentException"><paramref name="destination"/> is this writer.</exception>
    /// <exception cref="ObjectDisposedException">The writer was disposed.</exception>
    public void CopyTo(IBufferWriter<byte> destination)
    {
        ArgumentNullException.ThrowIfNull(destination);
        if (ReferenceEquals(destination, this))
        {
            SegmentThrowHelper.ThrowCopyIntoItself(nameof(destination));
        }

        _chain.Enter(TypeName);
        try
        {
            foreach (ReadOnlyMemory<byte> memory in DataUnsynchronized())
            {
                // An empty segment (a kept block not written yet, an empty tail) asks the destination for nothing:
                // Write would take a span from it, which a full writer refuses.
                if (!memory.IsEmpty)
                {
                    destination.Write(memory.Span);
                }
            }
        }
        finally
        {
            _chain.Exit();
        }
    }

    /// <summary>The unconsumed data in a new array.</summary>
    /// <exception cref="InvalidOperationException">The data is longer than an array can be.</exception>
    /// <exception cref="ObjectDisposedException">The writer was disposed.</exception>
    public byte[] ToArray()
    {
        _chain.Enter(TypeName);
        try
        {
            return DataUnsynchronized().ToArrayChecked();
        }
        finally
        {
            _chain.Exit();
        }
    }

    /// <summary>The copy of <see cref="CopyToAsync"/>, once it holds the guard, which it lets go of when it completes.</summary>
    private async ValueTask CopyEnteredToAsync(Stream destination, CancellationToken cancellationToken)
    {
        try
        {
            await DataUnsynchronized().WriteToAsync(destination, cancellationToken).ConfigureAwait(false);
        }
        finally
        {
            _chain.Exit();
        }
    }
}
