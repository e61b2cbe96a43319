using System;
using System.Buffers;
using System.Collections.Generic;

namespace Zipora.Buffers.Tests;

/// <summary>
/// What <see cref="TieredMemoryPoolOptions.ReuseOwners"/> promises, claim by claim, and the hazard it documents:
/// the pooled owner comes back, so steady traffic allocates nothing, a second dispose is ignored only until the block
/// is rented again, and a stale dispose after that returns the new renter's block.
/// </summary>
public sealed class ReuseOwnersSafetyTests
{
    private const int MaxRentsToFindTheBlock = 64;

    [Theory]
    [MemberData(nameof(SafetyCases.EverySize), MemberType = typeof(SafetyCases))]
    public void ReuseOwnersSteadyRentAndDisposeAllocateNothing(int size)
    {
        using TieredMemoryPool pool = SafetyCases.Pool(OwnerMode.ReuseOwners);

        Assert.Equal(0, SteadyRents.BytesAllocated(pool, size, 5_000));
    }

    [Theory]
    [InlineData(4096)]
    [InlineData(8192)]
    public void ReuseOwnersHandsTheSameOwnerBackOnOneThread(int size)
    {
        using TieredMemoryPool pool = SafetyCases.Pool(OwnerMode.ReuseOwners);
        IMemoryOwner<byte> first = pool.Rent(size);
        first.Dispose();
        IMemoryOwner<byte> second = pool.Rent(size);

        Assert.Same(first, second);
        second.Dispose();
    }

    [Theory]
    [MemberData(nameof(SafetyCases.EverySize), MemberType = typeof(SafetyCases))]
    public void ReuseOwnersASecondDisposeBeforeTheNextRentIsIgnored(int size)
    {
        using TieredMemoryPool pool = SafetyCases.Pool(OwnerMode.ReuseOwners);
        IMemoryOwner<byte> owner = pool.Rent(size);
        owner.Dispose();
        owner.Dispose();

        IMemoryOwner<byte> second = pool.Rent(size);
        IMemoryOwner<byte> third = pool.Rent(size);
        SafetyCases.AssertDisjoint([second, third], "ReuseOwners: rent, dispose twice, rent twice");
        Assert.NotSame(second, third);
        second.Dispose();
        third.Dispose();
    }

    [Theory]
    [MemberData(nameof(SafetyCases.EverySize), MemberType = typeof(SafetyCases))]
    public void ReuseOwnersMemoryThrowsAfterDisposeUntilTheBlockIsRentedAgain(int size)
    {
        using TieredMemoryPool pool = SafetyCases.Pool(OwnerMode.ReuseOwners);
        IMemoryOwner<byte> owner = pool.Rent(size);
        OwnerRange block = SafetyCases.RangeOf(owner);
        Memory<byte> kept = owner.Memory;
        owner.Dispose();

        Assert.Throws<ObjectDisposedException>(() => owner.Memory);
        Assert.Throws<ObjectDisposedException>(() => kept.Span[0]);

        // Rented again, the block comes back with its own owner: the old reference works again (and is the new renter's).
        var renters = new List<IMemoryOwner<byte>>();
        IMemoryOwner<byte>? again = null;
        for (int i = 0; i < MaxRentsToFindTheBlock && again is null; i++)
        {
            IMemoryOwner<byte> renter = pool.Rent(size);
            renters.Add(renter);
            if (SafetyCases.RangeOf(renter).Start == block.Start)
            {
                again = renter;
            }
        }

        Assert.True(again is not null, $"the block {block} did not come back in {MaxRentsToFindTheBlock} rents of the same size");
        Assert.Same(owner, again);
        Assert.Equal(block.Length, owner.Memory.Length);
        renters.ForEach(static renter => renter.Dispose());
    }

    /// <summary>The hazard <see cref="TieredMemoryPoolOptions.ReuseOwners"/> documents, shown so it cannot change unnoticed.</summary>
    [Theory]
    [MemberData(nameof(SafetyCases.EverySize), MemberType = typeof(SafetyCases))]
    public void ReuseOwnersAStaleDisposeAfterARentFreesTheNewRentersBlock(int size)
    {
        using TieredMemoryPool pool = SafetyCases.Pool(OwnerMode.ReuseOwners);
        IMemoryOwner<byte> stale = pool.Rent(size);
        stale.Dispose();
        IMemoryOwner<byte> live = pool.Rent(size);
        OwnerRange liveBlock = SafetyCases.RangeOf(live);

        stale.Dispose();
        IMemoryOwner<byte> next = pool.Rent(size);

        Assert.Same(stale, live);
        Assert.Equal(liveBlock.Start, SafetyCases.RangeOf(next).Start);
        next.Dispose();
    }
}
