using System.Buffers;
using Microsoft.Extensions.Time.Testing;

namespace Zipora.Buffers.Tests;

/// <summary>
/// A block held for many delays and returned a moment before a trim: its class's last activity the idle releaser saw
/// is long past, but the return is not. The slab the trim lets go of must wait out a delay from the return, as a stale
/// <c>Span</c> of the block's holder may still write to it; unmapped at once, that write would fault.
/// </summary>
public sealed class HeldBlockTrimDelaySafetyTests
{
    [Theory]
    [InlineData(100)]
    [InlineData(4096)]
    public void ASlabWhoseOnlyBlockCameBackAMomentBeforeATrimStaysMappedForTheDelay(int size)
    {
        Skip.Unless(ProcessMappings.CanRead, "reads /proc/self/maps, which only Linux has");
        var time = new FakeTimeProvider();
        using var pool = new TieredMemoryPool(new TieredMemoryPoolOptions { TimeProvider = time, IdleReleaseDelay = SafetyCases.IdleDelay, EnableHugepages = false });
        IMemoryOwner<byte> held = pool.Rent(size);
        OwnerRange range = SafetyCases.RangeOf(held);

        // The idle releaser sees the rent, then the class quiet for three delays while the block is held.
        SafetyCases.Advance(time, SafetyCases.IdleDelay * 3);
        long unmapsBefore = pool.GetStatistics().MunmapCalls;

        held.Dispose();
        pool.Trim();
        TieredMemoryPoolStatistics after = pool.GetStatistics();
        Assert.True(
            after.MunmapCalls == unmapsBefore && ProcessMappings.IsMapped(range.Start, range.Length),
            $"a trim right after the {size} B block's return unmapped its slab ({unmapsBefore} unmaps before, {after.MunmapCalls} after): a stale write would fault\n{after}");

        // Once the delay is over, it goes.
        SafetyCases.Advance(time, SafetyCases.IdleDelay * 2);
        TieredMemoryPoolStatistics end = pool.GetStatistics();
        Assert.True(end.BytesAwaitingRelease == 0 && end.MunmapCalls > unmapsBefore, $"the slab was still not unmapped two delays after its block's return\n{end}");
    }
}
