using System;
using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;

namespace Zipora.Buffers.Native;

/// <summary>Anonymous private mappings through <c>mmap</c>, with hugetlb pages and <c>madvise</c> on Linux.</summary>
internal sealed partial class UnixPageAllocator : PageAllocator
{
    private readonly Func<nint, nuint, bool> _munmap;
    private readonly Func<nint, nuint, int> _populate;
    private readonly Func<PageKind, bool> _hugetlbLimited;
    private readonly Func<nint, nuint, bool> _unmapStray;

    // Set once the kernel said it does not know MADV_POPULATE_WRITE (before Linux 5.14): hugetlb maps are then kept
    // unproven where no hugetlb cgroup limit applies, and not made where one does.
    private volatile bool _cannotPopulate;

    /// <summary>An allocator calling the kernel's <c>munmap</c> and <c>madvise</c>.</summary>
    public UnixPageAllocator()
        : this(static (address, length) => Libc.Munmap(address, length) == 0)
    {
    }

    /// <summary>An allocator whose unmaps call <paramref name="munmap"/>: tests refuse one as the kernel does at <c>vm.max_map_count</c>.</summary>
    internal UnixPageAllocator(Func<nint, nuint, bool> munmap)
        : this(munmap, PopulateWritable)
    {
    }

    /// <summary>
    /// An allocator whose unmaps call <paramref name="munmap"/> and whose hugetlb maps are faulted in by
    /// <paramref name="populate"/> (0, or the errno of the refusal): tests refuse one as an old kernel or a hugetlb
    /// cgroup limit does.
    /// </summary>
    internal UnixPageAllocator(Func<nint, nuint, bool> munmap, Func<nint, nuint, int> populate)
        : this(munmap, populate, HugetlbCgroupLimit.Applies)
    {
    }

    /// <summary>
    /// As above, with <paramref name="hugetlbLimited"/> saying whether a hugetlb cgroup limit applies to the process
    /// (asked only where the kernel cannot populate).
    /// </summary>
    internal UnixPageAllocator(Func<nint, nuint, bool> munmap, Func<nint, nuint, int> populate, Func<PageKind, bool> hugetlbLimited)
    {
        _munmap = munmap;
        _populate = populate;
        _hugetlbLimited = hugetlbLimited;
        _unmapStray = TryMunmap;

        // Every mmap and munmap reads the mapping check's switch, which makes its statics (a lock and a list, made on
        // or off): made first by a pool's first mapping at the GC heap limit, its type initializer failed there after
        // the mmap, and failed every later map and unmap of every pool for good (FirstMappingAtTheHeapLimitSafetyTests).
        // So they are made with the allocator, which the first pool's options make.
        RuntimeHelpers.RunClassConstructor(typeof(MappingLedger).TypeHandle);
    }

    /// <summary>
    /// Maps base pages over a hugetlb range in place (whether it did): tests refuse it as the kernel does, with or
    /// without the range left mapped.
    /// </summary>
    internal Func<nint, nuint, bool> MapBasePagesOver { get; init; } = MapBasePagesOverRange;

    /// <summary>The hugetlb maps refused lately, which longer ones are not tried after for a while.</summary>
    internal HugetlbRefusals Refusals { get; } = new();

    /// <summary>The clock of <see cref="Refusals"/>, in milliseconds: tests move it.</summary>
    internal Func<long> Milliseconds { get; init; } = static () => Environment.TickCount64;

    /// <summary>What this allocator mapped and could neither hand out nor unmap, tried again at its next map or unmap.</summary>
    internal StrayMappings Strays { get; } = new();

    public override string Name => "mmap";

    public override bool SupportsHugeTlb => OperatingSystem.IsLinux();

    public override bool SupportsAdvice => true;

