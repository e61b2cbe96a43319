using System;

namespace Zipora.Buffers.Native;

/// <summary>Anonymous private mappings through <c>mmap</c>, with hugetlb pages and <c>madvise</c> on Linux.</summary>
internal sealed class UnixPageAllocator : PageAllocator
{
    private readonly Func<nint, nuint, bool> _munmap;
    private readonly Func<nint, nuint, bool> _unmapStray;

    /// <summary>An allocator calling the kernel's <c>munmap</c>.</summary>
    public UnixPageAllocator()
        : this(static (address, length) => Libc.Munmap(address, length) == 0)
    {
    }

    /// <summary>An allocator whose unmaps call <paramref name="munmap"/>: tests refuse one as the kernel does at <c>vm.max_map_count</c>.</summary>
    internal UnixPageAllocator(Func<nint, nuint, bool> munmap)
    {
        _munmap = munmap;
        _unmapStray = TryMunmap;
    }

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
            if (!SupportsHugeTlb)
            {
                return false;
            }

            // Never MAP_NORESERVE: without it a shortage of hugepages is an ENOMEM here, with it a SIGBUS at first touch.
            // Hugetlb mappings start on a hugepage boundary, which covers any alignment up to the page size asked for.
            flags |= Libc.MapHugeTlb | (kind == PageKind.HugeTlb1GB ? Libc.MapHuge1GB : Libc.MapHuge2MB);
            return TryMmap(length, flags, out address);
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
