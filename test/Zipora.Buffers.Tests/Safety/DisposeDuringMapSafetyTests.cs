using System;
using Microsoft.Extensions.Time.Testing;

namespace Zipora.Buffers.Tests;

/// <summary>
/// A pool disposed on another thread while a rent maps a fresh slab or region: the rent fails with
/// <see cref="ObjectDisposedException"/> or serves a buffer, and the mapping is given back exactly once (the allocator
/// fails the test on an unmap of a range it does not hold), whichever way it went.
/// </summary>
public sealed class DisposeDuringMapSafetyTests
{
    [Theory]
    [MemberData(nameof(SafetyCases.TiersInBothOwnerModes), MemberType = typeof(SafetyCases))]
    public void ARentWhosePoolIsDisposedWhileItMapsGivesTheMappingBackOnce(int size, OwnerMode mode)
    {
        var time = new FakeTimeProvider();
        var mappings = new LiveMappingsAllocator();
        var pool = new TieredMemoryPool(mappings.PoolOptions(mode, time));
        mappings.AfterMap = () =>
        {
            mappings.AfterMap = null;
            pool.Dispose();
        };

        Exception? refused = Record.Exception(() => pool.Rent(size).Dispose());
        Assert.True(refused is null or ObjectDisposedException, $"{size} B, {mode}: the rent threw {refused}");
        Assert.Null(mappings.AfterMap);
        SafetyCases.Advance(time, SafetyCases.IdleDelay * 3);
        TieredMemoryPoolStatistics statistics = pool.GetStatistics();
        mappings.AssertNoneLive($"{size} B, {mode}: a rent that raced the pool's disposal ({(refused is null ? "served" : "refused")})\n{statistics}");
        Assert.True(statistics.MmapCalls == statistics.MunmapCalls, $"{size} B, {mode}: {statistics.MmapCalls} mappings made, {statistics.MunmapCalls} unmapped\n{statistics}");
    }
}
