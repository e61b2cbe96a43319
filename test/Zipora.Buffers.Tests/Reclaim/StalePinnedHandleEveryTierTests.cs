using System;
using System.Buffers;
using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
using Microsoft.Extensions.Time.Testing;

namespace Zipora.Buffers.Tests;

/// <summary>
/// A <see cref="MemoryHandle"/> kept past its owner's dispose must hold its pinned array through a pressure release in
/// every tier, not only the large one: small and medium blocks are carved from slabs, whose managers are made apart
/// from the mapping, and huge blocks take another path to their pages.
/// </summary>
public sealed class StalePinnedHandleEveryTierTests
{
    public static TheoryData<int, bool, DiagnosticLevel> Cases()
    {
        var data = new TheoryData<int, bool, DiagnosticLevel>();
        foreach (int size in new[] { 64, 4096, 100_000, 3 * 1024 * 1024 })
        {
            data.Add(size, false, DiagnosticLevel.Off);
            data.Add(size, true, DiagnosticLevel.Off);
            data.Add(size, false, DiagnosticLevel.Sampled);
            data.Add(size, false, DiagnosticLevel.All);
        }

        return data;
    }

    [Theory]
    [MemberData(nameof(Cases))]
    public void AStaleHandleHoldsItsPinnedArrayThroughAPressureReleaseInEveryTier(int size, bool reuseOwners, DiagnosticLevel diagnostics)
    {
        using var pool = new TieredMemoryPool(new TieredMemoryPoolOptions
        {
            UsePinnedArrays = true,
            ReuseOwners = reuseOwners,
            Diagnostics = diagnostics,
            TimeProvider = new FakeTimeProvider(),
        });
        var handle = new StrongBox<MemoryHandle>();
        WeakReference array = PinThenDispose(pool, size, handle);

        ((IReclaimablePool)pool).TrimUnderPressure();
        Assert.Equal(0, pool.GetStatistics().BytesAwaitingRelease);
        CollectAggressively();
        Assert.True(array.IsAlive, "the pinned array was collected under a live MemoryHandle");

        handle.Value.Dispose();
    }

    [MethodImpl(MethodImplOptions.NoInlining)]
    private static WeakReference PinThenDispose(TieredMemoryPool pool, int size, StrongBox<MemoryHandle> handle)
    {
        IMemoryOwner<byte> owner = pool.Rent(size);
        Assert.True(MemoryMarshal.TryGetArray(owner.Memory, out ArraySegment<byte> segment));
        var array = new WeakReference(segment.Array);
        handle.Value = owner.Memory.Slice(size / 2).Pin();
        owner.Dispose();
        return array;
    }

    private static void CollectAggressively()
    {
        GC.Collect(GC.MaxGeneration, GCCollectionMode.Aggressive, blocking: true, compacting: true);
        GC.WaitForPendingFinalizers();
        GC.Collect(GC.MaxGeneration, GCCollectionMode.Aggressive, blocking: true, compacting: true);
    }
}
