using System.Buffers;
using Microsoft.Extensions.Time.Testing;
using Zipora.Buffers.Native;

namespace Zipora.Buffers.Tests;

/// <summary>
/// A caller's racing second dispose can list a free block twice in a slab tier's caches (the trims find such copies
/// and keep one). The pool's dispose must release it once: a slab counts down the blocks it still waits for, and a
/// copy counted twice would let the slab go, one idle delay later, under another of its blocks still rented, whose
/// next write would then end the process.
/// </summary>
public sealed class DisposeWithABlockListedTwiceSafetyTests
{
    [Theory]
    [InlineData(OwnerMode.Default)]
    [InlineData(OwnerMode.ReuseOwners)]
    public void ACopyListedTwiceIsReleasedOnceAndTheSlabWaitsForItsRentedBlock(OwnerMode mode)
    {
        Skip.Unless(ProcessMappings.CanRead, "needs Linux's /proc/self/maps");
        var time = new FakeTimeProvider();
        var pool = new TieredMemoryPool(SafetyCases.Options(mode, time));

        // Three blocks of one fresh slab: two go back to the caches, one of them listed twice; the third stays rented.
        IMemoryOwner<byte> first = pool.Rent(64);
        IMemoryOwner<byte> second = pool.Rent(64);
        IMemoryOwner<byte> rented = pool.Rent(64);
        NativeMemoryManager twice = DepotReservation.BlockOf(first);
        first.Dispose();
        second.Dispose();
        DepotReservation.ListAgain(pool, "_small", twice);

        pool.Dispose();
        SafetyCases.Advance(time, SafetyCases.IdleDelay * 3);

        OwnerRange range = SafetyCases.RangeOf(rented);
        Assert.True(ProcessMappings.IsWritable(range.Start, range.Length), $"a block still rented lost its slab after the pool's dispose: {ProcessMappings.Describe(range.Start, range.Length)}");
        rented.Memory.Span.Fill(0x5A);

        rented.Dispose();
        SafetyCases.AssertDrainedThreeDelaysLater(pool, time);
        TieredMemoryPoolStatistics drained = pool.GetStatistics();
        Assert.True(drained.MmapCalls == drained.MunmapCalls && drained.BytesInUse == 0, $"once the rented block is back, its slab goes: {drained}");
    }
}
