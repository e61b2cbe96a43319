using System;
using System.Buffers;
using System.Globalization;
using System.IO;
using Microsoft.Extensions.Time.Testing;
using Zipora.Buffers.Native;

namespace Zipora.Buffers.Tests;

[CollectionDefinition(nameof(HugepageTests), DisableParallelization = true)]
public sealed class HugepageTestsRunAlone;

/// <summary>Hugepage tests change and read machine-wide counters, so they run alone.</summary>
[Collection(nameof(HugepageTests))]
public sealed class HugepageTests
{
    private const int SixMegabytes = 6 * 1024 * 1024;

    [Fact]
    public void ReservedHugepagesAreReallyUsedWhenTheMachineHasThem()
    {
        using HugePageReservation? reservation = HugePageReservation.TryReserve(4, out string reason);
        if (reservation is null)
        {
            Skip.Because(reason);
        }

        long freeBefore = HugePageInfo.Read().Free2MBPages;
        var time = new FakeTimeProvider();
        nint address;
        using (var pool = new TieredMemoryPool(new TieredMemoryPoolOptions { TimeProvider = time, IdleReleaseDelay = SafetyCases.IdleDelay }))
        {
            using IMemoryOwner<byte> owner = pool.Rent(SixMegabytes);
            owner.Memory.Span.Fill(0x42);
            address = OwnerAddress.Of(owner);

            // Three 2 MB pages were faulted in from the reserved pool for this buffer.
            Assert.Equal(freeBefore - 3, HugePageInfo.Read().Free2MBPages);
            TieredMemoryPoolStatistics statistics = pool.GetStatistics();
            Assert.Equal(SixMegabytes, statistics.HugepageBytes);
            Assert.Equal(0, statistics.FallbackAllocations);
        }

        // Disposing the pool let the cached region go; like every region let go of, it is unmapped once it has waited
        // out the delay since its return (for a stale write into it). Its reserved pages go back at once, swapped for
        // base pages in place: never dropped, which would keep them reserved for the mapping and lose their charge
        // (HugetlbCgroupLimitSafetyTests and HugetlbTrimSafetyTests have why).
        Assert.Equal(freeBefore, HugePageInfo.Read().Free2MBPages);
        Assert.True(ProcessMappings.IsMapped(address, SixMegabytes), "a region returned within the delay stays mapped for a stale write");
        SafetyCases.Advance(time, SafetyCases.IdleDelay * 2);
        Assert.False(ProcessMappings.IsMapped(address, SixMegabytes), "unmapped once it waited out the delay");
    }

    [Fact]
    public void WithNoReservedHugepagesTheHugeTierUsesTransparentHugepagesAndCountsTheFallback()
    {
        // Where the machine has free reserved hugepages (set up by its owner, or still held by an earlier test's pool
        // until its deferred unmap), MAP_HUGETLB would succeed: the kernel's refusal is then played by an allocator
        // that refuses only the reserved kinds and passes every other call to the OS, so the fallback to transparent
        // hugepages still runs against the real kernel.
        HugePageInfo info = HugePageInfo.Read();
        PageAllocator? refusingReserved = info.Free2MBPages > 0
            ? new ScriptedPageAllocator { RefuseMap = static (_, kind) => kind != PageKind.Normal }
            : null;

        using var pool = new TieredMemoryPool(new TieredMemoryPoolOptions { PageAllocator = refusingReserved });
        using IMemoryOwner<byte> owner = pool.Rent(SixMegabytes);
        owner.Memory.Span.Fill(1);
        TieredMemoryPoolStatistics statistics = pool.GetStatistics();

        Assert.Equal(1, statistics.FallbackAllocations);
        if (info.TransparentHugePagesAvailable)
        {
            Assert.Equal(SixMegabytes, statistics.HugepageBytes);

            // The range is 2 MB aligned and advised, so the kernel can back it with transparent hugepages. It may
            // still fall short when physical memory is fragmented, so require some coverage, not all of it.
            Assert.True(AnonHugePagesOfMappingAt(OwnerAddress.Of(owner)) > 0, "no transparent hugepage backs the advised range");
        }
        else
        {
            Assert.Equal(0, statistics.HugepageBytes);
        }
    }

    [Fact]
    public void WithHugepagesDisabledTheHugeTierMapsPlainPagesWithoutFallbacks()
    {
        using var pool = new TieredMemoryPool(new TieredMemoryPoolOptions { EnableHugepages = false });
        using IMemoryOwner<byte> owner = pool.Rent(SixMegabytes);
        owner.Memory.Span.Fill(1);
        TieredMemoryPoolStatistics statistics = pool.GetStatistics();
        Assert.Equal(0, statistics.FallbackAllocations);
        Assert.Equal(0, statistics.HugepageBytes);
        Assert.Equal(0, OwnerAddress.Of(owner) % (2 * 1024 * 1024));
    }

    private static readonly System.Buffers.SearchValues<char> s_hexDigits = System.Buffers.SearchValues.Create("0123456789abcdef");

    /// <summary>
    /// The transparent hugepage bytes of the mapping that holds <paramref name="address"/>, from /proc/self/smaps: the
    /// mapping's own figure, so memory other pools of this process map or unmap meanwhile cannot move it.
    /// </summary>
    private static long AnonHugePagesOfMappingAt(nint address)
    {
        if (!File.Exists("/proc/self/smaps"))
        {
            return 0;
        }

        bool inMapping = false;
        foreach (string line in File.ReadLines("/proc/self/smaps"))
        {
            int dash = line.IndexOf('-', StringComparison.Ordinal);
            int space = line.IndexOf(' ', StringComparison.Ordinal);
            if (dash > 0 && space > dash && IsHex(line.AsSpan(0, dash)))
            {
                long start = long.Parse(line.AsSpan(0, dash), NumberStyles.HexNumber, CultureInfo.InvariantCulture);
                long end = long.Parse(line.AsSpan(dash + 1, space - dash - 1), NumberStyles.HexNumber, CultureInfo.InvariantCulture);
                inMapping = address >= start && address < end;
            }
            else if (inMapping && line.StartsWith("AnonHugePages:", StringComparison.Ordinal))
            {
                string kilobytes = line["AnonHugePages:".Length..].Trim().Split(' ')[0];
                return long.Parse(kilobytes, CultureInfo.InvariantCulture) * 1024;
            }
        }

        return 0;
    }

    private static bool IsHex(ReadOnlySpan<char> text) => !text.IsEmpty && !text.ContainsAnyExcept(s_hexDigits);
}
