using System;
using System.Threading;
using Zipora.Buffers.Native;

namespace Zipora.Buffers;

/// <summary>
/// The pool's only door to the OS layer: maps and unmaps through a <see cref="PageAllocator"/>, falls back to the
/// portable allocator when the OS refuses, keeps the pool under its memory limit, and counts every call for the
/// statistics. This file maps and counts; <c>PageSource.Limit.cs</c> keeps the limit, <c>PageSource.Releasing.cs</c>
/// unmaps and drops pages.
/// </summary>
/// <remarks>
/// Map calls may run the pool's trim when the limit is reached, so callers must hold no pool lock and no thread
/// cache when they map.
/// </remarks>
internal sealed partial class PageSource
{
    private readonly PageAllocator _allocator;
    private readonly PageAllocator? _fallback;
    private readonly long _limit;
    private long _mappedBytes;
    private long _mapCalls;
    private long _unmapCalls;
    private long _hugepageBytes;
    private long _fallbacks;
    private long _unmapFailures;
    private int _reportedSteps;
    private long _mappingsReused;

    /// <param name="allocator">The OS layer.</param>
    /// <param name="fallback">Where base pages come from when <paramref name="allocator"/> refuses; <see langword="null"/> for none.</param>
    /// <param name="limit">Most bytes the pool may hold mapped at once; 0 for no limit.</param>
    /// <param name="lazyFree">Drop idle pages with MADV_FREE rather than MADV_DONTNEED.</param>
    public PageSource(PageAllocator allocator, PageAllocator? fallback, long limit, bool lazyFree)
    {
        IdlePageAdvice = lazyFree ? PageAdvice.Free : PageAdvice.DontNeed;
        _allocator = allocator;
        _fallback = ReferenceEquals(allocator, fallback) ? null : fallback;
        _limit = limit;
    }

    /// <summary>The pool's mappings let go of and waiting out their delay, which a new mapping of base pages may take (set once, at the pool's construction).</summary>
    public DeferredUnmaps? WaitingUnmaps { get; set; }

    /// <summary>New mappings served by a mapping waiting out its delay instead of the OS (see <see cref="DeferredUnmaps.TryTakeForReuse"/>).</summary>
    public long MappingsReused => Volatile.Read(ref _mappingsReused);

    /// <summary>
    /// Frees the pool's idle memory; called when a mapping would cross the limit. Returns whether it trimmed:
    /// <see langword="false"/> when the pool was not used since its last trim, which gave back all it could.
    /// </summary>
    public Func<bool>? ReleaseIdleMemory { get; set; }

    /// <summary>How idle pages that stay mapped are given back.</summary>
    public PageAdvice IdlePageAdvice { get; }

    /// <summary>Bytes currently mapped by the pool.</summary>
    public long MappedBytes => Volatile.Read(ref _mappedBytes);

    /// <summary>Whether mapping <paramref name="length"/> more bytes now would cross the limit.</summary>
    public bool WouldExceedLimit(long length) => _limit != 0 && MappedBytes + length > _limit;

    public long Limit => _limit;

    public PageAllocator Allocator => _allocator;

    public long MapCalls => Volatile.Read(ref _mapCalls);

    public long UnmapCalls => Volatile.Read(ref _unmapCalls);

    public long HugepageBytes => Volatile.Read(ref _hugepageBytes);

    public long Fallbacks => Volatile.Read(ref _fallbacks);

    /// <summary>Unmaps the OS refused (the regions stay mapped, counted, and are tried again).</summary>
    public long UnmapFailures => Volatile.Read(ref _unmapFailures);

    /// <summary>
    /// Maps base pages; when the OS refuses, falls back to the portable allocator (counted). A mapping of the same
    /// length waiting out its delay serves first, unless <paramref name="takeWaiting"/> is <see langword="false"/>,
    /// and only one never advised for transparent hugepages (that advice stays with the range, where the statistics
    /// would no longer count it; TransparentHugepageReuseTests).
    /// </summary>
    /// <param name="length">The mapping's length.</param>
    /// <param name="alignment">Its alignment, a power of two.</param>
    /// <param name="address">The mapping.</param>
    /// <param name="backing">What backs it.</param>
    /// <param name="takeWaiting">
    /// Whether a waiting mapping may serve: not for a diagnostic region, whose guard pages would make a stale write
    /// into the old holder's memory fault, where the delay promises it never does (GuardedMappingReuseTests).
    /// </param>
    public bool TryMapPlain(nuint length, nuint alignment, out nint address, out PageBacking backing, bool takeWaiting = true)
    {
        if (TryMapNormal(length, alignment, takeWaiting, takeAdvised: false, out address, out bool atLimit))
        {
            backing = PageBacking.Plain;
            return true;
        }

        // Refused by the limit, not the OS: no fallback. Room another thread made since would otherwise be taken on
        // the fallback's memory, whose pages are never dropped, so it counted against the limit for a whole delay
        // after its return (MixedTiersAtTheCapSafetyTests).
        backing = PageBacking.Portable;
        if (_fallback is null || atLimit)
        {
            return false;
        }

        if (WouldExceedLimit((long)length) || !TryReserve(length))
        {
            return false;
        }

        CountFallback(FallbackStep.OSRefusedToPortable);
        return TryMapReserved(_fallback, length, alignment, PageKind.Normal, out address);
    }

