using System;
using System.Buffers;
using System.Globalization;
using System.IO;
using Microsoft.Extensions.Time.Testing;
using Zipora.Buffers.Native;

namespace Zipora.Buffers.Tests;

/// <summary>
/// <see cref="TieredMemoryPoolStatistics.HugepageBytes"/> counts the ranges advised for transparent hugepages. A
/// huge buffer's mapping is advised (<c>MADV_HUGEPAGE</c>), and the advice stays with the mapping while it waits out
/// its delay after a trim; a new mapping of its length may take it (<see cref="TieredMemoryPoolStatistics.MappingsReused"/>).
/// With <c>MmapThreshold</c> at 256 KB the medium tier's largest slab is 4 MB, the length of one of the huge tier's
/// classes: a slab that took a huge buffer's waiting mapping would sit on an advised range (the kernel backs it with
/// 2 MB pages at their first touch) that the statistics no longer count.
/// </summary>
/// <remarks>Reads /proc/self/smaps; runs with the hugepage tests, which change and read machine-wide counters.</remarks>
[Collection(nameof(HugepageTests))]
public sealed class TransparentHugepageReuseTests
{
    private const int FourMegabytes = 4 * 1024 * 1024;

    [Fact]
    public void AMappingAdvisedForTransparentHugepagesIsCountedWhoeverTakesItAgain()
    {
        Skip.Unless(File.Exists("/proc/self/smaps"), "reads /proc/self/smaps, which only Linux has");
        Skip.Unless(HugePageInfo.Read().TransparentHugePagesAvailable, "needs transparent hugepages");

        // Reserved hugepages refused, so the huge tier takes the transparent hugepage step against the real kernel.
        using var pool = new TieredMemoryPool(new TieredMemoryPoolOptions
        {
            PageAllocator = new ScriptedPageAllocator { RefuseMap = static (_, kind) => kind != PageKind.Normal },
            MmapThreshold = 256 * 1024,
            TimeProvider = new FakeTimeProvider(),
            IdleReleaseDelay = SafetyCases.IdleDelay,
        });

        IMemoryOwner<byte> huge = pool.Rent(FourMegabytes);
        Skip.Unless(pool.GetStatistics().HugepageBytes == FourMegabytes, "the kernel refused the transparent hugepage advice");
        huge.Dispose();
        pool.Trim();

        // A block of the medium tier's 256 KB class, carved from a fresh 4 MB slab.
        using IMemoryOwner<byte> medium = pool.Rent(200_000);
        medium.Memory.Span.Fill(1);
        TieredMemoryPoolStatistics statistics = pool.GetStatistics();

        bool advised = VmFlagsOfMappingAt(OwnerAddress.Of(medium)).Contains("hg", StringComparison.Ordinal);
        Assert.False(
            advised && statistics.HugepageBytes == 0,
            $"the medium block lies in a range advised for transparent hugepages that HugepageBytes ({statistics.HugepageBytes}) does not count; {statistics.MappingsReused} mappings reused");
    }

    /// <summary>The <c>VmFlags</c> line of the mapping that holds <paramref name="address"/>, from /proc/self/smaps ("" when none).</summary>
    private static string VmFlagsOfMappingAt(nint address)
    {
        bool inMapping = false;
        foreach (string line in File.ReadLines("/proc/self/smaps"))
        {
            int dash = line.IndexOf('-', StringComparison.Ordinal);
            int space = line.IndexOf(' ', StringComparison.Ordinal);
            if (dash > 0 && space > dash && long.TryParse(line.AsSpan(0, dash), NumberStyles.HexNumber, CultureInfo.InvariantCulture, out long start)
                && long.TryParse(line.AsSpan(dash + 1, space - dash - 1), NumberStyles.HexNumber, CultureInfo.InvariantCulture, out long end))
            {
                inMapping = address >= start && address < end;
            }
            else if (inMapping && line.StartsWith("VmFlags:", StringComparison.Ordinal))
            {
                return line;
            }
        }

        return "";
    }
}
