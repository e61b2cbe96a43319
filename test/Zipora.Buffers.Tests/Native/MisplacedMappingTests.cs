using System;
using Microsoft.Extensions.Time.Testing;
using Zipora.Buffers.Native;

namespace Zipora.Buffers.Tests;

/// <summary>
/// A custom <see cref="PageAllocator"/> whose <c>TryMapCore</c> reports success with an address the caller cannot use:
/// zero (every write through it faults, ending the process), or off the alignment asked for (a slab's blocks, a
/// hugepage region, a guard page are all placed by it). <see cref="PageAllocator.TryMap"/> checks both, as cheaply as it
/// checks its arguments, and refuses with an exception naming the allocator, giving a misplaced mapping back through
/// the allocator's own <see cref="PageAllocator.Unmap"/> so it does not leak.
/// </summary>
public sealed class MisplacedMappingTests
{
    private const nuint Length = 64 * 1024;

    [Fact]
    public void AnAllocatorReturningAMisalignedMappingIsRefusedNamingIt()
    {
        var allocator = new ShiftedAllocator(shift: 16);

        InvalidOperationException error = Assert.Throws<InvalidOperationException>(() => allocator.TryMap(Length, PageAllocator.PageSize, PageKind.Normal, out _));

        Assert.Contains(nameof(ShiftedAllocator), error.Message, StringComparison.Ordinal);
        Assert.Contains("aligned", error.Message, StringComparison.Ordinal);
        Assert.Equal(0, allocator.Live);
    }

    [Fact]
    public void AnAllocatorReturningAMappingOffALargerAlignmentIsRefusedNamingIt()
    {
        // Page-aligned, but not at the 2 MB boundary asked for (the huge tier's alignment).
        var allocator = new ShiftedAllocator(shift: (nint)PageAllocator.PageSize);

        InvalidOperationException error = Assert.Throws<InvalidOperationException>(() => allocator.TryMap(Length, 2 * 1024 * 1024, PageKind.Normal, out _));

        Assert.Contains(nameof(ShiftedAllocator), error.Message, StringComparison.Ordinal);
        Assert.Equal(0, allocator.Live);
    }

    [Fact]
    public void AnAllocatorReportingAMappingAtAddressZeroIsRefusedNamingIt()
    {
        var allocator = new ReportingAllocator(address: 0);

        InvalidOperationException error = Assert.Throws<InvalidOperationException>(() => allocator.TryMap(Length, PageAllocator.PageSize, PageKind.Normal, out _));

        Assert.Contains(nameof(ReportingAllocator), error.Message, StringComparison.Ordinal);
        Assert.Contains("zero", error.Message, StringComparison.Ordinal);
        Assert.Equal(0, allocator.Unmaps);
    }

    [Fact]
    public void AHugetlbMappingIsCheckedAgainstItsPageSizeAtMost()
    {
        const nuint TwoMegabytes = 2 * 1024 * 1024;

        // The kernel places a hugetlb mapping on its own page size's boundary, and promises no more: an alignment
        // past it is met as far as that (the Unix allocator's own; HugetlbReleaseTests asks 4 MB of 2 MB pages).
        var onItsPageSize = new ReportingAllocator(address: (nint)(3 * TwoMegabytes));
        Assert.True(onItsPageSize.TryMap(2 * TwoMegabytes, 2 * TwoMegabytes, PageKind.HugeTlb2MB, out nint address));
        Assert.Equal((nint)(3 * TwoMegabytes), address);

        // Off it, refused.
        var offItsPageSize = new ReportingAllocator(address: (nint)(3 * TwoMegabytes) + (nint)PageAllocator.PageSize);
        _ = Assert.Throws<InvalidOperationException>(() => offItsPageSize.TryMap(2 * TwoMegabytes, 2 * TwoMegabytes, PageKind.HugeTlb2MB, out _));
        Assert.Equal(1, offItsPageSize.Unmaps);

        // Base pages are checked against the whole alignment.
        var basePages = new ReportingAllocator(address: (nint)(3 * TwoMegabytes));
        _ = Assert.Throws<InvalidOperationException>(() => basePages.TryMap(2 * TwoMegabytes, 2 * TwoMegabytes, PageKind.Normal, out _));
    }

    [Fact]
    public void APoolOverAnAllocatorReturningMisalignedMappingsRefusesTheRentAndLeaksNothing()
    {
        var allocator = new ShiftedAllocator(shift: 16);
        using var pool = new TieredMemoryPool(new TieredMemoryPoolOptions { PageAllocator = allocator, FallbackPageAllocator = null, TimeProvider = new FakeTimeProvider() });

        foreach (int size in new[] { 100, 4096, 256 * 1024, 4 * 1024 * 1024 })
        {
            InvalidOperationException error = Assert.Throws<InvalidOperationException>(() => pool.Rent(size));
            Assert.Contains(nameof(ShiftedAllocator), error.Message, StringComparison.Ordinal);
            Assert.Equal(0, allocator.Live);
        }

        TieredMemoryPoolStatistics statistics = pool.GetStatistics();
        Assert.Equal(0, statistics.Small.BytesInUse + statistics.Medium.BytesInUse + statistics.Large.BytesInUse + statistics.Huge.BytesInUse);

        // The pool is still whole: behaving again, the allocator serves it.
        allocator.Shift = 0;
        pool.Rent(4096).Dispose();
    }

    /// <summary>Maps a page more through the default allocator and reports each mapping <see cref="Shift"/> bytes (a page at most) past its start.</summary>
    private sealed class ShiftedAllocator(nint shift) : PageAllocator
    {
        public nint Shift { get; set; } = shift;

        public int Live { get; private set; }

        public override string Name => "shifted";

        public override bool TryAdvise(nint address, nuint length, PageAdvice advice) => false;

        public override bool TryProtect(nint address, nuint length, PageProtection protection) => false;

        public override bool Unmap(nint address, nuint length)
        {
            // The whole padded mapping, wherever in it the address was reported.
            nint start = address - Shift;
            bool unmapped = Default.Unmap(start, length + PageSize);
            Live -= unmapped ? 1 : 0;
            return unmapped;
        }

        protected override bool TryMapCore(nuint length, nuint alignment, PageKind kind, out nint address)
        {
            if (!Default.TryMap(length + PageSize, alignment, kind, out address))
            {
                return false;
            }

            Live++;
            address += Shift;
            return true;
        }
    }

    /// <summary>Reports success at the address it was made with, mapping nothing (the test never touches it).</summary>
    private sealed class ReportingAllocator(nint address) : PageAllocator
    {
        public int Unmaps { get; private set; }

        public override string Name => "reporting";

        public override bool TryAdvise(nint address, nuint length, PageAdvice advice) => false;

        public override bool TryProtect(nint address, nuint length, PageProtection protection) => false;

        public override bool Unmap(nint address, nuint length)
        {
            Unmaps++;
            return true;
        }

        protected override bool TryMapCore(nuint length, nuint alignment, PageKind kind, out nint mapped)
        {
            mapped = address;
            return true;
        }
    }
}
