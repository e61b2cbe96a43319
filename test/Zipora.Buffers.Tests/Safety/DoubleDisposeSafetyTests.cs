using System.Buffers;
using System.Collections.Generic;
using System.Linq;
using System.Threading;

namespace Zipora.Buffers.Tests;

/// <summary>
/// With <see cref="TieredMemoryPoolOptions.ReuseOwners"/> off, every rent gets its own owner, and a second dispose
/// of an owner (at once, after later rents, or from another thread) is ignored: no two live owners share a byte.
/// </summary>
public sealed class DoubleDisposeSafetyTests
{
    [Theory]
    [MemberData(nameof(SafetyCases.SizesInFreshOwnerModes), MemberType = typeof(SafetyCases))]
    public void EveryRentReturnsAFreshOwnerObject(int size, OwnerMode mode)
    {
        using TieredMemoryPool pool = SafetyCases.Pool(mode);
        IMemoryOwner<byte> first = pool.Rent(size);
        first.Dispose();
        IMemoryOwner<byte> second = pool.Rent(size);
        IMemoryOwner<byte> third = pool.Rent(size);

        Assert.False(ReferenceEquals(first, second), "a rent handed out the owner object an earlier renter disposed");
        Assert.False(ReferenceEquals(first, third), "a rent handed out the owner object an earlier renter disposed");
        Assert.False(ReferenceEquals(second, third), "two live renters got the same owner object");
        second.Dispose();
        third.Dispose();
    }

    [Theory]
    [MemberData(nameof(SafetyCases.SizesInFreshOwnerModes), MemberType = typeof(SafetyCases))]
    public void AnImmediateSecondDisposeIsIgnored(int size, OwnerMode mode)
    {
        using TieredMemoryPool pool = SafetyCases.Pool(mode);
        IMemoryOwner<byte> owner = pool.Rent(size);
        owner.Dispose();
        owner.Dispose();

        IMemoryOwner<byte> second = pool.Rent(size);
        IMemoryOwner<byte> third = pool.Rent(size);
        SafetyCases.AssertDisjoint([second, third], "rent, dispose twice, rent twice");
        SafetyCases.Stamp(second, 2, "second");
        SafetyCases.Stamp(third, 3, "third");
        SafetyCases.AssertStamps([second, third], [2, 3], "rent, dispose twice, rent twice");
        second.Dispose();
        third.Dispose();
    }

    [Theory]
    [MemberData(nameof(SafetyCases.SizesInFreshOwnerModes), MemberType = typeof(SafetyCases))]
    public void AStaleSecondDisposeNeverFreesTheNextRentersBlock(int size, OwnerMode mode)
    {
        using TieredMemoryPool pool = SafetyCases.Pool(mode);
        IMemoryOwner<byte> stale = pool.Rent(size);
        stale.Dispose();
        IMemoryOwner<byte> next = pool.Rent(size);
        SafetyCases.Stamp(next, 1, "next renter");

        // The repro of the old bug: the stale owner was the same object as the next renter's, so this returned its block.
        stale.Dispose();
        IMemoryOwner<byte> third = pool.Rent(size);
        SafetyCases.AssertDisjoint([next, third], "rent, dispose, rent, stale dispose, rent");
        SafetyCases.Stamp(third, 2, "third renter");
        SafetyCases.AssertStamps([next, third], [1, 2], "rent, dispose, rent, stale dispose, rent");
        next.Dispose();
        third.Dispose();
    }

    [Theory]
    [MemberData(nameof(SafetyCases.SizesInFreshOwnerModes), MemberType = typeof(SafetyCases))]
    public void AStaleDisposeAfterManyLaterRentsAndReturnsFreesNothing(int size, OwnerMode mode)
    {
        using TieredMemoryPool pool = SafetyCases.Pool(mode);
        IMemoryOwner<byte> stale = pool.Rent(size);
        stale.Dispose();

        // The block goes round: rented, returned, rented again by others, before the stale dispose comes.
        for (int i = 0; i < 10; i++)
        {
            pool.Rent(size).Dispose();
        }

        var live = new List<IMemoryOwner<byte>>();
        for (int i = 0; i < 8; i++)
        {
            live.Add(pool.Rent(size));
        }

        stale.Dispose();
        stale.Dispose();
        for (int i = 0; i < 8; i++)
        {
            live.Add(pool.Rent(size));
        }

        SafetyCases.AssertDisjoint(live, "stale disposes after 18 later rents");
        long[] stamps = [.. Enumerable.Range(1, live.Count).Select(static i => (long)i)];
        for (int i = 0; i < live.Count; i++)
        {
            SafetyCases.Stamp(live[i], stamps[i], "live owner");
        }

        SafetyCases.AssertStamps(live, stamps, "stale disposes after 18 later rents");
        live.ForEach(static owner => owner.Dispose());
    }

    [Theory]
    [MemberData(nameof(SafetyCases.SizesInFreshOwnerModes), MemberType = typeof(SafetyCases))]
    public void AStaleDisposeOnAnotherThreadFreesNothing(int size, OwnerMode mode)
    {
        using TieredMemoryPool pool = SafetyCases.Pool(mode);
        IMemoryOwner<byte> stale = pool.Rent(size);
        stale.Dispose();
        IMemoryOwner<byte> next = pool.Rent(size);

        // The stale dispose and a rent on another thread (the medium tier caches per thread), then a rent here.
        IMemoryOwner<byte>? rentedThere = null;
        var other = new Thread(() =>
        {
            stale.Dispose();
            rentedThere = pool.Rent(size);
        });
        other.Start();
        other.Join();
        IMemoryOwner<byte> rentedHere = pool.Rent(size);

        Assert.NotNull(rentedThere);
        SafetyCases.AssertDisjoint([next, rentedThere, rentedHere], "stale dispose on another thread");
        SafetyCases.Stamp(next, 1, "next");
        SafetyCases.Stamp(rentedThere, 2, "rented there");
        SafetyCases.Stamp(rentedHere, 3, "rented here");
        SafetyCases.AssertStamps([next, rentedThere, rentedHere], [1, 2, 3], "stale dispose on another thread");
        next.Dispose();
        rentedThere.Dispose();
        rentedHere.Dispose();
    }
}
