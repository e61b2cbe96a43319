using System;
using System.Threading;
using Zipora.Buffers.Native;

namespace Zipora.Buffers;

/// <summary>Giving memory back to the OS: unmapping regions and dropping idle pages, counting only what the OS accepted.</summary>
internal sealed partial class PageSource
{
    /// <summary>
    /// Unmaps a region with the allocator that mapped it. Nothing is counted as freed unless the OS accepted: a
    /// refused unmap leaves the region mapped and counted, for the caller to try again.
    /// </summary>
    /// <param name="address">Start of the mapping.</param>
    /// <param name="length">The length it was mapped with.</param>
    /// <param name="backing">What backs it, which says which allocator mapped it.</param>
    /// <param name="counted">Whether the region still counts against the limit (false once its pages were dropped).</param>
    public bool TryUnmap(nint address, nuint length, PageBacking backing, bool counted)
    {
        if (!UnmapOrRefuse(AllocatorOf(backing), address, length))
        {
            Interlocked.Increment(ref _unmapFailures);
            if (ZiporaBuffersEventSource.Log.IsEnabled())
            {
                ReportUnmapRefused(length);
            }

            return false;
        }

        Interlocked.Increment(ref _unmapCalls);
        if (counted)
        {
            Interlocked.Add(ref _mappedBytes, -(long)length);
        }

        if (IsHuge(backing))
        {
            Interlocked.Add(ref _hugepageBytes, -(long)length);
        }

        if (IsReserved(backing))
        {
            // Their charge left the cgroup: a map refused at its limit lately may fit now.
            _allocator.ReservedPagesUnmapped(backing == PageBacking.HugeTlb1GB ? PageKind.HugeTlb1GB : PageKind.HugeTlb2MB);
        }

        return true;
    }

    /// <summary>
    /// Out of managed memory, an allocator call did nothing (a custom allocator's allocation failed, or the runtime's
    /// own work at the call did: a method's first call or a tiering step may allocate, and at the GC heap limit any
    /// call can throw so, seen in a container's tests): for unmaps, advice and protection that is a
    /// refusal like the OS's, which every caller handles (a mapping stays mapped and counted, and is tried again),
    /// where an exception would lose the mapping on its way out. Any other exception is an allocator's bug and
    /// goes to the caller.
    /// </summary>
    private static bool UnmapOrRefuse(PageAllocator owner, nint address, nuint length)
    {
        try
        {
            return owner.Unmap(address, length);
        }
        catch (OutOfMemoryException)
        {
            return false;
        }
    }

    /// <summary>
    /// Has the refusal written as an event, off this thread (often under a slab heap's lock, see
    /// <see cref="EventsOffTheCaller"/>). Never throws: out of managed memory only the event is lost (the refusal is
    /// counted), and the mapping stays its caller's to list and try again.
    /// </summary>
    private static void ReportUnmapRefused(nuint length)
    {
        try
        {
            PostUnmapRefused((long)length);
        }
        catch (OutOfMemoryException)
        {
            EventsOffTheCaller.CountLost();
        }
    }

    // A method of its own so that the closure over the length is made inside the guard above, not at its entry (see
    // BackgroundFailures.PostEvent).
    private static void PostUnmapRefused(long length) => EventsOffTheCaller.Post(() => ZiporaBuffersEventSource.Log.UnmapRefused(length));

    /// <summary>
    /// Drops the pages of a region the pool has let go of but may not unmap yet: resident memory falls now, and a
    /// stale write lands on a fresh zero page instead of faulting. The region stops counting against the limit only
    /// when the OS took the advice.
    /// </summary>
    /// <remarks>
    /// Reserved hugepages are never dropped (see <see cref="DropsReservedHugepages"/>): the allocator maps base pages
    /// over them instead, which gives them and their charge back as a drop does, and <paramref name="backing"/>
    /// becomes <see cref="PageBacking.Plain"/> for the unmap to come. Before, they stayed mapped, reserved and counted
    /// until that unmap a delay later: a trim gave nothing back, and a rent at <c>MaxBytesInUse</c> that the trim
    /// should have made room for threw (HugetlbTrimSafetyTests).
    /// </remarks>
    /// <param name="address">Start of the mapping.</param>
    /// <param name="length">The length it was mapped with.</param>
    /// <param name="backing">What backs it; what backs it now, on return.</param>
    /// <param name="unmapped">
    /// Set when the kernel unmapped the range on its way to refusing (a kernel before 6.12) and it could not be mapped
    /// again: it is counted as unmapped, and must not be unmapped again (the range may be another mapping's by then).
    /// </param>
    public bool TryDropPages(nint address, nuint length, ref PageBacking backing, out bool unmapped)
    {
        unmapped = false;
        if (IsReserved(backing))
        {
            return TryReleaseReservedPages(address, length, ref backing, out unmapped);
        }

        if (!AdviseOrRefuse(AllocatorOf(backing), address, length, PageAdvice.DontNeed))
        {
            return false;
        }

        Interlocked.Add(ref _mappedBytes, -(long)length);
        return true;
    }

    private bool TryReleaseReservedPages(nint address, nuint length, ref PageBacking backing, out bool unmapped)
    {
        unmapped = false;
        ReservedPagesRelease release;
        try
        {
            release = _allocator.ReleaseReservedPages(address, length);
        }
        catch (OutOfMemoryException)
        {
            // Refused, as UnmapOrRefuse explains: the mapping stays whole and counted until its unmap.
            return false;
        }

        if (release == ReservedPagesRelease.Kept)
        {
            return false;
        }

        Interlocked.Add(ref _mappedBytes, -(long)length);
        Interlocked.Add(ref _hugepageBytes, -(long)length);
        if (release == ReservedPagesRelease.Lost)
        {
            unmapped = true;
            Interlocked.Increment(ref _unmapCalls);
        }
        else
        {
            backing = PageBacking.Plain;
        }

        return true;
    }

    /// <summary>
    /// Stops counting against the limit a region let go of whose pages were dropped already, as
    /// <see cref="TryDropPages"/> does when it drops them.
    /// </summary>
    public void StopCountingDropped(nuint length) => Interlocked.Add(ref _mappedBytes, -(long)length);
}
