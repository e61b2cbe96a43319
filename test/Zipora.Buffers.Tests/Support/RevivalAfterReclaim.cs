using System;
using System.Buffers;
using System.Collections.Concurrent;
using System.Collections.Generic;
using System.Runtime.CompilerServices;
using System.Threading;
using Microsoft.Extensions.Time.Testing;

namespace Zipora.Buffers.Tests;

/// <summary>
/// A value reaching a rented block (the owner, or a <c>Memory</c> kept from it) dropped behind a user's finalizer that
/// brings it back only once the test allows it, as object pools built on resurrection do: the test lets the pool
/// reclaim the block as leaked, run out its quarantine and hand it to a new renter first, then revives the value.
/// </summary>
/// <remarks>
/// A finalizer that revived at the first collection would do it before the block's own finalizer proved the leak (that
/// takes a second collection), so the block would never be reclaimed; this one finalizes again until allowed.
/// </remarks>
public static class RevivalAfterReclaim
{
    private const int MaxCollections = 16;
    private const int MaxTicks = 8;
    private const int Probes = 64;
    private static readonly ConcurrentDictionary<int, object> s_revived = new();
    private static readonly ConcurrentDictionary<int, bool> s_mayRevive = new();
    private static int s_nextWrapper;

    /// <summary>
    /// Rents <paramref name="size"/> bytes and drops what <paramref name="keep"/> takes of the owner behind the reviving
    /// finalizer; nothing else holds the owner. The id names it to <see cref="ReviveOnceReclaimed"/>.
    /// </summary>
    /// <typeparam name="T">What the finalizer keeps and gives back.</typeparam>
    [MethodImpl(MethodImplOptions.NoInlining)]
    public static int RentAndDrop<T>(TieredMemoryPool pool, int size, Func<IMemoryOwner<byte>, T> keep, out OwnerRange block)
    {
        IMemoryOwner<byte> owner = pool.Rent(size);
        block = SafetyCases.RangeOf(owner);
        int id = Interlocked.Increment(ref s_nextWrapper);
        _ = new RevivesWhenAllowed(keep(owner)!, id);
        return id;
    }

    /// <summary>
    /// Collects until <paramref name="pool"/> has reclaimed the dropped block as leaked, then lets the finalizer of
    /// <paramref name="id"/> revive its value and returns it.
    /// </summary>
    public static T ReviveOnceReclaimed<T>(TieredMemoryPool pool, int id)
    {
        for (int i = 0; i < MaxCollections && pool.GetStatistics().LeaksReclaimed == 0; i++)
        {
            GC.Collect();
            GC.WaitForPendingFinalizers();
        }

        Assert.Equal(1, pool.GetStatistics().LeaksReclaimed);
        s_mayRevive[id] = true;
        SafetyCases.CollectEverything();
        Assert.True(s_revived.TryRemove(id, out object? revived), "the wrapper's finalizer did not revive what it kept");
        s_mayRevive.TryRemove(id, out _);
        return (T)revived;
    }

    /// <summary>
    /// Runs out the reclaimed block's quarantine (it ends at the first tick a whole delay after the leak) with rents of
    /// <paramref name="size"/> between the ticks, so the class's idle release leaves the block in the tier, then rents
    /// that size until the block is handed out again. Every rent is added to <paramref name="renters"/>.
    /// </summary>
    /// <returns>The renter that got the reclaimed block.</returns>
    public static IMemoryOwner<byte> RentUntilHandedOutAgain(
        TieredMemoryPool pool, FakeTimeProvider time, int size, OwnerRange block, List<IMemoryOwner<byte>> renters)
    {
        for (int tick = 0; tick < MaxTicks && pool.GetStatistics().BytesQuarantined > 0; tick++)
        {
            SafetyCases.Advance(time, SafetyCases.IdleDelay / 4);
            pool.Rent(size).Dispose();
        }

        Assert.Equal(0, pool.GetStatistics().BytesQuarantined);
        IMemoryOwner<byte>? renter = RentedAgain.Find(pool, size, block, renters, Probes);
        Assert.True(renter is not null, $"the reclaimed block {block} was not handed out again in {Probes} rents after its quarantine");
        return renter;
    }

    private sealed class RevivesWhenAllowed(object value, int id)
    {
        ~RevivesWhenAllowed()
        {
            if (s_mayRevive.ContainsKey(id))
            {
                s_revived[id] = value;
            }
            else
            {
                GC.ReRegisterForFinalize(this);
            }
        }
    }
}
