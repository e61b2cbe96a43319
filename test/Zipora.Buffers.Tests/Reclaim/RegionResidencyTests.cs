using System;
using System.Buffers;
using Microsoft.Extensions.Time.Testing;

namespace Zipora.Buffers.Tests;

/// <summary>
/// Regions the cache's page drop does not reach directly leave resident memory within the delay too, measured with
/// <c>mincore</c>: the region parked in an idle thread's slot, and a region rented again after its pages were dropped
/// and then let go of by a trim.
/// </summary>
public sealed class RegionResidencyTests
{
    private const int LargeSize = 100_000;
    private static readonly TimeSpan s_period = SafetyCases.IdleDelay / 4;

    [Fact]
    public void AnIdleSlotsRegionLeavesResidentMemoryAtTheTickBeforeItsUnmap()
    {
        Skip.Unless(ProcessMappings.CanRead, "residency is read with mincore and mappings from /proc/self/maps (Linux)");
        var time = new FakeTimeProvider();
        using var pool = new TieredMemoryPool(new TieredMemoryPoolOptions { TimeProvider = time, IdleReleaseDelay = SafetyCases.IdleDelay });
        OwnerRange range;
        using (IMemoryOwner<byte> owner = pool.Rent(LargeSize))
        {
            owner.Memory.Span.Fill(0xAB);
            range = SafetyCases.RangeOf(owner);
        }

        // Parked in this thread's slot, which then goes unused for the whole delay.
        SafetyCases.Advance(time, SafetyCases.IdleDelay);
        int resident = ProcessMappings.ResidentPages(range.Start, range.Length);
        Assert.True(resident == 0, $"{range}, parked a delay ago in an unused slot, still has {resident} pages resident at the tick before its unmap");
        Assert.True(ProcessMappings.IsMapped(range.Start, range.Length), $"{range} was unmapped before its delay");

        SafetyCases.Advance(time, s_period);
        TieredMemoryPoolStatistics statistics = pool.GetStatistics();
        Assert.True(statistics.Large.BytesRetained == 0 && statistics.MunmapCalls == 1, statistics.ToString());
    }

    [Fact]
    public void ARegionRentedAgainAfterItsPagesWereDroppedHasThemDroppedAgainWhenATrimLetsItGo()
    {
        Skip.Unless(ProcessMappings.CanRead, "residency is read with mincore and mappings from /proc/self/maps (Linux)");
        var time = new FakeTimeProvider();
        using var pool = new TieredMemoryPool(new TieredMemoryPoolOptions { TimeProvider = time, IdleReleaseDelay = SafetyCases.IdleDelay });
        IMemoryOwner<byte> first = pool.Rent(LargeSize);
        IMemoryOwner<byte> second = pool.Rent(LargeSize);
        first.Dispose();
        second.Dispose();

        // At the tick before their unmap both regions have their pages dropped; both are rented again, written, returned.
        SafetyCases.Advance(time, SafetyCases.IdleDelay);
        IMemoryOwner<byte> again = pool.Rent(LargeSize);
        IMemoryOwner<byte> againToo = pool.Rent(LargeSize);
        again.Memory.Span.Fill(0xCD);
        againToo.Memory.Span.Fill(0xCD);
        OwnerRange[] ranges = [SafetyCases.RangeOf(again), SafetyCases.RangeOf(againToo)];
        again.Dispose();
        againToo.Dispose();

        // Returned a moment ago, so the trim may not unmap them: it must drop the pages their new owners wrote.
        pool.Trim();
        foreach (OwnerRange range in ranges)
        {
            int resident = ProcessMappings.ResidentPages(range.Start, range.Length);
            Assert.True(resident == 0, $"{range}, written after its pages were dropped once and let go of by a trim, still has {resident} pages resident");
            Assert.True(ProcessMappings.IsMapped(range.Start, range.Length), $"{range} was unmapped before its delay");
        }
    }
}