    protected override bool TryMapCore(nuint length, nuint alignment, PageKind kind, out nint address)
    {
        address = 0;
        UnmapStrays();
        int flags = Libc.MapPrivate | Libc.MapAnonymous;
        if (kind != PageKind.Normal)
        {
            if (!SupportsHugeTlb || (_cannotPopulate && HugetlbLimited(kind)) || Refusals.Covers(kind, length, Milliseconds()))
            {
                return false;
            }

            // Never MAP_NORESERVE: without it a shortage of hugepages is an ENOMEM here, with it a SIGBUS at first touch.
            // Hugetlb mappings start on a hugepage boundary, which covers any alignment up to the page size asked for.
            flags |= Libc.MapHugeTlb | (kind == PageKind.HugeTlb1GB ? Libc.MapHuge1GB : Libc.MapHuge2MB);
            return TryMmap(length, flags, out address) && (_cannotPopulate || TryFaultInReserved(ref address, length, kind));
        }

        if (alignment <= PageSize)
        {
            return TryMmap(length, flags, out address);
        }

        // mmap only promises page alignment: map enough to contain an aligned range, then cut off both ends.
        nuint padded = length + alignment - PageSize;
        if (padded < length || !TryMmap(padded, flags, out nint raw))
        {
            return false;
        }

        nint aligned = (nint)(((nuint)raw + alignment - 1) & ~(alignment - 1));
        nint kept = raw;
        nuint keptLength = padded;
        try
        {
            nuint head = (nuint)(aligned - raw);
            nuint tail = padded - head - length;
            if (head != 0)
            {
                if (!TryMunmap(raw, head))
                {
                    return GiveBackWhole(kept, keptLength);
                }

                kept = aligned;
                keptLength -= head;
            }

            if (tail != 0 && !TryMunmap(aligned + (nint)length, tail))
            {
                return GiveBackWhole(kept, keptLength);
            }
        }
        catch (OutOfMemoryException)
        {
            // The cut was never made: at the GC heap limit any call can throw before it runs (the runtime allocates at
            // a method's first calls and its tiering steps). What is still mapped goes back whole, as for a refusal.
            return GiveBackWhole(kept, keptLength);
        }

        address = aligned;
        return true;
    }

    /// <summary>
    /// Faults a new hugetlb mapping in whole, or gives it back and reports a refusal. The reservation made by
    /// <c>mmap</c> does not promise a page at first touch: the hugetlb cgroup (a container's <c>hugetlb.2MB.max</c>;
    /// Kubernetes sets 0 for a pod that requests no hugepages) charges each page when it is faulted, and a charge over
    /// its limit, like a cpuset whose nodes have no free hugepage, is a SIGBUS that kills the process at the caller's
    /// first write. MADV_POPULATE_WRITE reports that fault as an error instead (EFAULT), while nothing has been handed
    /// out, so the tier can step down to transparent hugepages.
    /// </summary>
    /// <remarks>
    /// The cost is zeroing every page now rather than at its first touch: the same work for a buffer that is written
    /// whole, more for one written in part. A kernel without the advice (before Linux 5.14, EINVAL) cannot prove the
    /// pages: there they are used, unproven, only where no hugetlb cgroup limit applies to the process, and elsewhere
    /// the tier gets transparent hugepages instead.
    /// </remarks>
    private bool TryFaultInReserved(ref nint address, nuint length, PageKind kind)
    {
        if (MappingLedger.IsEnabled)
        {
            MappingLedger.Touching(address, length, "madvise");
        }

        int error;
        try
        {
            error = _populate(address, length);
        }
        catch (OutOfMemoryException)
        {
            // Thrown before the advice ran (a first call at the GC heap limit): the pages are unproven, so refused.
            error = -1;
        }

        if (error == 0)
        {
            return true;
        }

        if (error == Libc.Einval)
        {
            _cannotPopulate = true;
            if (!HugetlbLimited(kind))
            {
                return true;
            }
        }
        else
        {
            // A limit, or no free page where the cpuset allows: as long a map is not tried again for a while.
            Refusals.Record(kind, length, Milliseconds());
        }

        // The pages faulted in before the refusal go back with the mapping, and their charge with them.
        GiveBackWhole(address, length);
        address = 0;
        return false;
    }

    /// <summary>Whether a hugetlb cgroup limit applies; out of managed memory (its files are read into strings) it cannot be shown not to.</summary>
    private bool HugetlbLimited(PageKind kind)
    {
        try
        {
            return _hugetlbLimited(kind);
        }
        catch (OutOfMemoryException)
        {
            return true;
        }
    }

    internal static int PopulateWritable(nint address, nuint length) =>
        Libc.Madvise(address, length, Libc.MadvPopulateWrite) == 0 ? 0 : Marshal.GetLastPInvokeError();

