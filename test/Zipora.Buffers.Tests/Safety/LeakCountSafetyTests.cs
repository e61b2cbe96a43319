using System.Runtime.CompilerServices;

namespace Zipora.Buffers.Tests;

/// <summary>
/// Every owner garbage collected without dispose gives its block back, in every tier and every mode, also an owner
/// whose block went through a cache first (nothing in the pool may keep a rented owner reachable).
/// </summary>
/// <remarks>Forces full garbage collections, so it runs alone.</remarks>
[Collection(nameof(HugepageTests))]
public sealed class LeakCountSafetyTests
{
    private const int Leaks = 8;

    [Theory]
    [MemberData(nameof(SafetyCases.SizesInEveryMode), MemberType = typeof(SafetyCases))]
    public void EveryLeakedOwnerIsReclaimed(int size, OwnerMode mode)
    {
        using TieredMemoryPool pool = SafetyCases.Pool(mode);
        long before = pool.GetStatistics().LeaksReclaimed;
        SafetyCases.Leak(pool, size, Leaks);
        SafetyCases.CollectEverything();

        Assert.Equal(before + Leaks, pool.GetStatistics().LeaksReclaimed);
    }

    [Theory]
    [MemberData(nameof(SafetyCases.SizesInEveryMode), MemberType = typeof(SafetyCases))]
    public void AnOwnerWhoseBlockWentThroughACacheIsReclaimedWhenLeaked(int size, OwnerMode mode)
    {
        using TieredMemoryPool pool = SafetyCases.Pool(mode);
        long before = pool.GetStatistics().LeaksReclaimed;
        RentReturnThenLeak(pool, size);
        SafetyCases.CollectEverything();

        Assert.Equal(before + Leaks, pool.GetStatistics().LeaksReclaimed);
    }

    [MethodImpl(MethodImplOptions.NoInlining)]
    private static void RentReturnThenLeak(TieredMemoryPool pool, int size)
    {
        var owners = new System.Buffers.IMemoryOwner<byte>[Leaks];
        for (int i = 0; i < Leaks; i++)
        {
            owners[i] = pool.Rent(size);
        }

        foreach (System.Buffers.IMemoryOwner<byte> owner in owners)
        {
            owner.Dispose();
        }

        SafetyCases.Leak(pool, size, Leaks);
    }
}
