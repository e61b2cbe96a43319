using System;
using System.Collections.Generic;
using System.Diagnostics.CodeAnalysis;
using System.IO;
using System.Runtime.CompilerServices;
using System.Runtime.ExceptionServices;

namespace Zipora.Buffers;

/// <summary>The throws of the segmented writer and stream, kept out of line so their fast paths stay small.</summary>
internal static class SegmentThrowHelper
{
    /// <summary>Throws as <see cref="Stream.CopyToAsync(Stream)"/> does for a destination it cannot write to.</summary>
    public static void ThrowIfNotWritable(Stream destination, [CallerArgumentExpression(nameof(destination))] string? paramName = null)
    {
        ArgumentNullException.ThrowIfNull(destination, paramName);
        if (!destination.CanWrite)
        {
            ThrowNotWritable(destination, paramName);
        }
    }

    [DoesNotReturn]
    public static void ThrowDisposed(string type) =>
        throw new ObjectDisposedException(type, $"This {type} was disposed: its segments went back to the pool, and it can no longer be used.");

    [DoesNotReturn]
    public static void ThrowPoolDisposed(string type, TieredMemoryPool pool) =>
        throw new ObjectDisposedException(nameof(TieredMemoryPool), $"The pool given as SegmentedBufferOptions.Pool ('{pool.Name}') was disposed: a {type} on it could rent no segment. Give the options a live pool, or none for TieredMemoryPool.Shared.");

    [DoesNotReturn]
    public static void ThrowToArrayAfterDispose(string type) =>
        throw new ObjectDisposedException(type, $"This {type} was disposed: its segments went back to the pool, so ToArray has nothing to copy (unlike MemoryStream's after Close). Take the bytes before disposing it, and give a stream that wraps it and closes it (GZipStream, StreamWriter, BinaryWriter) leaveOpen: true.");

    [DoesNotReturn]
    public static void ThrowDisposedOrConcurrent(string type, bool disposed, bool sameThread)
    {
        if (disposed)
        {
            ThrowDisposed(type);
        }

        // A CopyToAsync holds the guard until it completes: one started and not awaited yet refuses the caller's next
        // call too, on its thread or wherever the caller's code resumed, and that is the likelier cause to name.
        throw new InvalidOperationException(sameThread
            ? $"This {type} was called from inside one of its own calls on this thread (a CopyTo destination, or a callback, that uses it), or before a CopyToAsync started on this thread completed (await it first): the running call holds its segments, so it cannot be entered meanwhile."
            : $"This {type} is used by two threads at once, or called before a CopyToAsync started on another thread completed (await it first); it is not thread-safe (only Dispose may come from any thread).");
    }

    [DoesNotReturn]
    public static void ThrowOwnersFailedToDispose(Exception firstError, List<Exception>? laterErrors, int unrecorded)
    {
        if (laterErrors is null && unrecorded == 0)
        {
            ExceptionDispatchInfo.Throw(firstError);
        }

        AggregateException together;
        try
        {
            List<Exception> errors = [firstError, .. laterErrors ?? []];
            string message = unrecorded == 0
                ? "Owners of several segments threw on dispose; every other segment was given back."
                : $"Owners of several segments threw on dispose; every other segment was given back. {unrecorded} more threw while managed memory ran out, and their exceptions could not be kept.";
            together = new AggregateException(message, errors);
        }
        catch (OutOfMemoryException)
        {
            // Out of managed memory for the whole list: the first owner's error, which needs none, rather than none.
            ExceptionDispatchInfo.Throw(firstError);
            throw;
        }

        throw together;
    }

    /// <summary>An option of <see cref="SegmentedBufferOptions"/> out of range: named as the parameter, with what it must be.</summary>
    [DoesNotReturn]
    public static void ThrowOptionOutOfRange(string option, long value, string mustBe) =>
        throw new ArgumentOutOfRangeException(option, value, $"SegmentedBufferOptions.{option} must be {mustBe}.");

