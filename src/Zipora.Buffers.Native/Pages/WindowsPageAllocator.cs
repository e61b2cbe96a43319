namespace Zipora.Buffers.Native;

/// <summary>Committed pages through <c>VirtualAlloc</c>. Large pages need a privilege most processes lack, so hugetlb kinds report a refusal.</summary>
internal sealed class WindowsPageAllocator : PageAllocator
{
    // VirtualAlloc reserves on 64 KB boundaries; larger alignments need the reserve-release-reserve dance below.
    private const nuint AllocationGranularity = 64 * 1024;
    private const int AlignedReserveAttempts = 8;

    public override string Name => "virtualalloc";

    public override bool SupportsAdvice => true;

    protected override bool TryMapCore(nuint length, nuint alignment, PageKind kind, out nint address)
    {
        address = 0;
        if (kind != PageKind.Normal)
        {
            return false;
        }

        if (alignment <= AllocationGranularity)
        {
            address = Kernel32.VirtualAlloc(0, length, Kernel32.MemReserve | Kernel32.MemCommit, Kernel32.PageReadWrite);
            return address != 0;
        }

        // Find an aligned hole by reserving a padded range, then release it and claim the aligned part. Another
        // thread can take the hole in between, so retry a few times. A length near the top of the address space wraps
        // the padded one past zero: refused, as the Unix allocator refuses it, rather than probing a tiny range.
        if (length + alignment < length)
        {
            return false;
        }

        for (int attempt = 0; attempt < AlignedReserveAttempts; attempt++)
        {
            nint probe = Kernel32.VirtualAlloc(0, length + alignment, Kernel32.MemReserve, Kernel32.PageNoAccess);
            if (probe == 0)
            {
                return false;
            }

            nint aligned = (nint)(((nuint)probe + alignment - 1) & ~(alignment - 1));
            _ = Kernel32.VirtualFree(probe, 0, Kernel32.MemRelease);
            address = Kernel32.VirtualAlloc(aligned, length, Kernel32.MemReserve | Kernel32.MemCommit, Kernel32.PageReadWrite);
            if (address != 0)
            {
                return true;
            }
        }

        return false;
    }

    public override bool Unmap(nint address, nuint length) => Kernel32.VirtualFree(address, 0, Kernel32.MemRelease);

    public override bool TryAdvise(nint address, nuint length, PageAdvice advice)
    {
        switch (advice)
        {
            case PageAdvice.DontNeed:
                // Decommit and commit again: the working set drops now and the next touch reads zeros, as with madvise.
                return Kernel32.VirtualFree(address, length, Kernel32.MemDecommit)
                    && Kernel32.VirtualAlloc(address, length, Kernel32.MemCommit, Kernel32.PageReadWrite) != 0;
            case PageAdvice.Free:
                return Kernel32.VirtualAlloc(address, length, Kernel32.MemReset, Kernel32.PageReadWrite) != 0;
            default:
                return false;
        }
    }

    public override bool TryProtect(nint address, nuint length, PageProtection protection)
    {
        uint prot = protection == PageProtection.None ? Kernel32.PageNoAccess : Kernel32.PageReadWrite;
        return Kernel32.VirtualProtect(address, length, prot, out _);
    }
}
