using System;
using System.Buffers;
using System.Diagnostics.CodeAnalysis;

namespace Zipora.Buffers;

/// <summary>Throws for the uncommon paths, kept out of line so the rent and return fast paths stay small enough to inline.</summary>
internal static class ThrowHelper
{
    [DoesNotReturn]
    public static void ThrowRentSizeOutOfRange(int minBufferSize, int maxBufferSize) =>
        throw new ArgumentOutOfRangeException(nameof(minBufferSize), minBufferSize, $"A buffer size must be -1 (the default size) or from 0 to MaxBufferSize ({maxBufferSize}).");

    [DoesNotReturn]
    public static void ThrowPoolDisposed() =>
        throw new ObjectDisposedException(nameof(TieredMemoryPool), "The pool was disposed: it rents no more buffers (buffers still rented stay valid until disposed).");

    [DoesNotReturn]
    public static void ThrowOwnerDisposed() =>
        throw new ObjectDisposedException(nameof(IMemoryOwner<byte>), "This buffer's owner was disposed: its memory went back to the pool, and neither the owner nor a Memory<byte> taken from it may be used again.");

    [DoesNotReturn]
    public static void ThrowViewDisposed(string owner) =>
        throw new ObjectDisposedException(nameof(System.Buffers.MemoryPool<byte>), $"This pool (a view of the shared TieredMemoryPool for '{owner}') was disposed: it rents no more buffers. Buffers rented through it may still be disposed.");

    [DoesNotReturn]
    public static void ThrowPinIndexOutOfRange(int elementIndex) =>
        throw new ArgumentOutOfRangeException(nameof(elementIndex), elementIndex, "The index to pin must be from 0 to the buffer's length.");

    [DoesNotReturn]
    public static void ThrowRentInsidePageDrop(string tier) =>
        throw new InsufficientMemoryException($"A rent of the {tier} tier on the thread of its trim, from inside the page allocator dropping its pages, is refused: its block could lie on the pages being dropped.");

    [DoesNotReturn]
    public static void ThrowOutOfMemory(long bytes, string tier, PageSource pages, long limitRefusalsBefore)
    {
        // The limit's refusal when it refused during the rent (another thread's refusal meanwhile reads the same: rare,
        // and the limit is then where the pool is), or when it still would.
        if (pages.LimitRefusals != limitRefusalsBefore || pages.WouldExceedLimit(bytes))
        {
            throw new InsufficientMemoryException(LimitMessage(bytes, tier, pages));
        }

        throw new InsufficientMemoryException($"The OS refused {bytes} bytes for the {tier} tier, even after the pool released its cached memory.");
    }

    /// <summary>
    /// Names what holds the pool at its limit. Memory let go of whose pages could not be dropped (pinned arrays, which
    /// <c>AddTieredMemoryPool</c> turns on, or locked pages) counts until its unmap a delay later: said apart, since it is
    /// neither in use nor cached, and before, the message called it "in use or cached" with nothing rented at all.
    /// </summary>
    private static string LimitMessage(long bytes, string tier, PageSource pages)
    {
        long awaiting = pages.WaitingUnmaps?.CountedBytes ?? 0;
        string held = awaiting == 0
            ? $"{pages.MappedBytes} in use or cached after releasing idle memory"
            : $"{pages.MappedBytes} held after releasing idle memory, of which {awaiting} were let go of but could not be dropped (pinned arrays or locked pages) and count until their unmap, one IdleReleaseDelay after their return";
        return $"Renting {bytes} more bytes for the {tier} tier would take the pool past TieredMemoryPoolOptions.MaxBytesInUse ({pages.Limit} bytes; {held}).";
    }

    [DoesNotReturn]
    public static void ThrowRentLengthNegative(int minimumLength) =>
        throw new ArgumentOutOfRangeException(nameof(minimumLength), minimumLength, "An array length must not be negative.");

    [DoesNotReturn]
    public static void ThrowReturnedArrayNull(byte[]? array) =>
        throw new ArgumentNullException(nameof(array), "Return takes the array Rent handed out, not null.");

    [DoesNotReturn]
    public static void ThrowArrayNotFromPool(byte[] array) =>
        throw new ArgumentException($"The array's length ({array.Length}) is not one of the pool's size classes: it was not rented from this pool.", nameof(array));
}