    [DoesNotReturn]
    public static void ThrowNegative(string parameter, long value) =>
        throw new ArgumentOutOfRangeException(parameter, value, $"{parameter} must not be negative.");

    [DoesNotReturn]
    public static void ThrowSizeHintTooLarge(int sizeHint, int maxBufferSize) =>
        throw new ArgumentOutOfRangeException(nameof(sizeHint), sizeHint, $"sizeHint asks for one buffer larger than the pool's MaxBufferSize ({maxBufferSize}); ask for less and write in parts.");

    [DoesNotReturn]
    public static void ThrowWriterFull(long length, long maxLength, int needed) =>
        throw new InvalidOperationException($"The writer holds {length} bytes of its MaxLength ({maxLength}): {needed} more do not fit. Consume or reset it, or raise SegmentedBufferOptions.MaxLength.");

    [DoesNotReturn]
    public static void ThrowAdvancePastMemory(int count, int given) =>
        throw new ArgumentOutOfRangeException(nameof(count), count, $"Advance(count) must be from 0 to the length of the memory GetMemory or GetSpan last gave ({given}).");

    [DoesNotReturn]
    public static void ThrowConsumePastLength(long count, long length) =>
        throw new ArgumentOutOfRangeException(nameof(count), count, $"Consume(count) must be from 0 to the bytes written and not yet consumed ({length}).");

    [DoesNotReturn]
    public static void ThrowForeignPosition(string paramName) =>
        throw new ArgumentOutOfRangeException(paramName, "The position is not in this writer's unconsumed data: take it from the sequence GetReadOnlySequence returned since the last Consume, AdvanceTo or Reset.");

    [DoesNotReturn]
    public static void ThrowDestinationTooShort(string paramName, int destinationLength, long length) =>
        throw new ArgumentException($"The destination ({destinationLength} bytes) is shorter than the data ({length} bytes).", paramName);

    [DoesNotReturn]
    public static void ThrowCopyIntoItself(string paramName) =>
        throw new ArgumentException("A writer cannot be copied into itself.", paramName);

    [DoesNotReturn]
    public static void ThrowTooLongForArray(long length) =>
        throw new InvalidOperationException($"The data ({length} bytes) is longer than the longest array ({Array.MaxLength} bytes); copy it to a stream or a span instead.");

    [DoesNotReturn]
    public static void ThrowPoolGaveTooLittle(int size) =>
        throw new InvalidOperationException($"The pool returned a buffer shorter than the {size} bytes asked for: it breaks the MemoryPool<byte>.Rent contract.");

    [DoesNotReturn]
    public static void ThrowStreamTooLong(long position, int count, long maxLength) =>
        throw new IOException($"Writing {count} bytes at position {position} would take the stream past its MaxLength ({maxLength} bytes).");

    [DoesNotReturn]
    public static void ThrowSeekBeforeBegin() =>
        throw new IOException("An attempt was made to move the position before the beginning of the stream.");

    [DoesNotReturn]
    public static void ThrowSeekOverflow(long offset) =>
        throw new ArgumentOutOfRangeException(nameof(offset), offset, "The position would overflow a long.");

    [DoesNotReturn]
    public static void ThrowInvalidOrigin(System.IO.SeekOrigin origin) =>
        throw new ArgumentException($"{origin} is not a SeekOrigin.", nameof(origin));

    [DoesNotReturn]
    public static void ThrowLengthOutOfRange(long value, long maxLength) =>
        throw new ArgumentOutOfRangeException(nameof(value), value, $"The length must be from 0 to the stream's MaxLength ({maxLength}).");

    [DoesNotReturn]
    private static void ThrowNotWritable(Stream destination, string? paramName)
    {
        // A stream that can neither read nor write was disposed, as Stream's own checks take it.
        if (!destination.CanRead)
        {
            throw new ObjectDisposedException(destination.GetType().Name, $"The destination stream ({paramName}) was disposed.");
        }

        throw new NotSupportedException($"The destination stream ({paramName}) cannot be written to.");
    }
}
