using System;
using System.Runtime.InteropServices;

namespace Zipora.Buffers.Native;

/// <summary>
/// Maps and unmaps whole pages from the operating system: <c>mmap</c> on Linux and macOS, <c>VirtualAlloc</c> on
/// Windows, and <see cref="NativeMemory.AlignedAlloc(nuint, nuint)"/> everywhere else.
/// </summary>
/// <remarks>
/// Every method reports a refusal by the OS (out of memory, no reserved hugepages, an unsupported hint) by returning
/// <see langword="false"/>, never by throwing, so callers can fall back to the next backend. Subclass it to inject
/// failures in tests.
/// </remarks>
public abstract class PageAllocator
{
    /// <summary>Creates an allocator.</summary>
    protected PageAllocator()
    {
    }

    /// <summary>The best allocator for this platform: virtual memory pages where the OS offers them, else <see cref="Portable"/>.</summary>
    public static PageAllocator Default { get; } = CreatePlatformAllocator();

    /// <summary>
    /// Byte arrays on the pinned object heap: every block is also an array segment, as Kestrel's socket transport
    /// needs for multi-segment sends. No hugepages, no hints; unmapped ranges go back to the GC.
    /// </summary>
    public static PageAllocator PinnedArrays { get; } = new PinnedArrayPageAllocator();

    /// <summary>Aligned heap allocation through <see cref="NativeMemory.AlignedAlloc(nuint, nuint)"/>: no hugepages, no hints.</summary>
    public static PageAllocator Portable { get; } = new PortablePageAllocator();

    private const nuint HugeTlb2MBSize = 2 * 1024 * 1024;
    private const nuint HugeTlb1GBSize = 1024 * 1024 * 1024;

    /// <summary>The size of a base page.</summary>
    public static nuint PageSize { get; } = (nuint)Environment.SystemPageSize;

    /// <summary>Short name of the backend, for statistics and logs.</summary>
    public abstract string Name { get; }

    /// <summary>Whether <see cref="TryMap"/> can return reserved hugepages.</summary>
    public virtual bool SupportsHugeTlb => false;

    /// <summary>Whether <see cref="TryAdvise"/> can act at all (false for heap allocation).</summary>
    public virtual bool SupportsAdvice => false;

    /// <summary>Maps <paramref name="length"/> bytes of readable and writable memory (zeroed by the virtual memory backends, not by <see cref="Portable"/>).</summary>
    /// <param name="length">Bytes to map, more than zero: a multiple of <see cref="PageSize"/> (of the hugepage size for hugetlb kinds).</param>
    /// <param name="alignment">Alignment of the start address: a power of two (for hugetlb kinds, promised up to their page size only).</param>
    /// <param name="kind">The pages to back the range with.</param>
    /// <param name="address">The start of the mapping, or zero when the OS refused.</param>
    /// <returns>Whether the memory was mapped.</returns>
    /// <exception cref="ArgumentOutOfRangeException"><paramref name="length"/> is zero, <paramref name="alignment"/> is not a power of two, or <paramref name="kind"/> is not defined.</exception>
    /// <exception cref="InvalidOperationException">
    /// A subclass's <see cref="TryMapCore"/> reported success at address zero, or at an address that is not a multiple
    /// of <paramref name="alignment"/> (of the page size, for a larger alignment of a hugetlb kind); the message names
    /// the subclass. A misplaced mapping was given to
    /// <see cref="Unmap"/> first.
    /// </exception>
    public bool TryMap(nuint length, nuint alignment, PageKind kind, out nint address)
    {
        ArgumentOutOfRangeException.ThrowIfZero(length);
        if (!nuint.IsPow2(alignment))
        {
            throw new ArgumentOutOfRangeException(nameof(alignment), alignment, "The alignment must be a power of two.");
        }

        // Not Enum.IsDefined: it may make the type's reflection cache again after a collection, and a map must not
        // allocate where the process may be out of managed memory (the pool maps when its caches are empty).
        if ((uint)kind > (uint)PageKind.HugeTlb1GB)
        {
            throw new ArgumentOutOfRangeException(nameof(kind), kind, "Unknown page kind.");
        }

        bool mapped = TryMapCore(length, alignment, kind, out address);

        // The two things a caller cannot check for itself and cannot survive are checked here, for a subclass's own
        // TryMapCore: a success at address zero (the first write through it faults and ends the process) and a
        // mapping off the alignment asked for (a slab's blocks, a hugepage region and a guard page are placed by it,
        // and every later hint and unmap would target the wrong pages). One compare each, on a path that just made a
        // system call. A range overlapping another live mapping cannot be checked this cheaply: that stays the
        // subclass's contract (see TryMapCore).
        // A hugetlb mapping starts on a boundary of its own page size, and no further is promised (the kernel places
        // it so, and the pool asks no more).
        nuint promised = kind switch
        {
            PageKind.HugeTlb2MB => Math.Min(alignment, HugeTlb2MBSize),
            PageKind.HugeTlb1GB => Math.Min(alignment, HugeTlb1GBSize),
            _ => alignment,
        };
        if (mapped && (address == 0 || ((nuint)address & (promised - 1)) != 0))
        {
            RefuseMisplacedMapping(length, promised, address);
        }

        return mapped;
    }