    /// <summary>
    /// Maps pages of the given kind with no fallback (the caller decides what comes next). Base pages come from a
    /// mapping of the same length waiting out its delay when there is one, rather than from the OS, one advised for
    /// transparent hugepages too: the caller (the huge tier) advises them.
    /// </summary>
    public bool TryMap(nuint length, nuint alignment, PageKind kind, out nint address)
    {
        if (kind == PageKind.Normal)
        {
            return TryMapNormal(length, alignment, takeWaiting: true, takeAdvised: true, out address, out _);
        }

        address = 0;
        return TryReserveForReservedPages(length, kind) && TryMapReserved(_allocator, length, alignment, kind, out address);
    }

    /// <summary>
    /// Maps base pages with no fallback, from a waiting mapping when <paramref name="takeWaiting"/> (one advised for
    /// transparent hugepages only when <paramref name="takeAdvised"/>); <paramref name="atLimit"/> says a refusal was the
    /// limit's, not the OS's.
    /// </summary>
    private bool TryMapNormal(nuint length, nuint alignment, bool takeWaiting, bool takeAdvised, out nint address, out bool atLimit)
    {
        address = 0;
        atLimit = false;
        DeferredUnmaps? waiting = takeWaiting ? WaitingUnmaps : null;

        // First one whose pages could not be dropped: still counted against the limit, so nothing to reserve (and no trim).
        if (waiting is not null && waiting.TryTakeForReuse(length, alignment, takeAdvised, counted: true, out address, out PageBacking kept))
        {
            CountReused(length, kept);
            return true;
        }

        if (!TryReserve(length))
        {
            atLimit = true;
            return false;
        }

        if (waiting is not null && waiting.TryTakeForReuse(length, alignment, takeAdvised, counted: false, out address, out PageBacking was))
        {
            CountReused(length, was);
            return true;
        }

        return TryMapReserved(_allocator, length, alignment, PageKind.Normal, out address);
    }

    /// <summary>Counts a waiting mapping taken again; its hugepages were counted until its unmap, which now never comes (the new owner records what it makes of it).</summary>
    private void CountReused(nuint length, PageBacking was)
    {
        if (IsHuge(was))
        {
            Interlocked.Add(ref _hugepageBytes, -(long)length);
        }

        Interlocked.Increment(ref _mappingsReused);
    }

    /// <summary>Maps with <paramref name="allocator"/> bytes already reserved against the limit; gives them back when it does not map.</summary>
    private bool TryMapReserved(PageAllocator allocator, nuint length, nuint alignment, PageKind kind, out nint address)
    {
        Interlocked.Increment(ref _mapCalls);
        bool mapped = false;
        try
        {
            mapped = allocator.TryMap(length, alignment, kind, out address);
            return mapped;
        }
        finally
        {
            // Refused, or thrown (a custom allocator's exception): the reserved bytes go back to the limit.
            if (!mapped)
            {
                Interlocked.Add(ref _mappedBytes, -(long)length);
            }
        }
    }

    /// <summary>Passes a hint to the allocator that mapped the range: never to the OS for memory the portable fallback took from the C heap.</summary>
    public bool TryAdvise(nint address, nuint length, PageAdvice advice, PageBacking backing) =>
        !DropsReservedHugepages(advice, backing) && AdviseOrRefuse(AllocatorOf(backing), address, length, advice);

