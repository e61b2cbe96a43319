using System;
using System.Buffers;
using System.Runtime.CompilerServices;
using Microsoft.Extensions.Time.Testing;

namespace Zipora.Buffers.Tests;

/// <summary>
/// A <see cref="MemoryHandle"/> from <c>Pin()</c> is a raw pointer, which the GC does not follow as it follows a
/// <c>Span</c>: kept past its owner's dispose (an I/O still in flight, say), it must keep its pinned array alive through
/// a release under memory pressure, which lets pinned arrays go before the idle delay. Otherwise the array is collected
/// within the delay and the pointer writes into memory the GC gives to someone else, or has given back to the OS.
/// </summary>
public sealed class StalePinnedHandlePressureReleaseTests
{
    private const int RegionSize = 100_000;

    // The default owner, the block itself (ReuseOwners), and the diagnostic owner.
    public static TheoryData<bool, DiagnosticLevel> Owners => new()
    {
        { false, DiagnosticLevel.Off },
        { true, DiagnosticLevel.Off },
        { false, DiagnosticLevel.All },
    };

    [Theory]
    [MemberData(nameof(Owners))]
    public void AMemoryHandleKeptPastDisposeKeepsItsPinnedArrayAliveThroughAPressureRelease(bool reuseOwners, DiagnosticLevel diagnostics)
    {
        using TieredMemoryPool pool = PinnedPool(reuseOwners, diagnostics);

        // In a box: disposed in place, no copy of the handle is left on the stack to hold the array.
        var handle = new StrongBox<MemoryHandle>();
        WeakReference array = PinThenDispose(pool, RegionSize, pinAt: 0, handle);

        // Let go of at once under pressure, then an aggressive collection: only the stale handle refers to the array.
        ((IReclaimablePool)pool).TrimUnderPressure();
        Assert.Equal(0, pool.GetStatistics().BytesAwaitingRelease);
        CollectAggressively();
        Assert.True(array.IsAlive, "the pinned array was collected under a live MemoryHandle within the idle delay");

        // Its pointer still reaches the array's memory, and nothing else is given that memory.
        WriteThrough(handle.Value);

        // The handle released, nothing holds the array any more: the release did give it up.
        handle.Value.Dispose();
        CollectAggressively();
        Assert.False(array.IsAlive);
    }

    /// <summary>
    /// Small and medium blocks are carved from slabs, whose managers are made apart from the mapping, and huge blocks
    /// take another path to their pages: the handle, pinned at an interior index, holds its array in every tier too.
    /// </summary>
    [Theory]
    [MemberData(nameof(EveryTier))]
    public void AStaleHandleHoldsItsPinnedArrayThroughAPressureReleaseInEveryTier(int size, bool reuseOwners, DiagnosticLevel diagnostics)
    {
        using TieredMemoryPool pool = PinnedPool(reuseOwners, diagnostics);
        var handle = new StrongBox<MemoryHandle>();
        WeakReference array = PinThenDispose(pool, size, pinAt: size / 2, handle);

        ((IReclaimablePool)pool).TrimUnderPressure();
        Assert.Equal(0, pool.GetStatistics().BytesAwaitingRelease);
        CollectAggressively();
        Assert.True(array.IsAlive, "the pinned array was collected under a live MemoryHandle");

        handle.Value.Dispose();
    }

    public static TheoryData<int, bool, DiagnosticLevel> EveryTier()
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

    private static TieredMemoryPool PinnedPool(bool reuseOwners, DiagnosticLevel diagnostics) => new(new TieredMemoryPoolOptions
    {
        UsePinnedArrays = true,
        ReuseOwners = reuseOwners,
        Diagnostics = diagnostics,
        TimeProvider = new FakeTimeProvider(),
    });

    [MethodImpl(MethodImplOptions.NoInlining)]
    private static WeakReference PinThenDispose(TieredMemoryPool pool, int size, int pinAt, StrongBox<MemoryHandle> handle)
    {
        IMemoryOwner<byte> owner = pool.Rent(size);
        WeakReference array = PinnedArrayOf.Weakly(owner);
        handle.Value = owner.Memory.Slice(pinAt).Pin();
        owner.Dispose();
        return array;
    }

    [MethodImpl(MethodImplOptions.NoInlining)]
    private static unsafe void WriteThrough(MemoryHandle handle)
    {
        // Here, not in the test: a span's reference left in the test's frame would hold the array itself.
        var stale = new Span<byte>(handle.Pointer, RegionSize);
        stale.Fill(0x5A);
        Assert.True(stale.IndexOfAnyExcept((byte)0x5A) < 0);
    }

    private static void CollectAggressively()
    {
        GC.Collect(GC.MaxGeneration, GCCollectionMode.Aggressive, blocking: true, compacting: true);
        GC.WaitForPendingFinalizers();
        GC.Collect(GC.MaxGeneration, GCCollectionMode.Aggressive, blocking: true, compacting: true);
    }
}
