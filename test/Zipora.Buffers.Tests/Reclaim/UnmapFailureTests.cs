using System;
using System.Buffers;
using Microsoft.Extensions.Time.Testing;

namespace Zipora.Buffers.Tests;

/// <summary>An unmap the OS refuses (at vm.max_map_count) is counted, never subtracted, and tried again until it works.</summary>
public sealed class UnmapFailureTests
{
    private const int RegionSize = 100_000;
    private const long RegionBytes = 114_688;
    private const int OtherClassSize = 120_000;

    [Fact]
    public void ARefusedUnmapKeepsTheMemoryCountedAndIsRetriedAtEveryTick()
    {
        var time = new FakeTimeProvider();
        var allocator = new ScriptedPageAllocator { RefuseUnmap = true, RefuseAdvice = true };
        using var pool = new TieredMemoryPool(new TieredMemoryPoolOptions
        {
            PageAllocator = allocator,
            TimeProvider = time,
            MaxBytesInUse = 4 * RegionBytes,
        });

        IMemoryOwner<byte> first = pool.Rent(RegionSize);
        nint region = OwnerAddress.Of(first);
        first.Dispose();
        AdvanceTicks(time, 6);
        pool.Trim();
        AdvanceTicks(time, 2);

        // Old enough to unmap, but the OS says no: still mapped, still counted against MaxBytesInUse, reported.
        TieredMemoryPoolStatistics refused = pool.GetStatistics();
        Assert.True(refused.UnmapFailures >= 1, refused.ToString());
        Assert.Equal(RegionBytes, refused.BytesAwaitingRelease);
        Assert.Equal(0, refused.MunmapCalls);
        if (ProcessMappings.CanRead)
        {
            Assert.True(ProcessMappings.IsMapped(region, RegionSize), ProcessMappings.Describe(region, RegionSize));
        }

        // Buffers of another class (128 KB), which cannot take the waiting region back: two fit beside it, the third
        // would not (three would fit under the limit if the region no longer counted).
        var owners = new IMemoryOwner<byte>[2];
        for (int i = 0; i < owners.Length; i++)
        {
            owners[i] = pool.Rent(OtherClassSize);
        }

        Assert.Throws<InsufficientMemoryException>(() => pool.Rent(OtherClassSize));
        Array.ForEach(owners, owner => owner.Dispose());

        // The cause passes: the next tick unmaps it, and the bytes stop counting.
        allocator.RefuseUnmap = false;
        AdvanceTicks(time, 1);
        TieredMemoryPoolStatistics released = pool.GetStatistics();
        Assert.Equal(0, released.BytesAwaitingRelease);
        Assert.Equal(1, released.MunmapCalls);
        Assert.Equal(1, allocator.Unmaps);

        // Not checked in /proc/self/maps from here on: once unmapped, the range may be mapped again at once by any
        // other test running in this process (seen in a CI run), so only the allocator's own count is sound.
    }

    private static void AdvanceTicks(FakeTimeProvider time, int ticks)
    {
        for (int tick = 0; tick < ticks; tick++)
        {
            time.Advance(TimeSpan.FromSeconds(2.5));
        }
    }
}
