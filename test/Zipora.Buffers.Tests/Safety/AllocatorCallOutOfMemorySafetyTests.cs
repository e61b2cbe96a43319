using System;
using System.Buffers;
using System.Collections.Generic;
using Microsoft.Extensions.Time.Testing;

namespace Zipora.Buffers.Tests;

/// <summary>
/// At the GC heap limit any call can throw <see cref="OutOfMemoryException"/> before it does anything: the runtime
/// allocates at a method's first calls and at its tiering steps. An unmap, a page hint or a protection change that
/// throws so is a refusal to the pool (counted, the mapping kept, mapped and counted, and tried again at a later
/// tick), never an exception out of a trim, a tick or a rent, and never a mapping nobody knows of. Seen from outside
/// the pool: the allocator's list of live mappings.
/// </summary>
public sealed class AllocatorCallOutOfMemorySafetyTests
{
    [Theory]
    [MemberData(nameof(SafetyCases.TiersInBothOwnerModes), MemberType = typeof(SafetyCases))]
    public void UnmapsAndHintsThatThrowOutOfMemoryAreRefusalsTriedAgainAndLeakNoMapping(int size, OwnerMode mode)
    {
        var time = new FakeTimeProvider();
        var mappings = new LiveMappingsAllocator();
        using var pool = new TieredMemoryPool(mappings.PoolOptions(mode, time));
        long backgroundFailures = BackgroundFailures.Count;
        string what = $"{size} B, {mode}";

        // Cached memory, then every way the pool lets go of it while each call throws: the idle release's page drops
        // and unmaps at its ticks, and a trim.
        List<IMemoryOwner<byte>> owners = DepotReservation.Rent(pool, size, 40);
        owners.ForEach(static owner => owner.Dispose());
        mappings.CallsRunOutOfMemory = true;
        SafetyCases.Advance(time, SafetyCases.IdleDelay * 3);
        pool.Trim();
        SafetyCases.Advance(time, SafetyCases.IdleDelay * 3);
        TieredMemoryPoolStatistics refused = pool.GetStatistics();
        Assert.True(mappings.Live().Length > 0, $"{what}: nothing stayed mapped while every unmap threw");
        Assert.True(refused.UnmapFailures > 0, $"{what}: unmaps that threw were not counted as refused\n{refused}");
        Assert.True(refused.BytesAwaitingRelease > 0, $"{what}: the mappings whose unmap threw are not listed to be tried again\n{refused}");

        // The calls work again: the next ticks unmap everything that waited.
        mappings.CallsRunOutOfMemory = false;
        SafetyCases.Advance(time, SafetyCases.IdleDelay * 3);
        pool.Trim();
        SafetyCases.Advance(time, SafetyCases.IdleDelay * 3);
        TieredMemoryPoolStatistics after = pool.GetStatistics();
        mappings.AssertNoneLive($"{what}, once the calls that threw work again\n{after}");
        Assert.True(after.MmapCalls == after.MunmapCalls && after.BytesAwaitingRelease == 0, $"{what}: {after.MmapCalls} mappings made, {after.MunmapCalls} unmapped, {after.BytesAwaitingRelease} bytes still waiting\n{after}");
        Assert.Equal(0, BackgroundFailures.Count - backgroundFailures);
    }

    [Theory]
    [MemberData(nameof(SafetyCases.EveryTier), MemberType = typeof(SafetyCases))]
    public void ARentWhoseHugepageHintOrGuardPagesThrowOutOfMemoryServesAWritableBufferAndLeaksNoMapping(int size)
    {
        var time = new FakeTimeProvider();
        var mappings = new LiveMappingsAllocator();
        using (var pool = new TieredMemoryPool(mappings.PoolOptions(OwnerMode.DiagnosticsAll, time)))
        {
            // Diagnostic mode guards each region with protected pages; a huge region asks for transparent hugepages.
            mappings.CallsRunOutOfMemory = true;
            using (IMemoryOwner<byte> owner = pool.Rent(size))
            {
                owner.Memory.Span.Fill(0x5a);
                Assert.True(owner.Memory.Span[^1] == 0x5a, $"{size} B: the buffer rented while its hints threw does not hold what was written");
            }

            mappings.CallsRunOutOfMemory = false;
            pool.Trim();
            SafetyCases.Advance(time, SafetyCases.IdleDelay * 3);
        }

        SafetyCases.Advance(time, SafetyCases.IdleDelay * 3);
        mappings.AssertNoneLive($"{size} B: a rent whose hints threw, after the pool's disposal");
    }
}
