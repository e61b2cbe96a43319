using System;
using System.Buffers;
using System.Collections.Generic;
using Zipora.Buffers.Native;

namespace Zipora.Buffers.Tests;

/// <summary>
/// The contract every configuration of <see cref="TieredMemoryPool"/> keeps, run once per configuration by the
/// sealed subclasses beside this file.
/// </summary>
public abstract class MemoryPoolContractTests
{
    /// <summary>One size per tier, plus the tier boundaries.</summary>
    public static TheoryData<int> SizesAcrossTiers => new() { 1, 100, 1023, 1024, 1025, 4096, 16384, 16385, 100_000, 2 * 1024 * 1024, (2 * 1024 * 1024) + 1, 5_000_000 };

    protected abstract TieredMemoryPoolOptions CreateOptions();

    /// <summary>True when the pooled manager itself is handed out again and again (<see cref="TieredMemoryPoolOptions.ReuseOwners"/>).</summary>
    protected virtual bool OwnersAreReused => false;

    /// <summary>Managed bytes a steady rent and dispose allocates: the owner of each rent (32 B; MemoryPool&lt;byte&gt;.Shared's is 24), none when owners are reused.</summary>
    protected virtual long BytesAllocatedPerRent => OwnersAreReused ? 0 : 32;

    /// <summary>True when every buffer is also an array segment (the pinned-arrays backend).</summary>
    protected virtual bool ArrayBacked => false;

    protected TieredMemoryPool CreatePool() => new(CreateOptions());

    [Fact]
    public void RentBelowMinusOneThrowsArgumentOutOfRange()
    {
        using TieredMemoryPool pool = CreatePool();
        var error = Assert.Throws<ArgumentOutOfRangeException>(() => pool.Rent(-2));
        Assert.Equal("minBufferSize", error.ParamName);
        Assert.Throws<ArgumentOutOfRangeException>(() => pool.Rent(int.MinValue));
    }

    [Fact]
    public void RentAboveMaxBufferSizeThrowsArgumentOutOfRange()
    {
        using TieredMemoryPool pool = CreatePool();
        var error = Assert.Throws<ArgumentOutOfRangeException>(() => pool.Rent(pool.MaxBufferSize + 1));
        Assert.Equal("minBufferSize", error.ParamName);
        Assert.Throws<ArgumentOutOfRangeException>(() => pool.Rent(int.MaxValue));
        Assert.Equal(0, pool.GetStatistics().BytesInUse);
    }

    [Fact]
    public void RentMinusOneGivesTheDefaultSize()
    {
        using TieredMemoryPool pool = CreatePool();
        using IMemoryOwner<byte> owner = pool.Rent();
        Assert.Equal(TieredMemoryPool.DefaultBufferSize, owner.Memory.Length);
        using IMemoryOwner<byte> explicitOwner = pool.Rent(-1);
        Assert.Equal(4096, explicitOwner.Memory.Length);
    }

    [Fact]
    public void RentZeroGivesTheSmallestNonEmptyBuffer()
    {
        using TieredMemoryPool pool = CreatePool();
        using IMemoryOwner<byte> owner = pool.Rent(0);
        Assert.Equal(16, owner.Memory.Length);
    }

    [Theory]
    [MemberData(nameof(SizesAcrossTiers))]
    public void RentedMemoryIsAtLeastTheRequestAndFullyWritable(int size)
    {
        using TieredMemoryPool pool = CreatePool();
        using IMemoryOwner<byte> owner = pool.Rent(size);
        Memory<byte> memory = owner.Memory;
        Assert.InRange(memory.Length, size, LargestClassFor(size));
        memory.Span.Fill(0xA5);
        Assert.Equal(0xA5, memory.Span[^1]);
        Assert.Equal(0xA5, memory.Span[0]);
    }

    [Theory]
    [MemberData(nameof(SizesAcrossTiers))]
    public void DisposingAnOwnerTwiceIsHarmless(int size)
    {
        using TieredMemoryPool pool = CreatePool();
        IMemoryOwner<byte> owner = pool.Rent(size);
        owner.Dispose();
        owner.Dispose();

        // A second dispose must not have put the buffer in the cache twice: two live rents never share memory.
        using IMemoryOwner<byte> first = pool.Rent(size);
        using IMemoryOwner<byte> second = pool.Rent(size);
        Assert.False(first.Memory.Span.Overlaps(second.Memory.Span));
        TierStatistics tier = Tier(pool.GetStatistics(), size);
        Assert.Equal(3, tier.Rents);
        Assert.Equal(1, tier.Returns);
    }

    [Theory]
    [MemberData(nameof(SizesAcrossTiers))]
    public void MemoryAfterDisposeThrowsObjectDisposed(int size)
    {
        using TieredMemoryPool pool = CreatePool();
        IMemoryOwner<byte> owner = pool.Rent(size);
        Memory<byte> stale = owner.Memory;
        owner.Dispose();
        Assert.Throws<ObjectDisposedException>(() => owner.Memory);
        Assert.Throws<ObjectDisposedException>(() => stale.Span.Length);
        Assert.Throws<ObjectDisposedException>(() => stale.Pin());
    }

