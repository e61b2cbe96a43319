using System;
using System.Buffers;
using System.Collections.Generic;
using Microsoft.Extensions.Time.Testing;

namespace Zipora.Buffers.Tests;

/// <summary>
/// An owner a user's finalizer brings back to life only after the pool reclaimed its block as leaked: the revived
/// owner throws and its dispose is ignored, so it can neither reach nor return the block's next renter (README,
/// Reliability: "the block is reclaimed once; the revived owner throws and its dispose is ignored").
/// </summary>
/// <remarks>
/// <see cref="FinalizerSafetyTests"/> revives an owner at the first collection that finds it, before its block's
/// finalizer has proved the leak (that takes a second collection), so its block is never reclaimed and the owner's
/// generation check is never reached. Here the wrapper keeps finalizing until the pool has counted the leak, and only
/// then revives the owner. Forces full garbage collections, so it runs alone.
/// </remarks>
[Collection(nameof(HugepageTests))]
public sealed class RevivedAfterReclaimSafetyTests
{
    [Theory]
    [MemberData(nameof(SafetyCases.TiersInFreshOwnerModes), MemberType = typeof(SafetyCases))]
    public void AnOwnerRevivedAfterItsBlockWasReclaimedNeitherReachesNorReturnsTheNextRentersBlock(int size, OwnerMode mode)
    {
        var time = new FakeTimeProvider();
        using TieredMemoryPool pool = SafetyCases.Pool(mode, time);
        int id = RevivalAfterReclaim.RentAndDrop(pool, size, static owner => owner, out OwnerRange block);
        IMemoryOwner<byte> revived = RevivalAfterReclaim.ReviveOnceReclaimed<IMemoryOwner<byte>>(pool, id);
        var renters = new List<IMemoryOwner<byte>>();
        IMemoryOwner<byte> newRenter = RevivalAfterReclaim.RentUntilHandedOutAgain(pool, time, size, block, renters);
        SafetyCases.Stamp(newRenter, 31, "new renter");

        Assert.Throws<ObjectDisposedException>(() => revived.Memory);
        revived.Dispose();
        IMemoryOwner<byte> next = pool.Rent(size);
        renters.Add(next);
        Assert.False(
            SafetyCases.RangeOf(next).Overlaps(block),
            $"the revived owner's dispose returned the block {block} of the renter the pool gave it to after reclaiming it, and the next rent got it");
        Assert.True(SafetyCases.HasStamp(newRenter, 31, "new renter"), "the new renter's data changed");
        renters.ForEach(static renter => renter.Dispose());
    }
}