    /// <summary>
    /// Changes the protection through the allocator that mapped the range. Memory the portable fallback took from the
    /// C heap is never protected: the heap's own bookkeeping lives beside it, and an inaccessible page there would
    /// crash the process at the next <c>malloc</c>.
    /// </summary>
    public bool TryProtect(nint address, nuint length, PageProtection protection, PageBacking backing)
    {
        try
        {
            return AllocatorOf(backing).TryProtect(address, length, protection);
        }
        catch (OutOfMemoryException)
        {
            // Refused, as UnmapOrRefuse explains: a guard page not set degrades diagnostics and loses nothing.
            return false;
        }
    }

    /// <summary>A hint through <paramref name="owner"/>; out of managed memory it was not taken (see <see cref="UnmapOrRefuse"/>).</summary>
    private static bool AdviseOrRefuse(PageAllocator owner, nint address, nuint length, PageAdvice advice)
    {
        try
        {
            return owner.TryAdvise(address, length, advice);
        }
        catch (OutOfMemoryException)
        {
            return false;
        }
    }

    /// <summary>Records that a region of this backing now exists (for <see cref="HugepageBytes"/>).</summary>
    public void RecordMapped(nuint length, PageBacking backing)
    {
        if (IsHuge(backing))
        {
            Interlocked.Add(ref _hugepageBytes, (long)length);
        }
    }

    /// <summary>Counts a step down to a lesser backend, and reports the first of each kind as an event.</summary>
    public void CountFallback(FallbackStep step)
    {
        Interlocked.Increment(ref _fallbacks);
        int bit = 1 << (int)step;
        if ((Interlocked.Or(ref _reportedSteps, bit) & bit) == 0)
        {
            ReportFallback(step);
        }
    }

    /// <summary>
    /// Writes the first fallback of a kind as an event. Never throws: the huge tier counts a refused hugepage hint after
    /// its mapping is made, where an exception would lose the mapping; out of managed memory only the event is lost.
    /// </summary>
    private static void ReportFallback(FallbackStep step)
    {
        try
        {
            ZiporaBuffersEventSource.Log.BackendFallback(step.ToString());
        }
        catch (OutOfMemoryException)
        {
            EventsOffTheCaller.CountLost();
        }
    }

    /// <summary>A manager for a block; array-backed (so <c>MemoryMarshal.TryGetArray</c> works) when the pages are pinned arrays.</summary>
    public NativeMemoryManager CreateManager(nint address, int length, INativeMemoryReleaser releaser, PageBacking backing)
    {
        PageAllocator owner = AllocatorOf(backing);
        return owner.TryGetBackingArray(address, out byte[]? array, out int offset)
            ? new NativeMemoryManager(address, length, releaser, array, offset)
            : new NativeMemoryManager(address, length, releaser);
    }

    /// <summary>Whether memory of this backing lies in pinned arrays (the GC's memory, which a stale <c>Span</c> keeps alive).</summary>
    public bool IsPinnedArray(PageBacking backing) => AllocatorOf(backing) is PinnedArrayPageAllocator;

    /// <summary>The allocator that mapped memory of this backing: the fallback for portable memory, else the OS layer.</summary>
    private PageAllocator AllocatorOf(PageBacking backing) => backing == PageBacking.Portable ? _fallback! : _allocator;

    /// <summary>Rounds <paramref name="length"/> up to a multiple of <paramref name="unit"/>, a power of two.</summary>
    public static nuint RoundUp(nuint length, nuint unit) => (length + unit - 1) & ~(unit - 1);

    /// <summary>
    /// Whether <paramref name="advice"/> would drop the pages of a hugetlb mapping, which the pool never does: it gives
    /// them back by unmapping, or by mapping base pages over them (<see cref="TryDropPages"/>). Dropped, they stay
    /// reserved for the mapping (no other process can have them), but their hugetlb cgroup charge goes, and the next
    /// touch must be charged again: under a limit that a new mapping took meanwhile, that touch is a SIGBUS in the
    /// caller's write, or in a stale write into a mapping waiting for its unmap. Kept whole, a cached region's pages are
    /// still proven, and it leaves at its unmap a tick later.
    /// </summary>
    private static bool DropsReservedHugepages(PageAdvice advice, PageBacking backing) =>
        advice is PageAdvice.DontNeed or PageAdvice.Free && IsReserved(backing);

    private static bool IsHuge(PageBacking backing) => backing == PageBacking.TransparentHuge || IsReserved(backing);

    /// <summary>Whether the region lies on reserved (hugetlb) pages.</summary>
    private static bool IsReserved(PageBacking backing) => backing is PageBacking.HugeTlb2MB or PageBacking.HugeTlb1GB;
}