    [Fact]
    public void PinningGivesTheNativeAddressWithoutAGCHandle()
    {
        using TieredMemoryPool pool = CreatePool();
        using IMemoryOwner<byte> owner = pool.Rent(4096);
        using (MemoryHandle handle = owner.Memory.Pin())
        using (MemoryHandle end = owner.Memory.Slice(owner.Memory.Length).Pin())
        {
            unsafe
            {
                Assert.True(handle.Pointer == System.Runtime.CompilerServices.Unsafe.AsPointer(ref owner.Memory.Span[0]));
                Assert.Equal((nint)handle.Pointer + owner.Memory.Length, (nint)end.Pointer);
                if (OwnersAreReused)
                {
                    Assert.Equal(Assert.IsType<NativeMemoryManager>(owner).Address, (nint)handle.Pointer);
                }
            }
        }

        Assert.Equal(ArrayBacked, System.Runtime.InteropServices.MemoryMarshal.TryGetArray<byte>(owner.Memory, out ArraySegment<byte> segment));
        if (ArrayBacked)
        {
            owner.Memory.Span.Fill(0x42);
            Assert.Equal(owner.Memory.Length, segment.Count);
            Assert.True(segment.AsSpan().IndexOfAnyExcept((byte)0x42) < 0);
        }
    }

    [Fact]
    public void RentAfterThePoolIsDisposedThrowsObjectDisposed()
    {
        TieredMemoryPool pool = CreatePool();
        pool.Dispose();
        foreach (int size in new[] { 10, 4096, 100_000, 4_000_000 })
        {
            Assert.Throws<ObjectDisposedException>(() => pool.Rent(size));
        }
    }

    [Fact]
    public void BuffersRentedBeforeDisposeStayValidAndAreFreedWhenReturned()
    {
        TieredMemoryPool pool = CreatePool();
        var cached = new List<IMemoryOwner<byte>>();
        var live = new List<IMemoryOwner<byte>>();
        foreach (int size in new[] { 10, 500, 4096, 16384, 100_000, 1_000_000, 4_000_000 })
        {
            cached.Add(pool.Rent(size));
            live.Add(pool.Rent(size));
        }

        cached.ForEach(owner => owner.Dispose());
        pool.Dispose();
        TieredMemoryPoolStatistics afterDispose = pool.GetStatistics();
        Assert.True(afterDispose.BytesInUse > 0);

        byte value = 1;
        foreach (IMemoryOwner<byte> owner in live)
        {
            owner.Memory.Span.Fill(value);
            Assert.True(owner.Memory.Span.IndexOfAnyExcept(value) < 0);
            value++;
        }

        live.ForEach(owner => owner.Dispose());
        TieredMemoryPoolStatistics statistics = pool.GetStatistics();
        foreach (TierStatistics tier in new[] { statistics.Small, statistics.Medium, statistics.Large, statistics.Huge })
        {
            Assert.Equal(0, tier.BytesInUse);
            Assert.Equal(0, tier.BytesRetained);
            Assert.Equal(tier.Rents, tier.Returns);
        }
    }

    [Fact]
    public void DisposingThePoolTwiceIsHarmless()
    {
        TieredMemoryPool pool = CreatePool();
        pool.Rent(4096).Dispose();
        pool.Dispose();
        pool.Dispose();
        Assert.Equal(0, pool.GetStatistics().BytesRetained);
    }

    [Theory]
    [MemberData(nameof(SizesAcrossTiers))]
    public void SteadyRentAndDisposeAllocateNothingButTheOwner(int size)
    {
        if (BytesAllocatedPerRent < 0)
        {
            Skip.Because("diagnostic mode allocates an owner with its bookkeeping per rent, by design, so misuse can be reported");
        }

        using TieredMemoryPool pool = CreatePool();

        Assert.Equal(BytesAllocatedPerRent * 10_000, SteadyRents.BytesAllocated(pool, size, 10_000));
    }

    [Theory]
    [MemberData(nameof(SizesAcrossTiers))]
    public void AStaleDisposeAfterTheBlockWasRentedAgainIsIgnored(int size)
    {
        if (OwnersAreReused)
        {
            Skip.Because("with ReuseOwners the owner is the block: a stale dispose returns the next renter's block (documented)");
        }

        using TieredMemoryPool pool = CreatePool();
        IMemoryOwner<byte> stale = pool.Rent(size);
        Memory<byte> staleMemory = stale.Memory;
        stale.Dispose();
        using IMemoryOwner<byte> live = pool.Rent(size);
        stale.Dispose();

        using IMemoryOwner<byte> next = pool.Rent(size);
        Assert.False(OwnerAddress.Overlap(live, next));
        Assert.Throws<ObjectDisposedException>(() => staleMemory.Span.Length);
        Assert.Throws<ObjectDisposedException>(() => stale.Memory);
        Assert.Equal(2, Tier(pool.GetStatistics(), size).BuffersInUse);
    }

    /// <summary>The rounding each tier promises: 16-byte steps or a quarter of the doubling (small, large, huge), the next power of two (medium).</summary>
    internal static long LargestClassFor(int size) => size switch
    {
        < 1024 => Math.Max(16, (size * 5L / 4) + 16),
        <= 16384 => 2L * size,
        _ => size * 5L / 4,
    };

    internal static TierStatistics Tier(TieredMemoryPoolStatistics statistics, int size) => size switch
    {
        < 1024 => statistics.Small,
        <= 16384 => statistics.Medium,
        <= 2 * 1024 * 1024 => statistics.Large,
        _ => statistics.Huge,
    };
}
