using System;
using System.Collections.Generic;
using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
using System.Threading;

namespace Zipora.Buffers.Native;

/// <summary>
/// "Pages" that are byte arrays on the pinned object heap. Their addresses never change, so they serve like native
/// pages, and every block in them can also be seen as an <see cref="ArraySegment{T}"/>, which some consumers demand:
/// Kestrel's socket transport sends multi-segment responses through <c>SocketAsyncEventArgs.BufferList</c> and
/// throws unless every segment is array-backed.
/// </summary>
/// <remarks>
/// No hugepages and no hints: an unmapped range goes back to the GC. A pinned array is freed by the next gen2
/// collection, but the GC keeps the pinned heap's emptied memory committed (a forced gen2 collection gave back 30 of
/// 200 freed megabytes in a measurement); only an aggressive collection returns it to the OS. The bytes unmapped are
/// counted, so the pool can ask for one when enough has been let go of (see <see cref="UnmappedBytes"/>). Not sealed:
/// the tests hold an unmap halfway (a thread preempted in it) by deriving from it, since the pool tells pinned arrays
/// from other memory by this type.
/// </remarks>
internal unsafe class PinnedArrayPageAllocator : PageAllocator
{
    private readonly Lock _lock = new();

    // The arrays by the aligned start handed out, which keeps them alive until unmapped.
    private readonly SortedList<nint, (byte[] Array, int Offset)> _arrays = [];

    // Bytes of arrays let go of since the pool last took the figure.
    private long _unmappedBytes;

    public override string Name => "pinned-arrays";

    public override bool TryGetBackingArray(nint address, out byte[]? array, out int offset)
    {
        lock (_lock)
        {
            // The mapping holding the address is the one with the greatest start at or below it.
            IList<nint> starts = _arrays.Keys;
            int low = 0;
            int high = starts.Count - 1;
            while (low <= high)
            {
                int middle = (low + high) >>> 1;
                if (starts[middle] <= address)
                {
                    low = middle + 1;
                }
                else
                {
                    high = middle - 1;
                }
            }

            if (high >= 0)
            {
                (byte[] candidate, int start) = _arrays.Values[high];
                long within = start + (long)(address - starts[high]);
                if (within < candidate.Length)
                {
                    array = candidate;
                    offset = (int)within;
                    return true;
                }
            }
        }

        array = null;
        offset = 0;
        return false;
    }

    protected override bool TryMapCore(nuint length, nuint alignment, PageKind kind, out nint address)
    {
        address = 0;
        // A length near the top of the address space wraps the sum past zero: sized from it, the array was empty and
        // the whole length was reported mapped over it.
        nuint padded = length + alignment - 1;
        if (kind != PageKind.Normal || padded < length || padded > (nuint)Array.MaxLength)
        {
            return false;
        }

        byte[] array;
        try
        {
            array = GC.AllocateUninitializedArray<byte>((int)padded, pinned: true);
        }
        catch (OutOfMemoryException)
        {
            // The contract here is a false return, so the pool can fall back or report it.
            return false;
        }

        // Pinned: the address of element 0 is fixed for the array's lifetime.
        nint start = (nint)Unsafe.AsPointer(ref MemoryMarshal.GetArrayDataReference(array));
        address = (nint)(((nuint)start + alignment - 1) & ~(alignment - 1));
        lock (_lock)
        {
            _arrays.Add(address, (array, (int)(address - start)));
        }

        return true;
    }

    public override bool Unmap(nint address, nuint length)
    {
        lock (_lock)
        {
            if (!_arrays.Remove(address, out (byte[] Array, int Offset) released))
            {
                return false;
            }

            _unmappedBytes += released.Array.Length;
            return true;
        }
    }

    /// <summary>Bytes of arrays unmapped (left to the GC) since the count was last reset.</summary>
    internal long UnmappedBytes
    {
        get
        {
            lock (_lock)
            {
                return _unmappedBytes;
            }
        }
    }

    /// <summary>Starts the count of unmapped bytes over (a collection has returned them).</summary>
    internal void ResetUnmappedBytes()
    {
        lock (_lock)
        {
            _unmappedBytes = 0;
        }
    }

    public override bool TryAdvise(nint address, nuint length, PageAdvice advice) => false;

    public override bool TryProtect(nint address, nuint length, PageProtection protection) => false;
}
