using System;
using System.Runtime.CompilerServices;

namespace Zipora.Buffers.Tests;

/// <summary>The meter's list of pools forgets disposed and collected pools, so creating pools by the thousand costs nothing that stays.</summary>
/// <remarks>Forces full garbage collections, so it runs alone.</remarks>
[Collection(nameof(HugepageTests))]
public sealed class TrackedPoolsTests
{
    private const int Pools = 2_000;

    [Fact]
    public void DisposedPoolsAreForgottenAtOnce()
    {
        int before = PoolMetrics.TrackedPools;
        for (int i = 0; i < Pools; i++)
        {
            new TieredMemoryPool().Dispose();
        }

        Assert.InRange(PoolMetrics.TrackedPools, 0, before + 10);
    }

    [Fact]
    public void PoolsDroppedWithoutDisposeAreForgottenOnceCollected()
    {
        int before = PoolMetrics.TrackedPools;
        CreateAndDrop(Pools);
        GC.Collect();
        GC.WaitForPendingFinalizers();
        GC.Collect();

        // The next registrations prune what the collector took.
        CreateAndDrop(200);
        Assert.InRange(PoolMetrics.TrackedPools, 0, before + 500);
    }

    [MethodImpl(MethodImplOptions.NoInlining)]
    private static void CreateAndDrop(int count)
    {
        for (int i = 0; i < count; i++)
        {
            _ = new TieredMemoryPool();
        }
    }
}
