using System;
using Microsoft.Extensions.Time.Testing;

namespace Zipora.Buffers.Tests;

/// <summary>
/// A new slab may take a mapping let go of within its idle delay (<see cref="TieredMemoryPoolStatistics.MappingsReused"/>),
/// which a stale <c>Span</c> of its old holder may still write to. A rent that made such a slab and then ran out of
/// managed memory for its first block's manager gives the mapping back. Once, it left the slab in the heap, empty, and
/// the next trim let it go stamped with its class's last use: for a class never used, never, so it was unmapped at once
/// under the stale <c>Span</c>. Now the slab is listed only with its first block cut, and the mapping goes back
/// stamped with the moment it was taken; either way it must wait out a delay from then, as memory let go of does.
/// </summary>
public sealed class EmptySlabReuseDelayTests
{
    [Fact]
    public void AnEmptySlabOnATakenMappingThatATrimLetsGoOfWaitsOutADelay()
    {
        Skip.Unless(ProcessMappings.CanRead, "reads /proc/self/maps, which only Linux has");
        var time = new FakeTimeProvider();
        var allocator = new ScriptedPageAllocator();
        using var pool = new TieredMemoryPool(new TieredMemoryPoolOptions { PageAllocator = allocator, TimeProvider = time, IdleReleaseDelay = SafetyCases.IdleDelay });

        // The clock well past a delay, so memory stamped with an unused class's last use is unmapped at once.
        SafetyCases.Advance(time, SafetyCases.IdleDelay * 3);

        // A medium block on its own 64 KB slab, let go of by a trim: pages dropped, mapping kept for the delay. The
        // small tier's thread cache made first, by a class other than the one rented below.
        pool.Rent(128).Dispose();
        System.Buffers.IMemoryOwner<byte> stale = pool.Rent(4096);
        OwnerRange range = SafetyCases.RangeOf(stale);
        stale.Dispose();
        pool.Trim();
        TieredMemoryPoolStatistics before = pool.GetStatistics();
        Assert.True(before.BytesAwaitingRelease >= 64 * 1024, $"the trim left the slab of the block let go of nothing to wait out\n{before}");

        // A small class's first slab (64 KB too) takes a waiting mapping; its first block's manager runs out of memory.
        allocator.ManagersRunOutOfMemory = true;
        _ = Assert.Throws<OutOfMemoryException>(() => pool.Rent(64));
        allocator.ManagersRunOutOfMemory = false;
        TieredMemoryPoolStatistics failed = pool.GetStatistics();
        Assert.True(failed.MappingsReused > before.MappingsReused, $"the rent made no slab on a waiting mapping\n{failed}");
        Assert.True(failed.Small.BytesInUse == 0 && failed.Small.BytesAllocated == before.Small.BytesAllocated, $"the rent that failed left a slab or a block behind\n{failed}");

        // No time passes: all the memory was let go of, or taken, within the delay.
        pool.Trim();
        TieredMemoryPoolStatistics after = pool.GetStatistics();
        Assert.True(
            after.MunmapCalls == before.MunmapCalls && ProcessMappings.IsMapped(range.Start, range.Length),
            $"a trim unmapped memory let go of and taken again within its delay ({before.MunmapCalls} unmaps before, {after.MunmapCalls} after; the stale block {(ProcessMappings.IsMapped(range.Start, range.Length) ? "still" : "no longer")} mapped): a stale write would fault\n{after}");

        // Once the delay is over, everything goes.
        SafetyCases.Advance(time, SafetyCases.IdleDelay * 3);
        pool.Trim();
        SafetyCases.Advance(time, SafetyCases.IdleDelay * 3);
        TieredMemoryPoolStatistics end = pool.GetStatistics();
        Assert.True(end.BytesAwaitingRelease == 0 && end.BytesInUse == 0, $"memory left behind once the delay was over\n{end}");
    }
}
