using System;
using System.Buffers;
using System.Collections.Concurrent;
using System.Collections.Generic;
using System.Runtime.CompilerServices;
using System.Threading;
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
    private const int Probes = 64;
    private const int MaxCollections = 16;
    private const int MaxTicks = 8;
    private static readonly ConcurrentDictionary<int, IMemoryOwner<byte>> s_revived = new();
    private static readonly ConcurrentDictionary<int, bool> s_mayRevive = new();
    private static int s_nextWrapper;

    [Theory]
    [MemberData(nameof(SafetyCases.TiersInFreshOwnerModes), MemberType = typeof(SafetyCases))]
    public void AnOwnerRevivedAfterItsBlockWasReclaimedNeitherReachesNorReturnsTheNextRentersBlock(int size, OwnerMode mode)
    {
        var time = new FakeTimeProvider();
        using TieredMemoryPool pool = SafetyCases.Pool(mode, time);
        int id = DropAWrapperThatRevivesItsOwnerWhenAllowed(pool, size, out OwnerRange block);
        for (int i = 0; i < MaxCollections && pool.GetStatistics().LeaksReclaimed == 0; i++)
        {
            GC.Collect();
            GC.WaitForPendingFinalizers();
        }

        Assert.Equal(1, pool.GetStatistics().LeaksReclaimed);
        s_mayRevive[id] = true;
        SafetyCases.CollectEverything();
        Assert.True(s_revived.TryRemove(id, out IMemoryOwner<byte>? revived), "the wrapper's finalizer did not revive its owner");

        // The quarantine runs out (at the first tick a whole delay after the leak) and the block goes back to its tier,
        // kept busy meanwhile so that its idle release does not take the block away: rent the size until it comes back.
        for (int tick = 0; tick < MaxTicks && pool.GetStatistics().BytesQuarantined > 0; tick++)
        {
            SafetyCases.Advance(time, SafetyCases.IdleDelay / 4);
            pool.Rent(size).Dispose();
        }

        Assert.Equal(0, pool.GetStatistics().BytesQuarantined);
        var renters = new List<IMemoryOwner<byte>>();
        IMemoryOwner<byte>? newRenter = null;
        for (int i = 0; i < Probes && newRenter is null; i++)
        {
            IMemoryOwner<byte> renter = pool.Rent(size);
            renters.Add(renter);
            if (SafetyCases.RangeOf(renter).Overlaps(block))
            {
                newRenter = renter;
            }
        }

        Assert.True(newRenter is not null, $"the reclaimed block {block} was not handed out again in {Probes} rents after its quarantine");
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

    [MethodImpl(MethodImplOptions.NoInlining)]
    private static int DropAWrapperThatRevivesItsOwnerWhenAllowed(TieredMemoryPool pool, int size, out OwnerRange block)
    {
        IMemoryOwner<byte> owner = pool.Rent(size);
        block = SafetyCases.RangeOf(owner);
        int id = Interlocked.Increment(ref s_nextWrapper);
        _ = new RevivesWhenAllowed(owner, id);
        return id;
    }

    /// <summary>A finalizer that finalizes again until the test allows it to keep its owner (object pools built on resurrection do this).</summary>
    private sealed class RevivesWhenAllowed(IMemoryOwner<byte> owner, int id)
    {
        ~RevivesWhenAllowed()
        {
            if (s_mayRevive.ContainsKey(id))
            {
                s_revived[id] = owner;
            }
            else
            {
                GC.ReRegisterForFinalize(this);
            }
        }
    }
}
