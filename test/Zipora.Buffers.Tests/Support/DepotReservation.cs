using System;
using System.Buffers;
using System.Collections.Generic;
using System.Reflection;
using Zipora.Buffers.Native;

namespace Zipora.Buffers.Tests;

/// <summary>
/// For the tests of the slab tiers' depots, which reserve room for every block as it is made so that a return never
/// allocates: renting bursts, measuring what their returns allocate, and reading the reservation by reflection.
/// </summary>
internal static class DepotReservation
{
    private const BindingFlags Private = BindingFlags.NonPublic | BindingFlags.Instance;
    private static readonly string[] s_slabTiers = ["_small", "_medium"];

    /// <summary>Rents <paramref name="count"/> buffers of <paramref name="size"/> bytes, all held at once.</summary>
    public static List<IMemoryOwner<byte>> Rent(TieredMemoryPool pool, int size, int count)
    {
        var owners = new List<IMemoryOwner<byte>>(count);
        for (int i = 0; i < count; i++)
        {
            owners.Add(pool.Rent(size));
        }

        return owners;
    }

    /// <summary>Disposes every owner in <paramref name="owners"/>; the managed bytes those disposes allocated on this thread.</summary>
    public static long BytesAllocatedReturning(List<IMemoryOwner<byte>> owners) => ThreadAllocations.During(() =>
    {
        foreach (IMemoryOwner<byte> owner in owners)
        {
            owner.Dispose();
        }
    });

    /// <summary>The places the depots of a slab tier (<c>"_small"</c> or <c>"_medium"</c>) have reserved, over every class.</summary>
    public static int ReservedIn(TieredMemoryPool pool, string tierField)
    {
        int total = 0;
        foreach (object depot in Depots(pool, tierField))
        {
            total += Field(depot, "_reserved");
        }

        return total;
    }

    /// <summary>The length of the array of the depot of the class of <paramref name="size"/> in a slab tier.</summary>
    public static int DepotArrayLength(TieredMemoryPool pool, string tierField, int size)
    {
        return ArrayLength(Depots(pool, tierField).GetValue(ClassIndexOf(tierField, size))!);
    }

    /// <summary>The places the depot of the class of <paramref name="size"/> in a slab tier has reserved.</summary>
    public static int ReservedFor(TieredMemoryPool pool, string tierField, int size) =>
        Field(Depots(pool, tierField).GetValue(ClassIndexOf(tierField, size))!, "_reserved");

    /// <summary>The blocks the depot of the class of <paramref name="size"/> in a slab tier holds.</summary>
    public static int HeldIn(TieredMemoryPool pool, string tierField, int size) =>
        Field(Depots(pool, tierField).GetValue(ClassIndexOf(tierField, size))!, "_count");

    /// <summary>Every depot's reservation is at least zero.</summary>
    public static void AssertNeverNegative(TieredMemoryPool pool, string when)
    {
        foreach (string tier in s_slabTiers)
        {
            Array depots = Depots(pool, tier);
            for (int classIndex = 0; classIndex < depots.Length; classIndex++)
            {
                int reserved = Field(depots.GetValue(classIndex)!, "_reserved");
                Assert.True(reserved >= 0, $"{when}: {tier} class {classIndex} has a reservation of {reserved}");
            }
        }
    }

    /// <summary>
    /// Every depot holds no more than it reserved and reserved no more than its array holds; with
    /// <paramref name="expectedExisting"/>, the reservations of both slab tiers add up to it.
    /// </summary>
    public static void AssertMatches(TieredMemoryPool pool, int? expectedExisting, string when)
    {
        int total = 0;
        foreach (string tier in s_slabTiers)
        {
            Array depots = Depots(pool, tier);
            for (int classIndex = 0; classIndex < depots.Length; classIndex++)
            {
                object depot = depots.GetValue(classIndex)!;
                int reserved = Field(depot, "_reserved");
                int count = Field(depot, "_count");
                int length = ArrayLength(depot);
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
    public static void AssertATrimFreesEverySlabAndItsRoom(TieredMemoryPool pool, string when)
    {
        pool.Trim();
        TieredMemoryPoolStatistics statistics = pool.GetStatistics();
        Assert.Equal(0, statistics.Small.BytesRetained + statistics.Medium.BytesRetained);
        AssertMatches(pool, expectedExisting: 0, when);
    }

    /// <summary>
    /// The monitor of the depot of the class of <paramref name="size"/> in a slab tier: a test holding it keeps every
    /// other thread's put, take and drain of that class waiting, while its own go on (a monitor is re-entrant).
    /// </summary>
    public static object LockOf(TieredMemoryPool pool, string tierField, int size)
    {
        object depot = Depots(pool, tierField).GetValue(ClassIndexOf(tierField, size))!;
        return depot.GetType().GetField("_lock", Private)!.GetValue(depot)!;
    }

    /// <summary>The owner's block: the owner itself with <c>ReuseOwners</c>, the block it holds otherwise.</summary>
    public static NativeMemoryManager BlockOf(IMemoryOwner<byte> owner) =>
        owner as NativeMemoryManager ?? (NativeMemoryManager)typeof(BlockOwner).GetField("_block", Private)!.GetValue(owner)!;

    /// <summary>
    /// What a caller's racing second dispose leaves: a free block of a slab tier listed <paramref name="copies"/> more
    /// times, in its class's depot.
    /// </summary>
    public static void ListAgain(TieredMemoryPool pool, string tierField, NativeMemoryManager block, int copies = 1)
    {
        var depot = (SizeClassDepot<NativeMemoryManager>)Depots(pool, tierField).GetValue(ClassIndexOf(tierField, block.Length))!;
        for (int i = 0; i < copies; i++)
        {
            depot.Put(block);
        }
    }

    private static int ClassIndexOf(string tierField, int size)
    {
        string classes = tierField == "_small" ? "Zipora.Buffers.SmallClasses" : "Zipora.Buffers.MediumClasses";
        return (int)typeof(TieredMemoryPool).Assembly.GetType(classes)!
            .GetMethod("ClassIndexOfRequest", BindingFlags.Public | BindingFlags.Static)!.Invoke(null, [size])!;
    }

    private static Array Depots(TieredMemoryPool pool, string tierField)
    {
        object tier = typeof(TieredMemoryPool).GetField(tierField, Private)!.GetValue(pool)!;
        return (Array)tier.GetType().BaseType!.GetField("_depots", Private)!.GetValue(tier)!;
    }

    private static int Field(object depot, string name) => (int)depot.GetType().GetField(name, Private)!.GetValue(depot)!;

    private static int ArrayLength(object depot) => ((Array)depot.GetType().GetField("_items", Private)!.GetValue(depot)!).Length;
}
