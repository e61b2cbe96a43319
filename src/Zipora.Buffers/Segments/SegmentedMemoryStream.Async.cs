using System;
using System.Buffers;
using System.Diagnostics.CodeAnalysis;
using System.IO;
using System.Threading;
using System.Threading.Tasks;

namespace Zipora.Buffers;

/// <summary>
/// The asynchronous members, and copying out. The data is in memory, so every operation completes at once; a
/// cancelled token gives a cancelled task and an error a faulted one, as <see cref="MemoryStream"/>'s do.
/// </summary>
public sealed partial class SegmentedMemoryStream
{
    /// <inheritdoc cref="Read(Span{byte})" />
    [SuppressMessage("ApiDesign", "RS0027:API with optional parameter(s) should have the most parameters amongst its public overloads", Justification = "Stream's own overloads, overridden: their shape is Stream's.")]
    public override ValueTask<int> ReadAsync(Memory<byte> buffer, CancellationToken cancellationToken = default)
    {
        if (cancellationToken.IsCancellationRequested)
        {
            return ValueTask.FromCanceled<int>(cancellationToken);
        }

        try
        {
            return new ValueTask<int>(Read(buffer.Span));
        }
        catch (Exception exception)
        {
            // The asynchronous contract: the error travels in the task.
            return ValueTask.FromException<int>(exception);
        }
    }

    /// <inheritdoc cref="Read(byte[], int, int)" />
    public override Task<int> ReadAsync(byte[] buffer, int offset, int count, CancellationToken cancellationToken)
    {
        ValidateBufferArguments(buffer, offset, count);
        return ReadAsync(buffer.AsMemory(offset, count), cancellationToken).AsTask();
    }

    /// <inheritdoc cref="Write(ReadOnlySpan{byte})" />
    [SuppressMessage("ApiDesign", "RS0027:API with optional parameter(s) should have the most parameters amongst its public overloads", Justification = "Stream's own overloads, overridden: their shape is Stream's.")]
    public override ValueTask WriteAsync(ReadOnlyMemory<byte> buffer, CancellationToken cancellationToken = default)
    {
        if (cancellationToken.IsCancellationRequested)
        {
            return ValueTask.FromCanceled(cancellationToken);
        }

        try
        {
            Write(buffer.Span);
            return ValueTask.CompletedTask;
        }
        catch (Exception exception)
        {
            // The asynchronous contract: the error travels in the task.
            return ValueTask.FromException(exception);
        }
    }

    /// <inheritdoc cref="Write(byte[], int, int)" />
    public override Task WriteAsync(byte[] buffer, int offset, int count, CancellationToken cancellationToken)
    {
        ValidateBufferArguments(buffer, offset, count);
        return WriteAsync(buffer.AsMemory(offset, count), cancellationToken).AsTask();
    }

    /// <summary>Does nothing, or gives a cancelled task for a cancelled token.</summary>
    public override Task FlushAsync(CancellationToken cancellationToken) =>
        cancellationToken.IsCancellationRequested ? Task.FromCanceled(cancellationToken) : Task.CompletedTask;

    /// <summary>Writes the bytes from the position to the end to <paramref name="destination"/>, each segment's memory directly; the position moves to the end.</summary>
    /// <param name="destination">The stream to write to.</param>
    /// <param name="bufferSize">Checked as <see cref="Stream"/> checks it (it must be positive), but unused: each segment is written whole.</param>
    /// <exception cref="ArgumentNullException"><paramref name="destination"/> is <see langword="null"/>.</exception>
    /// <exception cref="ArgumentOutOfRangeException"><paramref name="bufferSize"/> is zero or negative.</exception>
    /// <exception cref="NotSupportedException"><paramref name="destination"/> cannot be written.</exception>
    /// <exception cref="ObjectDisposedException">This stream or <paramref name="destination"/> was disposed.</exception>
    public override void CopyTo(Stream destination, int bufferSize)
    {
        ValidateCopyToArguments(destination, bufferSize);
        if (ReferenceEquals(destination, this))
        {
            AppendRestToItself();
            return;
        }

        _chain.Enter(TypeName);
        try
        {
            ReadOnlySequence<byte> rest = RestUnsynchronized(out long position);
            rest.WriteTo(destination);

            // Moved once the copy succeeded: a destination that throws leaves the position where it was. Written from
            // the position read once: the destination's code may have moved the field (its setter takes no guard),
            // and adding to it again took it anywhere, past long.MaxValue to a negative position.
            _position = position + rest.Length;
        }
        finally
        {
            _chain.Exit();
        }
    }

