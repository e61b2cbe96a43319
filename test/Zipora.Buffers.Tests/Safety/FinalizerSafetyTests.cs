using System;
using System.Buffers;
using System.Collections.Concurrent;
using System.Collections.Generic;
using System.Runtime.CompilerServices;
using Microsoft.Extensions.Time.Testing;

namespace Zipora.Buffers.Tests;

/// <summary>
/// Leaks that involve other objects' finalizers: a <see cref="Memory{T}"/> still held keeps its block, an owner
/// disposed by a finalizer does not stop later leaks of its block being reclaimed, and an owner resurrected by a
/// finalizer never shares its block with the next renter.
/// </summary>
/// <remarks>Forces full garbage collections, so it runs alone.</remarks>
[Collection(nameof(HugepageTests))]
public sealed class FinalizerSafetyTests
{
    private const int Probes = 64;
    // Past a quarantine (released at the tick one delay after the leak) and before the tier, idle since, trims the
    // block away (at the tick a delay after it first saw the tier idle): the block is in the tier's cache then.
    private static readonly TimeSpan s_pastTheQuarantine = TimeSpan.FromSeconds(11);
    private static readonly ConcurrentDictionary<int, IMemoryOwner<byte>> s_resurrected = new();
    private static int s_nextWrapper;

    [Theory]
    [MemberData(nameof(SafetyCases.SizesInEveryMode), MemberType = typeof(SafetyCases))]
    public void AMemoryKeptFromAnUndisposedOwnerKeepsItsBlock(int size, OwnerMode mode)
    {
        using TieredMemoryPool pool = SafetyCases.Pool(mode);
        Memory<byte> kept = RentAndDropTheOwner(pool, size);
        OwnerRange block = RangeOf(kept);
        long before = pool.GetStatistics().LeaksReclaimed;
        SafetyCases.CollectEverything();

        Assert.Equal(before, pool.GetStatistics().LeaksReclaimed);
        var probes = new List<IMemoryOwner<byte>>();
        for (int i = 0; i < Probes; i++)
        {
            probes.Add(pool.Rent(size));
        }

        foreach (IMemoryOwner<byte> probe in probes)
        {
            Assert.False(SafetyCases.RangeOf(probe).Overlaps(block), $"the block {block} of a Memory still in use was handed to a new renter");
        }

        Assert.True(kept.Span.IndexOfAnyExcept((byte)0x77) < 0, "the memory of a Memory still in use changed");
        probes.ForEach(static probe => probe.Dispose());
    }

    [Theory]
    [MemberData(nameof(SafetyCases.TiersInBothOwnerModes), MemberType = typeof(SafetyCases))]
    public void AnOwnerDisposedByAFinalizerDoesNotStopALaterLeakOfItsBlockBeingReclaimed(int size, OwnerMode mode)
    {
        var time = new FakeTimeProvider();
        using TieredMemoryPool pool = SafetyCases.Pool(mode, time);

        // The wrapper and the block become unreachable together: their finalizers run in either order.
        OwnerRange first = DropAWrapperThatDisposesItsOwnerWhenFinalized(pool, size);
        SafetyCases.CollectEverything();
        time.Advance(s_pastTheQuarantine);
        long reclaimed = pool.GetStatistics().LeaksReclaimed;

        OwnerRange second = SafetyCases.LeakOne(pool, size);
        Assert.Equal(first, second);
        SafetyCases.CollectEverything();

        Assert.Equal(reclaimed + 1, pool.GetStatistics().LeaksReclaimed);
    }

