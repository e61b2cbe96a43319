using Microsoft.Extensions.Time.Testing;

namespace Zipora.Buffers.Tests;

/// <summary>
/// A region parked in a thread's slot has no return time of its own (the slot's fast path writes only the slot's park
/// time): a trim that empties the slot gives it the slot's last park as it leaves. Without that, a region mapped for
/// the slot and never returned to the shared cache kept the stamp it was made with (tick 0), and in a pool whose clock
/// had run past one delay a trim unmapped it at once, moments after its return, under a stale <c>Span</c>. Tests that
/// trim near the pool's start (tick 0 still looks recent) cannot see it.
/// </summary>
public sealed class SlotRegionTrimDelaySafetyTests
{
    private const int RegionSize = 100_000;

    [Fact]
    public void ARegionTrimmedOutOfItsSlotLongAfterThePoolStartedStaysMappedForADelay()
    {
        var time = new FakeTimeProvider();
        using var pool = new TieredMemoryPool(SafetyCases.Options(OwnerMode.Default, time));
        SafetyCases.Advance(time, SafetyCases.IdleDelay * 3);

        // Mapped now, returned into this thread's slot a moment later, then let go of by a trim.
        pool.Rent(RegionSize).Dispose();
        long unmapsBefore = pool.GetStatistics().MunmapCalls;
        pool.Trim();

        TieredMemoryPoolStatistics trimmed = pool.GetStatistics();
        Assert.True(trimmed.MunmapCalls == unmapsBefore && trimmed.BytesAwaitingRelease > 0, $"a region returned a moment ago was unmapped by the trim instead of waiting out the delay\n{trimmed}");

        // It still leaves once the delay has passed.
        SafetyCases.Advance(time, SafetyCases.IdleDelay * 2);
        Assert.Equal(0, pool.GetStatistics().BytesAwaitingRelease);
    }
}