    /// <inheritdoc cref="CopyTo(Stream, int)" />
    /// <remarks>The stream keeps its segments until the copy completes, even if it is disposed meanwhile.</remarks>
    public override Task CopyToAsync(Stream destination, int bufferSize, CancellationToken cancellationToken)
    {
        ValidateCopyToArguments(destination, bufferSize);
        if (cancellationToken.IsCancellationRequested)
        {
            _chain.ThrowIfDisposed(TypeName);
            return Task.FromCanceled(cancellationToken);
        }

        if (ReferenceEquals(destination, this))
        {
            try
            {
                AppendRestToItself();
                return Task.CompletedTask;
            }
            catch (Exception exception)
            {
                // The asynchronous contract: the error travels in the task.
                return Task.FromException(exception);
            }
        }

        _chain.Enter(TypeName);
        ReadOnlySequence<byte> rest = RestUnsynchronized(out long position);
        return CopyToAsyncCore(rest, position + rest.Length, destination, cancellationToken);
    }

    /// <summary>
    /// Writes the whole contents to <paramref name="stream"/>, each segment's memory directly, whatever the position
    /// (which does not move). Written to this stream itself, the contents are written at its position, as
    /// MemoryStream's are (through a copy, since the write may grow the segments being read).
    /// </summary>
    /// <exception cref="ArgumentNullException"><paramref name="stream"/> is <see langword="null"/>.</exception>
    /// <exception cref="NotSupportedException"><paramref name="stream"/> cannot be written.</exception>
    /// <exception cref="InvalidOperationException">Written to itself, the stream is longer than an array can be (the copy is one).</exception>
    /// <exception cref="ObjectDisposedException">This stream, or <paramref name="stream"/>, was disposed.</exception>
    public void WriteTo(Stream stream)
    {
        // Checked before anything is written, as CopyTo checks its destination: also when there is nothing to write.
        SegmentThrowHelper.ThrowIfNotWritable(stream);
        if (ReferenceEquals(stream, this))
        {
            _chain.ThrowIfDisposed(TypeName);
            Write(ToArray());
            return;
        }

        _chain.Enter(TypeName);
        try
        {
            ContentsUnsynchronized().WriteTo(stream);
        }
        finally
        {
            _chain.Exit();
        }
    }

    /// <summary>
    /// Writes <paramref name="rest"/> out and moves the position to <paramref name="end"/> (the position read once plus
    /// the bytes copied, see <see cref="CopyTo(Stream, int)"/>), then gives the guard the caller took back (doing a
    /// dispose that came meanwhile).
    /// </summary>
    private async Task CopyToAsyncCore(ReadOnlySequence<byte> rest, long end, Stream destination, CancellationToken cancellationToken)
    {
        try
        {
            await rest.WriteToAsync(destination, cancellationToken).ConfigureAwait(false);
            _position = end;
        }
        finally
        {
            _chain.Exit();
        }
    }

    /// <summary>
    /// The bytes from the position (read once, into <paramref name="position"/>) to the end, which the caller moves the
    /// position past once they are copied; the caller holds the guard.
    /// </summary>
    private ReadOnlySequence<byte> RestUnsynchronized(out long position)
    {
        ReadOnlySequence<byte> contents = ContentsUnsynchronized();
        position = _position;
        return position >= contents.Length ? ReadOnlySequence<byte>.Empty : contents.Slice(position);
    }

    /// <summary>
    /// <c>CopyTo</c> with this stream as its destination, as MemoryStream does it: the bytes from the position to the end
    /// are appended after the end, through a copy (writing them grows the very segments they are read from), and the
    /// position ends after them; nothing is written when there are none (a write of nothing past the end would fill
    /// the gap with zeros). A write that fails (past <see cref="MaxLength"/>, out of memory) leaves the stream as it
    /// was, its position included, as every failed write does.
    /// </summary>
    private void AppendRestToItself()
    {
        _chain.EnterForOwnWork(TypeName);
        try
        {
            ReadOnlySequence<byte> rest = RestUnsynchronized(out long position);
            if (rest.IsEmpty)
            {
                return;
            }

            byte[] copy = rest.ToArrayChecked();
            _position = _chain.EndIndex;
            try
            {
                WriteSlowUnsynchronized(copy, _chain.EndIndex);
            }
            catch
            {
                _position = position;
                throw;
            }
        }
        finally
        {
            _chain.Exit();
        }
    }
}