    /// <summary>
    /// Cutting an end off a mapping splits it in two, which the kernel refuses at <c>vm.max_map_count</c>: then the
    /// rest is unmapped whole and the map reported as refused, so that the caller can fall back.
    /// </summary>
    /// <remarks>
    /// Unmapping it whole needs no new map entry unless the kernel merged the new mapping with a neighbour on each
    /// side, when it fails too: then the rest is kept among the <see cref="Strays"/> and unmapped at a later call,
    /// rather than left mapped with nothing pointing at it.
    /// </remarks>
    private bool GiveBackWhole(nint address, nuint length)
    {
        bool unmapped;
        try
        {
            unmapped = TryMunmap(address, length);
        }
        catch (OutOfMemoryException)
        {
            // Thrown before the unmap ran (a first call at the GC heap limit): the range is still mapped.
            unmapped = false;
        }

        if (!unmapped)
        {
            Strays.Add(address, length);
        }

        return false;
    }

    public override bool Unmap(nint address, nuint length)
    {
        if (!TryMunmap(address, length))
        {
            return false;
        }

        // A map entry was freed: a stray refused for want of one may go now.
        UnmapStrays();
        return true;
    }

    private void UnmapStrays()
    {
        if (Strays.IsEmpty)
        {
            return;
        }

        try
        {
            Strays.TryUnmapAll(_unmapStray);
        }
        catch (OutOfMemoryException)
        {
            // At the GC heap limit a call made for the first time can throw before it runs. The strays stay for the
            // next call, and the map or unmap the caller asked for goes on: an Unmap that has unmapped must not throw.
        }
    }

    public override bool TryAdvise(nint address, nuint length, PageAdvice advice)
    {
        int code;
        switch (advice)
        {
            case PageAdvice.DontNeed:
                code = Libc.MadvDontNeed;
                break;
            case PageAdvice.Free:
                code = Libc.MadvFree;
                break;
            case PageAdvice.HugePage when OperatingSystem.IsLinux():
                if (TransparentHugePagesDisabledForProcess())
                {
                    return false;
                }

                code = Libc.MadvHugePage;
                break;
            case PageAdvice.NoHugePage when OperatingSystem.IsLinux():
                code = Libc.MadvNoHugePage;
                break;
            default:
                return false;
        }

        if (MappingLedger.IsEnabled)
        {
            MappingLedger.Touching(address, length, "madvise");
        }

        return Libc.Madvise(address, length, code) == 0;
    }

    /// <summary>
    /// Whether this process turned transparent hugepages off for itself (<c>prctl(PR_SET_THP_DISABLE, 1)</c>, which
    /// its children inherit): MADV_HUGEPAGE still returns 0 then, but no range gets a hugepage, so the advice counts as
    /// refused. Read at each advice (one cheap call per huge region): the setting can change at any time. With
    /// PR_THP_DISABLE_EXCEPT_ADVISED (Linux 6.18) advised ranges still get hugepages.
    /// </summary>
    /// <remarks>
    /// Before, the huge tier counted such ranges in <c>HugepageBytes</c> while <c>AnonHugePages</c> of the ranges in
    /// <c>/proc/self/smaps</c> stayed 0 (DisabledTransparentHugepageSafetyTests).
    /// </remarks>
    private static bool TransparentHugePagesDisabledForProcess()
    {
        int disabled = Libc.Prctl(Libc.PrGetThpDisable, 0, 0, 0, 0);
        return disabled > 0 && (disabled & Libc.PrThpDisableExceptAdvised) == 0;
    }

    public override bool TryProtect(nint address, nuint length, PageProtection protection)
    {
        if (MappingLedger.IsEnabled)
        {
            MappingLedger.Touching(address, length, "mprotect");
        }

        int prot = protection == PageProtection.None ? Libc.ProtNone : Libc.ProtRead | Libc.ProtWrite;
        return Libc.Mprotect(address, length, prot) == 0;
    }

    private static bool TryMmap(nuint length, int flags, out nint address)
    {
        nint result = Libc.Mmap(0, length, Libc.ProtRead | Libc.ProtWrite, flags, -1, 0);
        if (result == Libc.MapFailed)
        {
            address = 0;
            return false;
        }

        address = result;
        if (MappingLedger.IsEnabled)
        {
            MappingLedger.Mapped(result, length);
        }

        return true;
    }

    private bool TryMunmap(nint address, nuint length)
    {
        if (!MappingLedger.IsEnabled)
        {
            return _munmap(address, length);
        }

        (nuint Start, nuint End) cutFrom = MappingLedger.Unmapping(address, length);
        bool unmapped = false;
        try
        {
            unmapped = _munmap(address, length);
            return unmapped;
        }
        finally
        {
            // Refused, or thrown before it ran: the range is still mapped.
            if (!unmapped)
            {
                MappingLedger.UnmapRefused(address, length, cutFrom);
            }
        }
    }
}
