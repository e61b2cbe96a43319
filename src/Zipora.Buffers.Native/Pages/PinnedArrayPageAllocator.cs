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
/// No hugepages and no hints: an unmapped range goes back to the GC, its whole pages to the OS at once on Linux (see
/// DropPages). A pinned array is freed by the next gen2 collection, but the GC keeps the pinned heap's emptied memory
/// committed (a forced gen2 collection gave back 30 of 200 freed megabytes in a measurement); only an aggressive
/// collection decommits it, and only regions no live object is left in. The bytes unmapped are counted, so the pool
/// can ask for one when enough has been let go of (see <see cref="UnmappedBytes"/>). Not sealed:
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

    // The GC's heap on hugetlb pages (GCLargePages, with a hard limit): a drop gives the huge pages back to the
    // kernel's reserve, and a stale Span's write then needs a free one again; where none is left, a kernel may answer
    // the fault with SIGBUS (6.18 here restores the reservation; older ones were not tried). Such a heap is committed
    // up front anyway, so there is nothing to give back early: its arrays are left to the collection. Read when the
    // allocator is made, with room: the first unmap may come at the GC heap limit, where reading the settings (a
    // dictionary) in a static initializer would break the type for good.
    private readonly bool _gcUsesLargePages =
        GC.GetConfigurationVariables().TryGetValue("GCLargePages", out object? largePages) && largePages is true;

    // Bytes of let-go arrays whose pages were dropped at their unmap (see DropPages).
    private long _droppedBytes;

    // The elements' first bytes the GC writes once it frees an array (the free object's length and free-list links,
    // past the array's own header), kept with their page.
    private const nuint FreeObjectBytes = 32;

    public PinnedArrayPageAllocator()
    {
        // The list's searches go through the runtime's sort helper of nint, whose statics are made at its first use:
        // made here, with room, not by a first mapping or unmap at the GC heap limit, where a type initializer that
        // fails leaves the type broken for good (every later mapping and unmap would throw).
        _ = _arrays.IndexOfKey(0);
    }

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
        (byte[] Array, int Offset) mapping;
        lock (_lock)
        {
            if (!_arrays.TryGetValue(address, out mapping))
            {
                return false;
            }
        }

        // Dropped while still listed: the caller holds the mapping alone (let go of, off every list of the pool), and a
        // drop that throws (a first call at the GC heap limit) leaves it unmapped by nothing, as Unmap's contract asks,
        // for the pool to take as a refusal and try again. Taken off the list first, the array was left to the GC while
        // the pool kept the mapping listed, and handed its range out again with no array behind it
        // (PinnedPageDropFailureSafetyTests).
        DropPages(mapping.Array);
        lock (_lock)
        {
            _ = _arrays.Remove(address);
            _unmappedBytes += mapping.Array.Length;
        }

        return true;
    }

    /// <summary>
    /// Gives the whole pages inside an array let go of back to the OS now, on Linux (<c>MADV_DONTNEED</c>), rather than
    /// leave them to the GC, which returns the pinned heap's emptied memory only region by region: one live object left
    /// in a region (a block still rented from a slab array, a runtime statics array, a stale span's array) keeps the
    /// whole region committed, since the pinned heap is never compacted, and an aggressive collection asked for while
    /// part of a burst was still out kept the rest for its rest. Measured in a 512 MB cgroup after Kestrel's burst
    /// (KestrelBurstContainerTests), the pool holding 1.6 MB: 221 MB of pinned heap committed with 219 MB of it free.
    /// </summary>
    /// <remarks>
    /// Safe for the GC: its pages are private anonymous memory, read back as zeros once dropped, and the GC never reads
    /// a byte array's elements; the array's header and the first bytes of its elements (where the GC writes the free
    /// object's header and its free-list links once it frees the array) and the next object's header, in the pages at
    /// either end, are kept. A stale <c>Span</c> or handle over the array, which keeps it alive, reads zeros where it
    /// read the old bytes, and its writes fault fresh pages in; nothing else is given that memory while it lives.
    /// A refusal (locked pages) leaves the array to the collection, as before.
    /// </remarks>
    private void DropPages(byte[] array)
    {
        if (!OperatingSystem.IsLinux() || _gcUsesLargePages)
        {
            return;
        }

        nuint page = (nuint)Environment.SystemPageSize;
        nuint data = (nuint)Unsafe.AsPointer(ref MemoryMarshal.GetArrayDataReference(array));
        nuint first = (data + FreeObjectBytes + page - 1) & ~(page - 1);
        nuint end = (data + (nuint)array.Length) & ~(page - 1);
        if (end > first && DropWholePages((nint)first, end - first))
        {
            _ = Interlocked.Add(ref _droppedBytes, (long)(end - first));
        }

        // Pinned, and alive until here: its pages are not yet the GC's to reuse.
        GC.KeepAlive(array);
    }

    /// <summary>
    /// Gives whole pages inside an array let go of back to the OS (<c>MADV_DONTNEED</c>); whether the kernel took them.
    /// Virtual for the tests, which make it throw as a first call can at the GC heap limit.
    /// </summary>
    protected virtual bool DropWholePages(nint address, nuint length) => Libc.Madvise(address, length, Libc.MadvDontNeed) == 0;

    /// <summary>Bytes of let-go arrays whose pages went back to the OS at their unmap (tests).</summary>
    internal long DroppedBytes => Interlocked.Read(ref _droppedBytes);

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
