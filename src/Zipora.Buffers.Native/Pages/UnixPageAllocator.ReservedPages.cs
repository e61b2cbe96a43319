using System;

namespace Zipora.Buffers.Native;

/// <summary>Giving back the reserved pages of a hugetlb mapping that must stay mapped a while longer.</summary>
internal sealed partial class UnixPageAllocator
{
    /// <summary>
    /// Swaps a hugetlb mapping's reserved pages for fresh base pages in place (<c>mmap(MAP_FIXED)</c>, which replaces
    /// the range in one step): the hugepages and their hugetlb cgroup charge go back now, and a stale write into the
    /// range lands on a zero page of its own, as after a page drop, instead of faulting. Dropping the hugepages
    /// instead (MADV_DONTNEED) would keep them reserved for the mapping and lose their charge, to be charged again by
    /// that write: a SIGBUS under a limit.
    /// </summary>
    /// <remarks>
    /// <para>
    /// A refusal (strict overcommit with no room for the base pages' commit charge, which hugepages never needed) leaves the
    /// mapping as it was on Linux 6.12 and later; an earlier kernel may have unmapped the range before it failed. Then
    /// the hole is mapped again with base pages where nothing else has taken it, so the range stays the pool's to unmap
    /// at its time; if that fails too, nothing of it is left, and the caller must not unmap it.
    /// </para>
    /// <para>
    /// Under <c>mlockall(MCL_FUTURE)</c> the pages are kept: every new mapping is then populated and locked at once,
    /// so the base pages would be as many bytes more locked and resident (charged to the memory cgroup, where
    /// hugepages are not) for the whole delay, on a trim meant to give memory back; the page drop of any locked
    /// region is refused there too.
    /// </para>
    /// </remarks>
    internal override ReservedPagesRelease ReleaseReservedPages(nint address, nuint length)
    {
        if (MappingLedger.IsEnabled)
        {
            MappingLedger.Touching(address, length, "mmap(MAP_FIXED)");
        }

        try
        {
            if (NewMappingsArePopulated())
            {
                return ReservedPagesRelease.Kept;
            }

            if (MapBasePagesOver(address, length))
            {
                ForgetRefusals(length);
                return ReservedPagesRelease.Replaced;
            }

            // Still mapped whole: MADV_NORMAL changes nothing, and fails with ENOMEM where part of the range is not mapped.
            if (Libc.Madvise(address, length, Libc.MadvNormal) == 0)
            {
                return ReservedPagesRelease.Kept;
            }

            if (TryMapBasePagesInHole(address, length))
            {
                ForgetRefusals(length);
                return ReservedPagesRelease.Replaced;
            }
        }
        catch (OutOfMemoryException)
        {
            // Thrown before a call ran (a first call at the GC heap limit; the map made these calls already, so their
            // stubs exist): taken as a refusal that left the mapping as it was.
            return ReservedPagesRelease.Kept;
        }

        if (MappingLedger.IsEnabled)
        {
            _ = MappingLedger.Unmapping(address, length);
        }

        return ReservedPagesRelease.Lost;
    }

    /// <summary>
    /// Whether a new mapping has its pages faulted in by the map (<c>mlockall(MCL_FUTURE)</c>, which nothing else
    /// reports): one page is mapped and asked for its residency. Where it cannot tell, it says yes, which keeps the pages.
    /// </summary>
    private bool NewMappingsArePopulated()
    {
        if (!TryMmap(PageSize, Libc.MapPrivate | Libc.MapAnonymous, out nint probe))
        {
            return true;
        }

        bool populated = true;
        try
        {
            populated = Libc.Mincore(probe, PageSize, out byte residency) != 0 || (residency & 1) != 0;
        }
        catch (OutOfMemoryException)
        {
            // Its first call, at the GC heap limit, threw before it ran: it cannot tell. The probe goes back all the same.
        }

        GiveBackWhole(probe, PageSize);
        return populated;
    }

    internal override void ReservedPagesUnmapped(PageKind kind) => Refusals.Forget(kind);

    // The mapping's page size is not known here: a length of whole 1 GB pages may be either, so both are forgotten
    // then (a map tried once more, which is always safe).
    private void ForgetRefusals(nuint length)
    {
        Refusals.Forget(PageKind.HugeTlb2MB);
        if (length % (nuint)HugePageInfo.Size1GB == 0)
        {
            Refusals.Forget(PageKind.HugeTlb1GB);
        }
    }

    private static bool MapBasePagesOverRange(nint address, nuint length) =>
        Libc.Mmap(address, length, Libc.ProtRead | Libc.ProtWrite, Libc.MapPrivate | Libc.MapAnonymous | Libc.MapFixed, -1, 0) == address;

    /// <summary>Maps base pages into a hole the kernel left at <paramref name="address"/>, unless something else is mapped there now.</summary>
    private bool TryMapBasePagesInHole(nint address, nuint length)
    {
        nint result = Libc.Mmap(address, length, Libc.ProtRead | Libc.ProtWrite, Libc.MapPrivate | Libc.MapAnonymous | Libc.MapFixedNoReplace, -1, 0);
        if (result == address)
        {
            return true;
        }

        if (result != Libc.MapFailed)
        {
            // A kernel before 4.17 takes MAP_FIXED_NOREPLACE for a hint and maps elsewhere: that mapping goes back.
            if (MappingLedger.IsEnabled)
            {
                MappingLedger.Mapped(result, length);
            }

            GiveBackWhole(result, length);
        }

        return false;
    }
}
