using System;
using System.Buffers;
using System.Collections.Generic;
using System.Reflection;
using System.Runtime.CompilerServices;

namespace Zipora.Buffers.Tests;

/// <summary>Attack round 12's helpers: renting, and reading the depots' reservation by reflection.</summary>
public sealed partial class AttackRound12Tests
{
    private static List<IMemoryOwner<byte>> Rent(TieredMemoryPool pool, int size, int count)
    {
        var owners = new List<IMemoryOwner<byte>>(count);
        for (int i = 0; i < count; i++)
        {
            owners.Add(pool.Rent(size));
        }

        return owners;
    }

    [MethodImpl(MethodImplOptions.NoInlining)]
    private static Array Depots(TieredMemoryPool pool, string tierField)
    {
        object tier = typeof(TieredMemoryPool).GetField(tierField, Private)!.GetValue(pool)!;
        return (Array)tier.GetType().BaseType!.GetField("_depots", Private)!.GetValue(tier)!;
    }

    private static int ReservedIn(TieredMemoryPool pool, string tierField)
    {
        int total = 0;
        foreach (object depot in Depots(pool, tierField))
        {
            total += Field(depot, "_reserved");
        }

        return total;
    }

    private static int Field(object depot, string name) => (int)depot.GetType().GetField(name, Private)!.GetValue(depot)!;

    private static int DepotArrayLength(TieredMemoryPool pool, string tierField, int size)
    {
        Array depots = Depots(pool, tierField);
        int classIndex = tierField == "_small" ? SmallClassIndex(size) : MediumClassIndex(size);
        object depot = depots.GetValue(classIndex)!;
        return ((Array)depot.GetType().GetField("_items", Private)!.GetValue(depot)!).Length;
    }

    private static int SmallClassIndex(int size) => (int)typeof(TieredMemoryPool).Assembly.GetType("Zipora.Buffers.SmallClasses")!
        .GetMethod("ClassIndexOfRequest", BindingFlags.Public | BindingFlags.Static)!.Invoke(null, [size])!;

    private static int MediumClassIndex(int size) => (int)typeof(TieredMemoryPool).Assembly.GetType("Zipora.Buffers.MediumClasses")!
        .GetMethod("ClassIndexOfRequest", BindingFlags.Public | BindingFlags.Static)!.Invoke(null, [size])!;

    /// <summary>Every depot's reservation is at least zero, at least its count, and at most its array's length.</summary>
    private static void AssertReservationNeverNegative(TieredMemoryPool pool, string when)
    {
        foreach (string tier in new[] { "_small", "_medium" })
        {
            Array depots = Depots(pool, tier);
            for (int classIndex = 0; classIndex < depots.Length; classIndex++)
            {
                object depot = depots.GetValue(classIndex)!;
                int reserved = Field(depot, "_reserved");
                Assert.True(reserved >= 0, $"{when}: {tier} class {classIndex} has a reservation of {reserved}");
            }
        }
    }

    /// <summary>
    /// Every depot holds no more than it reserved and reserved no more than its array holds; with
    /// <paramref name="expectedExisting"/>, the reservations of both slab tiers add up to it.
    /// </summary>
    private static void AssertReservationMatches(TieredMemoryPool pool, int? expectedExisting, string when)
    {
        int total = 0;
        foreach (string tier in new[] { "_small", "_medium" })
        {
            Array depots = Depots(pool, tier);
            for (int classIndex = 0; classIndex < depots.Length; classIndex++)
            {
                object depot = depots.GetValue(classIndex)!;
                int reserved = Field(depot, "_reserved");
                int count = Field(depot, "_count");
                int length = ((Array)depot.GetType().GetField("_items", Private)!.GetValue(depot)!).Length;
                Assert.True(reserved >= 0 && count <= reserved && reserved <= length, $"{when}: {tier} class {classIndex} holds {count}, reserved {reserved}, room {length}");
                total += reserved;
            }
        }

        if (expectedExisting is int expected)
        {
            Assert.True(expected == total, $"{when}: the slab tiers' depots reserve {total} places for {expected} blocks that exist");
        }
    }

    /// <summary>Trims: with no block rented, every slab goes, and the room reserved for its blocks with it.</summary>
    private static void AssertATrimFreesEverySlabAndItsRoom(TieredMemoryPool pool, string when)
    {
        pool.Trim();
        TieredMemoryPoolStatistics statistics = pool.GetStatistics();
        Assert.Equal(0, statistics.Small.BytesRetained + statistics.Medium.BytesRetained);
        AssertReservationMatches(pool, expectedExisting: 0, when);
    }
}
