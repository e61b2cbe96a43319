using System;

namespace Zipora.Buffers.Native;

/// <summary>Anonymous private mappings through <c>mmap</c>, with hugetlb pages and <c>madvise</c> on Linux.</summary>
internal sealed class UnixPageAllocator : PageAllocator
{
    public override string Name => "mmap";

    public override bool SupportsHugeTlb => OperatingSystem.IsLinux();

    public override bool SupportsAdvice => true;

    protected override bool TryMapCore(nuint length, nuint alignment, PageKind kind, out nint address)
    {
        address = 0;
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
    /// rest is unmapped whole (no split, so no new map entry is needed) and the map reported as refused, so no
    /// stray pages are left mapped behind the pool's back.
    /// </summary>
    private static bool GiveBackWhole(nint address, nuint length)
    {
        // An unmap of a whole mapping removes an entry and does not fail for want of map entries; should it fail
        // anyway, the range stays mapped and unreferenced, and the caller still sees a refusal it can handle.
        _ = TryMunmap(address, length);
        return false;
    }

    public override bool Unmap(nint address, nuint length) => TryMunmap(address, length);

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

    private static bool TryMunmap(nint address, nuint length)
    {
        if (!MappingLedger.IsEnabled)
        {
            return Libc.Munmap(address, length) == 0;
        }

        MappingLedger.Unmapping(address, length);
        if (Libc.Munmap(address, length) == 0)
        {
            return true;
        }

        MappingLedger.UnmapRefused(address, length);
        return false;
    }
}
