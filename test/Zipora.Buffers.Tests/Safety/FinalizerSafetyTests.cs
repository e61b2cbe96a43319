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
    private const int Attempts = 4;
    private const int Pairs = 4;
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
        // Each wrapper and its block become unreachable together, and their finalizers run in an order the runtime
        // chooses; when the wrapper's runs first it disposes the owner, so the block is back in the pool when its own
        // finalizer runs. Several pairs, made in both orders, make that likely; then every block found again is leaked.
        int conclusive = 0;
        for (int attempt = 1; attempt <= Attempts; attempt++)
        {
            var time = new FakeTimeProvider();
            TieredMemoryPoolOptions options = SafetyCases.Options(mode, time);
            options.ThreadCacheMaxBuffers = 0;
            using var pool = new TieredMemoryPool(options);
            List<OwnerRange> blocks = DropWrappersThatDisposeTheirOwnersWhenFinalized(pool, size, Pairs);
            SafetyCases.CollectEverything();
            SafetyCases.Advance(time, s_pastTheQuarantine);
            long reclaimed = pool.GetStatistics().LeaksReclaimed;

            List<IMemoryOwner<byte>> others = RentUntilTheBlocksAndLeakThem(pool, size, blocks, out int found);
            SafetyCases.CollectEverything();
            conclusive += found;
            Assert.True(
                reclaimed + found == pool.GetStatistics().LeaksReclaimed,
                $"attempt {attempt}: of {found} owners leaked of blocks that went back to the pool through a finalizer, {pool.GetStatistics().LeaksReclaimed - reclaimed} were reclaimed: the memory of the others is lost");
            others.ForEach(static owner => owner.Dispose());
        }

        Assert.True(conclusive > 0, $"in {Attempts} attempts no block came back to be leaked again");
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
        SafetyCases.Advance(time, s_pastTheQuarantine);
        var renters = new List<IMemoryOwner<byte>>();
        IMemoryOwner<byte>? newRenter = RentedAgain.Find(pool, size, block, renters, Probes);

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

    /// <summary>
    /// Drops wrappers whose finalizers dispose their owners. Finalizers of objects that die together tend to run in
    /// the order the objects were registered once they have left generation 0, so half the wrappers are made before
    /// their blocks (and collections between promote them) and half after.
    /// </summary>
    [MethodImpl(MethodImplOptions.NoInlining)]
    private static List<OwnerRange> DropWrappersThatDisposeTheirOwnersWhenFinalized(TieredMemoryPool pool, int size, int pairs)
    {
        var blocks = new List<OwnerRange>();
        for (int i = 0; i < pairs; i++)
        {
            DisposesWhenFinalized? wrapper = i % 2 == 0 ? new DisposesWhenFinalized() : null;
            GC.Collect();
            IMemoryOwner<byte> owner = pool.Rent(size);
            GC.Collect();
            wrapper ??= new DisposesWhenFinalized();
            wrapper.Owner = owner;
            blocks.Add(SafetyCases.RangeOf(owner));
        }

        return blocks;
    }

    /// <summary>Rents the size until each of <paramref name="blocks"/> has come back, and drops those owners without dispose.</summary>
    [MethodImpl(MethodImplOptions.NoInlining)]
    private static List<IMemoryOwner<byte>> RentUntilTheBlocksAndLeakThem(TieredMemoryPool pool, int size, List<OwnerRange> blocks, out int found)
    {
        var others = new List<IMemoryOwner<byte>>();
        found = 0;
        for (int i = 0; i < Probes && found < blocks.Count; i++)
        {
            IMemoryOwner<byte> owner = pool.Rent(size);
            if (blocks.Contains(SafetyCases.RangeOf(owner)))
            {
                found++;
            }
            else
            {
                others.Add(owner);
            }
        }

        return others;
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
    private sealed class DisposesWhenFinalized
    {
        ~DisposesWhenFinalized() => Owner?.Dispose();

        public IMemoryOwner<byte>? Owner { get; set; }
    }

    /// <summary>A finalizer that keeps its owner for later (object pools built on resurrection do this).</summary>
    private sealed class ResurrectsWhenFinalized(IMemoryOwner<byte> owner, int id)
    {
        ~ResurrectsWhenFinalized() => s_resurrected[id] = owner;
    }
}