    /// <summary>
    /// Gives a misplaced mapping back through <see cref="Unmap"/> (there is nothing to give back at zero), then throws
    /// naming the subclass: the mapping is never handed to the caller, so nothing leaks and nothing is written to it.
    /// </summary>
    [System.Diagnostics.CodeAnalysis.DoesNotReturn]
    private void RefuseMisplacedMapping(nuint length, nuint alignment, nint address)
    {
        Exception? unmapFailure = null;
        bool givenBack = false;
        if (address != 0)
        {
            try
            {
                givenBack = Unmap(address, length);
            }
            catch (Exception error)
            {
                // Kept as the inner exception: the refusal of the mapping is what the caller must see.
                unmapFailure = error;
            }
        }

        ThrowHelper.ThrowMisplacedMapping(GetType(), length, alignment, address, givenBack, unmapFailure);
    }

    /// <summary>Maps pages once <see cref="TryMap"/> has checked the arguments; reports a refusal by the OS with <see langword="false"/>.</summary>
    /// <remarks>
    /// A success must give a nonzero address that is a multiple of <paramref name="alignment"/>, or of the page size of a
    /// hugetlb <paramref name="kind"/> when that is smaller (<see cref="TryMap"/>
    /// refuses any other with <see cref="InvalidOperationException"/>), at the start of at least
    /// <paramref name="length"/> bytes of readable and writable memory that no other live mapping of this allocator
    /// overlaps, until <see cref="Unmap"/> gives it back. The callers cannot check the length or the overlap: memory
    /// shorter than asked, or handed out twice, is written by two owners.
    /// </remarks>
    /// <param name="length">Bytes to map, more than zero.</param>
    /// <param name="alignment">A power of two.</param>
    /// <param name="kind">A defined page kind.</param>
    /// <param name="address">The start of the mapping, or zero when the OS refused.</param>
    /// <returns>Whether the memory was mapped.</returns>
    protected abstract bool TryMapCore(nuint length, nuint alignment, PageKind kind, out nint address);

    /// <summary>The managed array behind <paramref name="address"/>, for allocators whose pages are arrays.</summary>
    /// <param name="address">An address inside a mapping of this allocator.</param>
    /// <param name="array">The array holding it, or <see langword="null"/>.</param>
    /// <param name="offset">The index of <paramref name="address"/> in <paramref name="array"/>.</param>
    /// <returns>Whether the address lies in an array; <see langword="false"/> for native pages.</returns>
    public virtual bool TryGetBackingArray(nint address, out byte[]? array, out int offset)
    {
        array = null;
        offset = 0;
        return false;
    }

    /// <summary>Gives a mapping from <see cref="TryMap"/> back to the OS.</summary>
    /// <remarks>
    /// An override that throws must have unmapped nothing: the pool takes an <see cref="OutOfMemoryException"/> (which
    /// any call can meet at the GC heap limit) as a refusal, keeps the mapping and tries again later, and a range
    /// unmapped already may belong to another mapping by then.
    /// </remarks>
    /// <param name="address">Start of the mapping.</param>
    /// <param name="length">The length it was mapped with.</param>
    /// <returns>Whether the OS accepted.</returns>
    public abstract bool Unmap(nint address, nuint length);

    /// <summary>Passes a usage hint for a page-aligned range.</summary>
    /// <returns>Whether the hint was taken; <see langword="false"/> when unsupported or refused.</returns>
    public abstract bool TryAdvise(nint address, nuint length, PageAdvice advice);

    /// <summary>Changes the access allowed to a page-aligned range.</summary>
    /// <returns>Whether the protection was changed.</returns>
    public abstract bool TryProtect(nint address, nuint length, PageProtection protection);

    /// <summary>
    /// Gives back the reserved hugepages of a hugetlb mapping from <see cref="TryMap"/> without unmapping it, for a
    /// mapping let go of that a stale write may still reach; the default keeps them (an allocator that cannot).
    /// </summary>
    internal virtual ReservedPagesRelease ReleaseReservedPages(nint address, nuint length) => ReservedPagesRelease.Kept;

    /// <summary>Told that a hugetlb mapping of <paramref name="kind"/> from <see cref="TryMap"/> was unmapped.</summary>
    internal virtual void ReservedPagesUnmapped(PageKind kind)
    {
    }

    private static PageAllocator CreatePlatformAllocator()
    {
        if (OperatingSystem.IsLinux() || OperatingSystem.IsMacOS() || OperatingSystem.IsFreeBSD())
        {
            return new UnixPageAllocator();
        }

        if (OperatingSystem.IsWindows())
        {
            return new WindowsPageAllocator();
        }

        return new PortablePageAllocator();
    }
}
