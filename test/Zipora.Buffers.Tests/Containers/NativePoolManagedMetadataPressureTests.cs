using System;
using System.Buffers;
using System.Collections.Generic;

namespace Zipora.Buffers.Tests;

/// <summary>
/// A native pool keeps an object on the managed heap for every block it carved (its manager, 85 bytes measured), cached
/// or rented: a cache of a million 64-byte buffers holds 64 MB of native memory and about 85 MB of the heap. A heap near
/// the GC's heap hard limit trims such a pool, whose trim gives the heap that much back; a native pool whose cache holds
/// little of the heap is still left alone (ManagedHeapPressureTests). Before, no native pool was trimmed for the heap, and
/// an application at its limit ran out of managed memory while the pool sat on a fifth of its heap.
/// </summary>
public sealed class NativePoolManagedMetadataPressureTests
{
    private const int Megabyte = 1024 * 1024;
    private const int Buffers = 1_000_000;
    // The heap past the watcher's 75% of its limit, with little room left: the trim allocates no table of the free
    // blocks (TrimAllocationBoundTests). When it made one (28 bytes a block, about 20 MB for a million), a 256 MB limit
    // filled to 78% left it 28-41 MB, and beside a busy suite it ran out of managed memory at all three of the
    // watcher's passes (64 MB left cached); the test ran under 512 MB with a 310 MB fill then.
    private const long FillMegabytes = 100;

    [Fact]
    public void AHeapNearItsHardLimitTrimsANativePoolWhoseCacheHoldsMuchOfTheHeap()
    {
        if (IsolatedProcess.RunsElsewhere(typeof(NativePoolManagedMetadataPressureTests), nameof(AHeapNearItsHardLimitTrimsANativePoolWhoseCacheHoldsMuchOfTheHeap), ("DOTNET_GCHeapHardLimit", "0x10000000")))
        {
            return;
        }

        var native = new TieredMemoryPool(new TieredMemoryPoolOptions { IdleReleaseDelay = TimeSpan.FromMinutes(10) });
        var heap = new List<byte[]>();
        try
        {
            AssertTrimmedForTheHeap(native, heap);
        }
        finally
        {
            // The heap let go of first: a dispose at the limit may run out of managed memory partway.
            heap.Clear();
            native.Dispose();
        }
    }

    private static void AssertTrimmedForTheHeap(TieredMemoryPool native, List<byte[]> heap)
    {
        long heapBefore = GC.GetTotalMemory(forceFullCollection: true);
        CacheSmallBuffers(native);
        long poolsHeap = GC.GetTotalMemory(forceFullCollection: true) - heapBefore;
        Assert.True(poolsHeap > 40L * Megabyte, $"the pool's cache holds {poolsHeap / Megabyte} MB of the heap");

        // With the pool's cache, the heap holds about 200 of its 256 MB (78%); the machine's memory is plentiful.
        HeapPressurePasses.Fill(heap, FillMegabytes);
        string heapState = HeapPressurePasses.WaitOutThree();
        TieredMemoryPoolStatistics after = native.GetStatistics();
        TestContext.Current.SendDiagnosticMessage($"margin: the cache held {poolsHeap / Megabyte} MB of the heap; {heapState}; {after.PressureTrims} pressure trims, {after.Small.BytesRetained / Megabyte} MB still cached");
        Assert.True(after.PressureTrims > 0, $"the native pool was not trimmed: {heapState}");
        Assert.Equal(0, after.Small.BytesRetained);
        long poolsHeapAfter = GC.GetTotalMemory(forceFullCollection: true) - heapBefore - (FillMegabytes * Megabyte);
        Assert.True(poolsHeap - poolsHeapAfter > 40L * Megabyte, $"the trim gave the heap {(poolsHeap - poolsHeapAfter) / Megabyte} of {poolsHeap / Megabyte} MB back: {heapState}");
    }

    private static void CacheSmallBuffers(TieredMemoryPool pool)
    {
        var owners = new IMemoryOwner<byte>[Buffers];
        for (int i = 0; i < Buffers; i++)
        {
            owners[i] = pool.Rent(64);
        }

        foreach (IMemoryOwner<byte> owner in owners)
        {
            owner.Dispose();
        }
    }
}
