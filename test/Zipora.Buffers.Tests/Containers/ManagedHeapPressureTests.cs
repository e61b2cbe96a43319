using System;
using System.Buffers;
using System.Collections.Generic;

namespace Zipora.Buffers.Tests;

/// <summary>
/// A managed heap near the GC's heap hard limit is relieved by pools of managed memory only: pinned arrays and a
/// <see cref="TieredArrayPool"/>'s arrays are trimmed, native memory is not (it is not in the heap, and trimming it frees
/// nothing the GC may use). Before, an application whose steady heap sat above 75% of the limit (a cache, in a
/// container) had every native pool emptied at every pass of the watcher, once a second, for good.
/// </summary>
public sealed class ManagedHeapPressureTests
{
    [Fact]
    public void AHeapNearItsHardLimitTrimsThePoolsOfManagedMemoryAndLeavesNativeMemoryCached()
    {
        if (IsolatedProcess.RunsElsewhere(typeof(ManagedHeapPressureTests), nameof(AHeapNearItsHardLimitTrimsThePoolsOfManagedMemoryAndLeavesNativeMemoryCached), ("DOTNET_GCHeapHardLimit", "0x10000000")))
        {
            return;
        }

        var options = new TieredMemoryPoolOptions { IdleReleaseDelay = TimeSpan.FromMinutes(10) };
        using var native = new TieredMemoryPool(options);
        using var pinned = new TieredMemoryPool(new TieredMemoryPoolOptions { IdleReleaseDelay = TimeSpan.FromMinutes(10), UsePinnedArrays = true });
        var arrays = new TieredArrayPool(new TieredArrayPoolOptions { IdleReleaseDelay = TimeSpan.FromMinutes(10) });
        Cache(native);
        Cache(pinned);
        arrays.Return(arrays.Rent(64 * 1024));
        long nativeCached = native.GetStatistics().BytesRetained;
        Assert.True(nativeCached > 0);
        Assert.True(pinned.GetStatistics().BytesRetained > 0);
        Assert.True(arrays.GetStatistics().BytesRetained > 0);

        // The heap holds 210 of its 256 MB (82%); the machine's memory is plentiful.
        var heap = new List<byte[]>();
        HeapPressurePasses.Fill(heap, 210);
        string heapState = HeapPressurePasses.WaitOutThree();
        TieredMemoryPoolStatistics pinnedAfter = pinned.GetStatistics();
        Assert.True(pinnedAfter.PressureTrims > 0, $"the pinned-array pool was not trimmed: {heapState}");
        Assert.Equal(0, pinnedAfter.BytesRetained);
        Assert.Equal(0, arrays.GetStatistics().BytesRetained);
        TieredMemoryPoolStatistics nativeAfter = native.GetStatistics();
        Assert.True(nativeAfter.PressureTrims == 0, $"the native pool was trimmed for the managed heap: {heapState}");
        Assert.Equal(nativeCached, nativeAfter.BytesRetained);
        GC.KeepAlive(heap);
    }

    private static void Cache(TieredMemoryPool pool)
    {
        var owners = new List<IMemoryOwner<byte>>();
        for (int i = 0; i < 64; i++)
        {
            IMemoryOwner<byte> owner = pool.Rent(16 * 1024);
            owner.Memory.Span.Fill(1);
            owners.Add(owner);
        }

        owners.ForEach(owner => owner.Dispose());
    }
}
