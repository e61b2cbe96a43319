using System;
using System.Buffers;
using System.Collections.Generic;

namespace Zipora.Buffers.Tests;

/// <summary>
/// With <see cref="TieredMemoryPoolOptions.ReuseOwners"/> off, an owner and every <see cref="Memory{T}"/> taken from
/// it are dead after dispose: they throw <see cref="ObjectDisposedException"/>, even once the block is someone else's.
/// </summary>
public sealed class StaleMemorySafetyTests
{
    private const int MaxRentsToFindTheBlock = 64;

    [Theory]
    [MemberData(nameof(SafetyCases.SizesInFreshOwnerModes), MemberType = typeof(SafetyCases))]
    public void MemoryOfADisposedOwnerThrows(int size, OwnerMode mode)
    {
        using TieredMemoryPool pool = SafetyCases.Pool(mode);
        IMemoryOwner<byte> owner = pool.Rent(size);
        owner.Dispose();

        Assert.Throws<ObjectDisposedException>(() => owner.Memory);
    }

    [Theory]
    [MemberData(nameof(SafetyCases.SizesInFreshOwnerModes), MemberType = typeof(SafetyCases))]
    public void AMemoryKeptPastDisposeThrowsOnSpanAndPin(int size, OwnerMode mode)
    {
        using TieredMemoryPool pool = SafetyCases.Pool(mode);
        IMemoryOwner<byte> owner = pool.Rent(size);
        Memory<byte> kept = owner.Memory;
        Memory<byte> slice = kept[1..];
        owner.Dispose();

        Assert.Throws<ObjectDisposedException>(() => kept.Span[0]);
        Assert.Throws<ObjectDisposedException>(() => slice.Span[0]);
        Assert.Throws<ObjectDisposedException>(() => kept.Pin().Dispose());
    }

    [Theory]
    [MemberData(nameof(SafetyCases.SizesInFreshOwnerModes), MemberType = typeof(SafetyCases))]
    public void AMemoryKeptPastDisposeStillThrowsAfterItsBlockIsRentedAgain(int size, OwnerMode mode)
    {
        using TieredMemoryPool pool = SafetyCases.Pool(mode);
        IMemoryOwner<byte> owner = pool.Rent(size);
        OwnerRange block = SafetyCases.RangeOf(owner);
        Memory<byte> kept = owner.Memory;
        owner.Dispose();

        // Rent the size until the same block is someone else's again.
        var renters = new List<IMemoryOwner<byte>>();
        IMemoryOwner<byte>? newRenter = null;
        for (int i = 0; i < MaxRentsToFindTheBlock && newRenter is null; i++)
        {
            IMemoryOwner<byte> renter = pool.Rent(size);
            renters.Add(renter);
            if (SafetyCases.RangeOf(renter).Start == block.Start)
            {
                newRenter = renter;
            }
        }

        Assert.True(newRenter is not null, $"the block {block} did not come back in {MaxRentsToFindTheBlock} rents of the same size");
        SafetyCases.Stamp(newRenter, 42, "new renter");
        Assert.Throws<ObjectDisposedException>(() => kept.Span[0]);
        Assert.Throws<ObjectDisposedException>(() => kept.Pin().Dispose());
        Assert.Throws<ObjectDisposedException>(() => owner.Memory);
        Assert.True(SafetyCases.HasStamp(newRenter, 42, "new renter"), "the stale Memory reached the new renter's data");
        renters.ForEach(static renter => renter.Dispose());
    }
}
