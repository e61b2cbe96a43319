using System.Buffers;
using Microsoft.Extensions.Time.Testing;

namespace Zipora.Buffers.Tests;

/// <summary>
/// Memory let go of within its idle delay stays mapped and writable for that delay, in every mode: a stale
/// <c>Span</c> written there lands in mapped memory and never faults (README, Reliability). A new mapping of the same
/// length may take such a waiting mapping (<see cref="TieredMemoryPoolStatistics.MappingsReused"/>); in diagnostic
/// mode a large buffer's mapping has a guard page (<c>PROT_NONE</c>) at each end, so a guarded mapping that took a
/// waiting one would turn a stale write into the old holder's first or last page into a crash. Here a medium slab of
/// 64 KB is let go of, and a large buffer of the 56 KB class (64 KB with its two guard pages) is rented right after.
/// </summary>
/// <remarks>Reads /proc/self/maps; never writes the stale range (a fault would end the test host).</remarks>
public sealed class GuardedMappingReuseTests
{
    [Fact]
    public void ADiagnosticLargeBufferNeverPutsAGuardPageOverMemoryLetGoOfWithinItsDelay()
    {
        Skip.Unless(ProcessMappings.CanRead, "reads /proc/self/maps, which only Linux has");
        using TieredMemoryPool pool = DiagnosticPool();

        // A 4 KB block is carved from a fresh 64 KB slab; a trim lets the slab go, pages dropped, mapping kept.
        IMemoryOwner<byte> stale = pool.Rent(4096);
        OwnerRange range = SafetyCases.RangeOf(stale);
        stale.Dispose();
        pool.Trim();
        Assert.True(pool.GetStatistics().BytesAwaitingRelease > 0, "the trim should let the slab go within its delay");

        // A large buffer of the 56 KB class maps 64 KB in diagnostic mode: the waiting slab's length.
        using IMemoryOwner<byte> large = pool.Rent(50_000);

        Assert.True(
            ProcessMappings.IsWritable(range.Start, range.Length),
            $"a stale write into the block let go of within its delay ({SafetyCases.IdleDelay}) would fault: " +
            $"{pool.GetStatistics().MappingsReused} mappings reused; {ProcessMappings.Describe(range.Start, range.Length)}");
    }

    [Fact]
    public void AMediumSlabNeverTakesADiagnosticLargeBuffersMappingWithItsGuardPages()
    {
        Skip.Unless(ProcessMappings.CanRead, "reads /proc/self/maps, which only Linux has");
        using TieredMemoryPool pool = DiagnosticPool();

        // A large buffer of the 56 KB class maps 64 KB with a guard page at each end; a trim lets it go within its delay.
        pool.Rent(50_000).Dispose();
        pool.Trim();
        Assert.True(pool.GetStatistics().BytesAwaitingRelease > 0, "the trim should let the region go within its delay");

        // A 4 KB block needs a fresh 64 KB slab: the waiting mapping's length, but not memory a slab may take.
        using IMemoryOwner<byte> block = pool.Rent(4096);
        OwnerRange range = SafetyCases.RangeOf(block);
        TieredMemoryPoolStatistics statistics = pool.GetStatistics();
        Assert.True(
            ProcessMappings.IsWritable(range.Start, range.Length) && statistics.MappingsReused == 0,
            $"the new slab took the guarded region's mapping ({statistics.MappingsReused} mappings reused): its blocks would sit on a PROT_NONE page; {ProcessMappings.Describe(range.Start, range.Length)}");
    }

    /// <summary>A pool in diagnostic mode (large buffers between guard pages), on a clock that only the test moves.</summary>
    private static TieredMemoryPool DiagnosticPool() => new(new TieredMemoryPoolOptions
    {
        Diagnostics = DiagnosticLevel.All,
        TimeProvider = new FakeTimeProvider(),
        IdleReleaseDelay = SafetyCases.IdleDelay,
    });
}
