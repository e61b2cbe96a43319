using System;
using System.Buffers;
using System.Reflection;
using System.Threading;
using Zipora.Buffers.Native;

namespace Zipora.Buffers.Tests;

/// <summary>
/// A slab tier's trim holds its heap's lock, which every rent that must carve a block takes, of any class: sorting the
/// cached blocks by address under it held those rents for most of a large trim (a million cached 64-byte blocks: a rent
/// of another class waited 161 ms of the trim's 168). The claimed blocks are the trim's alone, so it sorts them first.
/// </summary>
public sealed class TrimLockHoldTests
{
    private const BindingFlags Private = BindingFlags.NonPublic | BindingFlags.Instance;

    [Fact]
    public void ATrimHasSortedItsCachedBlocksByAddressBeforeItTakesTheHeapsLock()
    {
        using var pool = new TieredMemoryPool(new TieredMemoryPoolOptions { IdleReleaseDelay = TimeSpan.FromMinutes(10) });
        var owners = new IMemoryOwner<byte>[20_000];
        for (int i = 0; i < owners.Length; i++)
        {
            owners[i] = pool.Rent(i % 2 == 0 ? 64 : 300);
        }

        // Returned out of address order, so the depots do not hold them sorted already.
        new Random(7).Shuffle(owners);
        foreach (IMemoryOwner<byte> owner in owners)
        {
            owner.Dispose();
        }

        (SlabHeap heap, SizeClassDepot<NativeMemoryManager>[] depots) = SmallTierHeap(pool);
        int claimedWhenLocking = 0;
        string? unsorted = null;
        heap.BeforeTrimTakesTheLock = () =>
        {
            Assert.False(Monitor.IsEntered(HeapLock(heap)), "the hook runs before the lock is taken");
            for (int classIndex = 0; classIndex < depots.Length; classIndex++)
            {
                Span<NativeMemoryManager> claimed = depots[classIndex].Claimed;
                claimedWhenLocking += claimed.Length;
                for (int i = 1; i < claimed.Length && unsorted is null; i++)
                {
                    if (claimed[i - 1].Address > claimed[i].Address)
                    {
                        unsorted = $"class {classIndex}: block {i - 1} at {claimed[i - 1].Address:x} before block {i} at {claimed[i].Address:x}";
                    }
                }
            }
        };

        pool.Trim();

        Assert.True(claimedWhenLocking >= owners.Length, $"the trim had claimed {claimedWhenLocking} of the {owners.Length} cached blocks when it took the lock");
        Assert.True(unsorted is null, $"the trim took the heap's lock with its claimed blocks unsorted ({unsorted}): it sorts them while holding the lock every carving rent needs");
        Assert.Equal(0, pool.GetStatistics().Small.BytesRetained);
    }

    private static (SlabHeap Heap, SizeClassDepot<NativeMemoryManager>[] Depots) SmallTierHeap(TieredMemoryPool pool)
    {
        object tier = typeof(TieredMemoryPool).GetField("_small", Private)!.GetValue(pool)!;
        Type slabTier = tier.GetType().BaseType!;
        var heap = (SlabHeap)slabTier.GetField("_heap", Private)!.GetValue(tier)!;
        var depots = (SizeClassDepot<NativeMemoryManager>[])slabTier.GetField("_depots", Private)!.GetValue(tier)!;
        return (heap, depots);
    }

    private static object HeapLock(SlabHeap heap) => typeof(SlabHeap).GetField("_lock", Private)!.GetValue(heap)!;
}
