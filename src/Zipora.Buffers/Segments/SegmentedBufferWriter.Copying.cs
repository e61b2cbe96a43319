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
        ReadOnlySequence<byte> data = GetReadOnlySequence();
        if (data.Length > destination.Length)
        {
            SegmentThrowHelper.ThrowDestinationTooShort(nameof(destination), destination.Length, data.Length);
        }

        data.CopyTo(destination);
    }

    /// <summary>Writes the unconsumed data to <paramref name="destination"/>, each segment's memory directly.</summary>
    /// <exception cref="ArgumentNullException"><paramref name="destination"/> is <see langword="null"/>.</exception>
    /// <exception cref="ObjectDisposedException">The writer was disposed.</exception>
    public void CopyTo(Stream destination)
    {
        ArgumentNullException.ThrowIfNull(destination);
        foreach (ReadOnlyMemory<byte> memory in GetReadOnlySequence())
        {
            destination.Write(memory.Span);
        }
    }

    /// <summary>Writes the unconsumed data to <paramref name="destination"/>, each segment's memory directly.</summary>
    /// <exception cref="ArgumentNullException"><paramref name="destination"/> is <see langword="null"/>.</exception>
    /// <exception cref="ObjectDisposedException">The writer was disposed.</exception>
    public async ValueTask CopyToAsync(Stream destination, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(destination);
        foreach (ReadOnlyMemory<byte> memory in GetReadOnlySequence())
        {
            await destination.WriteAsync(memory, cancellationToken).ConfigureAwait(false);
        }
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

        foreach (ReadOnlyMemory<byte> memory in GetReadOnlySequence())
        {
            destination.Write(memory.Span);
        }
    }

    /// <summary>The unconsumed data in a new array.</summary>
    /// <exception cref="InvalidOperationException">The data is longer than an array can be.</exception>
    /// <exception cref="ObjectDisposedException">The writer was disposed.</exception>
    public byte[] ToArray()
    {
        ReadOnlySequence<byte> data = GetReadOnlySequence();
        if (data.Length > Array.MaxLength)
        {
            SegmentThrowHelper.ThrowTooLongForArray(data.Length);
        }

        if (data.IsEmpty)
        {
            return [];
        }

        byte[] array = GC.AllocateUninitializedArray<byte>((int)data.Length);
        data.CopyTo(array);
        return array;
    }
}
