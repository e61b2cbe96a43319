using System;
using System.Buffers;
using Microsoft.Extensions.Time.Testing;
using Zipora.Buffers.Native;

namespace Zipora.Buffers.Tests;

/// <summary>
/// A tick drops a cached region's pages outside the tier's lock: a rent meanwhile must not be handed that region, or
/// the advice would wipe what its new owner wrote. The rent is made from inside the advice call, just before it reaches the OS.
/// </summary>
public sealed class RegionPageDropRentSafetyTests
{
    private const int LargeSize = 100_000;

    [Fact]
    public void ARentWhileATickDropsTheOnlyCachedRegionsPagesKeepsWhatItWrites()
    {
        var time = new FakeTimeProvider();
        var allocator = new ScriptedPageAllocator();
        using var pool = new TieredMemoryPool(new TieredMemoryPoolOptions { TimeProvider = time, IdleReleaseDelay = SafetyCases.IdleDelay, PageAllocator = allocator });
        pool.Rent(LargeSize).Dispose();

        IMemoryOwner<byte>? rentedDuringAdvice = null;
        allocator.BeforeAdvice = (_, _, advice) =>
        {
            if (rentedDuringAdvice is null && advice is PageAdvice.DontNeed or PageAdvice.Free)
            {
                rentedDuringAdvice = pool.Rent(LargeSize);
                rentedDuringAdvice.Memory.Span.Fill(0x5A);
            }
        };

        // The tick before its unmap drops the region's pages (it left the idle slot for the cache at that tick).
        SafetyCases.Advance(time, SafetyCases.IdleDelay);
        allocator.BeforeAdvice = null;

        Assert.NotNull(rentedDuringAdvice);
        using IMemoryOwner<byte> owner = rentedDuringAdvice;
        int lost = owner.Memory.Span.Length - owner.Memory.Span.Count((byte)0x5A);
        Assert.True(lost == 0, $"{lost} of {owner.Memory.Length} bytes written by a rent made while a tick dropped a cached region's pages were wiped: the rent was handed the region being advised");
    }
}
