using System;
using System.Buffers;
using System.IO;
using System.Threading;
using System.Threading.Tasks;

namespace Zipora.Buffers;

/// <summary>Copying a segmented buffer's contents out: into one array, or to a stream one segment at a time.</summary>
/// <remarks>The callers hold their buffer's guard for as long as a copy runs, an asynchronous one too.</remarks>
internal static class SequenceCopies
{
    /// <summary>The bytes of <paramref name="contents"/> in a new array.</summary>
    /// <exception cref="InvalidOperationException">They are more than an array can hold.</exception>
    public static byte[] ToArrayChecked(this ReadOnlySequence<byte> contents)
    {
        if (contents.Length > Array.MaxLength)
        {
            SegmentThrowHelper.ThrowTooLongForArray(contents.Length);
        }

        if (contents.IsEmpty)
        {
            return [];
        }

        byte[] array = GC.AllocateUninitializedArray<byte>((int)contents.Length);
        contents.CopyTo(array);
        return array;
    }

    /// <summary>Writes each segment's memory of <paramref name="contents"/> to <paramref name="destination"/>, with no copy between.</summary>
    public static void WriteTo(this ReadOnlySequence<byte> contents, Stream destination)
    {
        foreach (ReadOnlyMemory<byte> memory in contents)
        {
            // An empty segment (a kept block not written yet, an empty tail) makes no write.
            if (!memory.IsEmpty)
            {
                destination.Write(memory.Span);
            }
        }
    }

    /// <inheritdoc cref="WriteTo" />
    public static async ValueTask WriteToAsync(this ReadOnlySequence<byte> contents, Stream destination, CancellationToken cancellationToken)
    {
        foreach (ReadOnlyMemory<byte> memory in contents)
        {
            if (!memory.IsEmpty)
            {
                // Checked here too, not only by the destination, which may ignore the token: a cancelled copy stops
                // before its next segment, as Stream.CopyToAsync stops before its next read.
                cancellationToken.ThrowIfCancellationRequested();
                await destination.WriteAsync(memory, cancellationToken).ConfigureAwait(false);
            }
        }
    }
}
