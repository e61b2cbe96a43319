using System;
using System.Buffers;
using System.Collections.Generic;
using System.Runtime.CompilerServices;
using Microsoft.Extensions.Time.Testing;

namespace Zipora.Buffers.Tests;

/// <summary>
/// A disposed pinned-array pool lets go of its arrays at once, those it cached and those returned to it later, instead
/// of keeping them resident for a whole idle delay: the delay kept them for reuse, which a disposed pool never makes, and
/// the GC keeps an array alive under a stale <c>Span</c> without it. Before, they waited out the delay (minutes), and a
/// pressure trim did not reach them: the watcher trims live pools only.
/// </summary>
public sealed class DisposedPinnedArrayPoolTests
{
    public static TheoryData<int> Sizes => [100, 4096, 100_000, 3_000_000];

    [Theory]
    [MemberData(nameof(Sizes))]
    public void ADisposedPinnedArrayPoolLetsGoOfTheArraysItCachedAtOnce(int size)
    {
        var pool = new TieredMemoryPool(new TieredMemoryPoolOptions { UsePinnedArrays = true, TimeProvider = new FakeTimeProvider() });
        List<WeakReference> arrays = RentWriteAndReturn(pool, size, count: 4);
        Assert.True(pool.GetStatistics().BytesRetained > 0);

        pool.Dispose();

        Assert.Equal(0, pool.GetStatistics().BytesAwaitingRelease);
        SafetyCases.CollectEverything();
        Assert.All(arrays, array => Assert.False(array.IsAlive));
    }

    [Theory]
    [MemberData(nameof(Sizes))]
    public void ABufferReturnedToADisposedPinnedArrayPoolIsLetGoOfAtOnce(int size)
    {
        var pool = new TieredMemoryPool(new TieredMemoryPoolOptions { UsePinnedArrays = true, TimeProvider = new FakeTimeProvider() });
        WeakReference array = RentDisposeThePoolThenReturn(pool, size);

        TieredMemoryPoolStatistics after = pool.GetStatistics();
        Assert.Equal(0, after.BytesAwaitingRelease);
        Assert.Equal(0, after.BytesInUse);
        SafetyCases.CollectEverything();
        Assert.False(array.IsAlive);
    }

    [Theory]
    [MemberData(nameof(Sizes))]
    public void AStaleSpanKeepsItsArrayAliveAcrossThePoolsDisposeAndItsWritesLand(int size)
    {
        var pool = new TieredMemoryPool(new TieredMemoryPoolOptions { UsePinnedArrays = true, TimeProvider = new FakeTimeProvider() });
        IMemoryOwner<byte> owner = pool.Rent(size);
        WeakReference array = PinnedArrayOf.Weakly(owner);
        Span<byte> stale = owner.Memory.Span;
        owner.Dispose();
        pool.Dispose();
        Assert.Equal(0, pool.GetStatistics().BytesAwaitingRelease);

        // Let go of at the dispose; the stale span is a reference the GC follows, so its writes land in a live array
        // nobody else is given.
        GC.Collect(GC.MaxGeneration, GCCollectionMode.Aggressive, blocking: true, compacting: true);
        Assert.True(array.IsAlive);
        stale.Fill(0x5A);
        Assert.True(stale.IndexOfAnyExcept((byte)0x5A) < 0);
    }

    [MethodImpl(MethodImplOptions.NoInlining)]
    private static List<WeakReference> RentWriteAndReturn(TieredMemoryPool pool, int size, int count)
    {
        var owners = new List<IMemoryOwner<byte>>();
        for (int i = 0; i < count; i++)
        {
            IMemoryOwner<byte> owner = pool.Rent(size);
            owner.Memory.Span.Fill(0x3C);
            owners.Add(owner);
        }

        List<WeakReference> arrays = owners.ConvertAll(PinnedArrayOf.Weakly);
        owners.ForEach(owner => owner.Dispose());
        return arrays;
    }

    [MethodImpl(MethodImplOptions.NoInlining)]
    private static WeakReference RentDisposeThePoolThenReturn(TieredMemoryPool pool, int size)
    {
        IMemoryOwner<byte> late = pool.Rent(size);
        late.Memory.Span.Fill(0x3C);
        WeakReference array = PinnedArrayOf.Weakly(late);
        pool.Dispose();
        late.Dispose();
        return array;
    }
}