    [Theory]
    [MemberData(nameof(SafetyCases.TiersInFreshOwnerModes), MemberType = typeof(SafetyCases))]
    public void AnOwnerResurrectedByAFinalizerNeverSharesItsBlockWithTheNextRenter(int size, OwnerMode mode)
    {
        var time = new FakeTimeProvider();
        using TieredMemoryPool pool = SafetyCases.Pool(mode, time);
        int id = DropAWrapperThatResurrectsItsOwner(pool, size, out OwnerRange block);
        SafetyCases.CollectEverything();
        Assert.True(s_resurrected.TryRemove(id, out IMemoryOwner<byte>? resurrected), "the wrapper's finalizer did not run");

        // The owner is alive again and was never disposed. Whatever its block's finalizer did meanwhile, let any
        // quarantine run out (a delay plus a tick), then rent the size until the block comes back, if it does.
        time.Advance(s_pastTheQuarantine);
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

        if (newRenter is null)
        {
            // The block was not handed out again. The resurrected owner may still reach it or throw, but its dispose
            // must not give the block to two renters.
            resurrected.Dispose();
            IMemoryOwner<byte> first = pool.Rent(size);
            IMemoryOwner<byte> second = pool.Rent(size);
            renters.Add(first);
            renters.Add(second);
            SafetyCases.AssertDisjoint([first, second], "after the resurrected owner's dispose");
        }
        else
        {
            // The block is someone else's now: the resurrected owner must not reach it, nor give it back.
            SafetyCases.Stamp(newRenter, 31, "new renter");
            bool reaches = Record.Exception(() => resurrected.Memory) is null;
            resurrected.Dispose();
            IMemoryOwner<byte> next = pool.Rent(size);
            renters.Add(next);
            bool handedOutAgain = SafetyCases.RangeOf(next).Overlaps(block);
            Assert.False(
                reaches || handedOutAgain,
                $"a resurrected owner, never disposed, shares its block {block} with the renter the pool gave it to after reclaiming it: "
                + $"its Memory {(reaches ? "still reaches the block" : "throws")}, and its dispose {(handedOutAgain ? "returned the block, which the next rent got while the new renter holds it" : "was ignored")}");
            Assert.True(SafetyCases.HasStamp(newRenter, 31, "new renter"), "the new renter's data changed");
        }

        renters.ForEach(static renter => renter.Dispose());
    }

    [MethodImpl(MethodImplOptions.NoInlining)]
    private static Memory<byte> RentAndDropTheOwner(TieredMemoryPool pool, int size)
    {
        Memory<byte> memory = pool.Rent(size).Memory;
        memory.Span.Fill(0x77);
        return memory;
    }

    [MethodImpl(MethodImplOptions.NoInlining)]
    private static OwnerRange DropAWrapperThatDisposesItsOwnerWhenFinalized(TieredMemoryPool pool, int size)
    {
        IMemoryOwner<byte> owner = pool.Rent(size);
        _ = new DisposesWhenFinalized(owner);
        return SafetyCases.RangeOf(owner);
    }

    [MethodImpl(MethodImplOptions.NoInlining)]
    private static int DropAWrapperThatResurrectsItsOwner(TieredMemoryPool pool, int size, out OwnerRange block)
    {
        IMemoryOwner<byte> owner = pool.Rent(size);
        block = SafetyCases.RangeOf(owner);
        int id = System.Threading.Interlocked.Increment(ref s_nextWrapper);
        _ = new ResurrectsWhenFinalized(owner, id);
        return id;
    }

    private static unsafe OwnerRange RangeOf(Memory<byte> memory)
    {
        fixed (byte* pointer = memory.Span)
        {
            return new OwnerRange((nint)pointer, memory.Length);
        }
    }

    /// <summary>Sloppy but common: a finalizer that disposes the owner it holds.</summary>
    private sealed class DisposesWhenFinalized(IMemoryOwner<byte> owner)
    {
        ~DisposesWhenFinalized() => owner.Dispose();
    }

    /// <summary>A finalizer that keeps its owner for later (object pools built on resurrection do this).</summary>
    private sealed class ResurrectsWhenFinalized(IMemoryOwner<byte> owner, int id)
    {
        ~ResurrectsWhenFinalized() => s_resurrected[id] = owner;
    }
}
