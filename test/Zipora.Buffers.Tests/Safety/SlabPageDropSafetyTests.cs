using System;
using System.Buffers;
using System.Collections.Generic;
using System.Runtime.CompilerServices;
using Microsoft.Extensions.Time.Testing;

namespace Zipora.Buffers.Tests;

/// <summary>
/// Deterministic attacks on the page drops of slab trims: a leaked block, finalized into quarantine, sits between
/// free blocks on pages a trim would otherwise drop (a Span of the leaked owner may still be reading it); and a pool
/// whose free pages cannot be dropped (advice refused) or are pinned by live blocks, over its retained cap, must not
/// walk and advise its free blocks again at every idle tick.
/// </summary>
[Collection(nameof(HugepageTests))]
public sealed class SlabPageDropSafetyTests
{
    private const byte LeakedPattern = 0xC3;

    /// <summary>Sizes whose blocks straddle pages (640, 1008), share one (112, 2 KB) or fill one (4 KB).</summary>
    public static TheoryData<int, OwnerMode> SizesAndModes => SafetyCases.SizesInBothModes(100, 600, 1000, 1500, 4096);

    [Theory]
    [MemberData(nameof(SizesAndModes))]
    public void AQuarantinedBlockBetweenFreeBlocksKeepsItsPagesThroughTrimsAndIdleTicks(int size, OwnerMode mode)
    {
        var time = new FakeTimeProvider();
        using TieredMemoryPool pool = SafetyCases.Pool(mode, time);
        (List<IMemoryOwner<byte>> neighbours, OwnerRange leaked) = RentAndLeakOneInTheMiddle(pool, size, 96);
        neighbours.ForEach(static owner => owner.Dispose());
        SafetyCases.CollectEverything();
        Assert.Equal(1, pool.GetStatistics().LeaksReclaimed);

        pool.Trim();
        AssertIntact(leaked, "after a trim with every neighbour free");
        TieredMemoryPoolStatistics trimmed = pool.GetStatistics();
        Assert.True(trimmed.Small.BytesEvicted + trimmed.Medium.BytesEvicted > 0, "the trim gave nothing back around the leaked block, so the test proves nothing");
        SafetyCases.Advance(time, TimeSpan.FromSeconds(9));
        pool.Trim();
        AssertIntact(leaked, "9 s of idle ticks and a second trim later");
        Assert.True(pool.GetStatistics().BytesQuarantined >= leaked.Length, "the leaked block is no longer counted in quarantine");

        // Out of quarantine the block is the pool's again: trims may now drop it, and it serves rents as before.
        SafetyCases.Advance(time, SafetyCases.IdleDelay * 2);
        pool.Trim();
        TieredMemoryPoolStatistics statistics = pool.GetStatistics();
        Assert.Equal(0, statistics.BytesQuarantined);
        Assert.Equal(0, statistics.BytesInUse);
        var again = new List<IMemoryOwner<byte>>();
        for (int i = 0; i < neighbours.Count + 1; i++)
        {
            IMemoryOwner<byte> owner = pool.Rent(size);
            owner.Memory.Span.Fill((byte)(i + 1));
            again.Add(owner);
        }

        SafetyCases.AssertDisjoint(again, "the leaked block and its neighbours rented again");
        again.ForEach(static owner => owner.Dispose());
    }

    public static TheoryData<OwnerMode> OwnerModes => [OwnerMode.Default, OwnerMode.ReuseOwners];

    /// <summary>
    /// The page-drop storm with owners leaking: their blocks are finalized into quarantine while trims and idle ticks
    /// run, come back to the pool a delay later and are rented again. No live block loses its pattern, every leak is
    /// reclaimed, and three delays after the storm nothing is in use, in quarantine or waiting to be unmapped.
    /// </summary>
    [Theory]
    [MemberData(nameof(OwnerModes))]
    public void LeakedOwnersFinalizedDuringTrimsAndTicksNeverCostALiveBlockItsPagesAndAreAllReclaimed(OwnerMode mode)
    {
        var time = new FakeTimeProvider();
        using TieredMemoryPool pool = SafetyCases.Pool(mode, time);
        var storm = new PageDropStormSafetyTests.PatternStorm(pool, time, disposeTwice: mode != OwnerMode.ReuseOwners) { LeakPercent = 4 };
        storm.Run(workers: 3, TimeSpan.FromMilliseconds(500), ranEnough: () => storm.Leaks > 20);

        Assert.True(storm.Failures.IsEmpty, string.Join(Environment.NewLine, storm.Failures));
        Assert.True(storm.Leaks > 20, $"only {storm.Leaks} owners leaked");
        SafetyCases.CollectEverything();
        Assert.Equal(storm.Leaks, pool.GetStatistics().LeaksReclaimed);
        SafetyCases.AssertDrainedThreeDelaysLater(pool, time);
    }

    /// <summary>Straddling, shared-page and whole-page sizes in every mode that promises a fresh owner per rent.</summary>
    public static TheoryData<int, OwnerMode> SizesInFreshOwnerModes
    {
        get
        {
            var data = new TheoryData<int, OwnerMode>();
            foreach (int size in new[] { 100, 600, 1500, 4096 })
            {
                foreach (OwnerMode mode in SafetyCases.FreshOwnerModes)
                {
                    data.Add(size, mode);
                }
            }

            return data;
        }
    }

    /// <summary>
    /// Owners disposed, their blocks' pages dropped by a trim, the blocks rented again and filled, then the first owners
    /// disposed again (stale): the stale disposes return nothing, so the next trims see the blocks live and keep their pages.
    /// </summary>
    [Theory]
    [MemberData(nameof(SizesInFreshOwnerModes))]
    public void StaleDisposesAfterTheBlocksWereDroppedAndRentedAgainLeaveTheNewRentersPagesAlone(int size, OwnerMode mode)
    {
        using TieredMemoryPool pool = SafetyCases.Pool(mode, new FakeTimeProvider());
        const int Count = 200;
        var first = new List<IMemoryOwner<byte>>();
        for (int i = 0; i < Count; i++)
        {
            IMemoryOwner<byte> owner = pool.Rent(size);
            owner.Memory.Span.Fill(0x22);
            first.Add(owner);
        }

        // One kept, so its slab stays and the others' pages are dropped rather than unmapped.
        IMemoryOwner<byte> anchor = first[Count / 2];
        first.RemoveAt(Count / 2);
        first.ForEach(static owner => owner.Dispose());
        pool.Trim();

        var second = new List<IMemoryOwner<byte>>();
        for (int i = 0; i < Count - 1; i++)
        {
            IMemoryOwner<byte> owner = pool.Rent(size);
            owner.Memory.Span.Fill((byte)((i % 200) + 40));
            second.Add(owner);
        }

        first.ForEach(static owner => owner.Dispose());
        pool.Trim();
        pool.Trim();

        for (int i = 0; i < second.Count; i++)
        {
            int wrong = second[i].Memory.Span.IndexOfAnyExcept((byte)((i % 200) + 40));
            Assert.True(wrong < 0, $"renter {i} ({SafetyCases.RangeOf(second[i])}) lost its contents at byte {wrong} after the stale disposes and two trims");
        }

        Assert.True(anchor.Memory.Span.IndexOfAnyExcept((byte)0x22) < 0, "the anchor block lost its contents");
        // The stale disposes returned nothing: exactly the anchor and the second renters are in use.
        TierStatistics tier = FragmentedLayout.TierOf(pool.GetStatistics(), size);
        Assert.Equal((long)Count * anchor.Memory.Length, tier.BytesInUse);
        Assert.Equal(tier.Rents - Count, tier.Returns);
        second.ForEach(static owner => owner.Dispose());
        anchor.Dispose();
        Assert.Equal(0, pool.GetStatistics().BytesInUse);
    }

    /// <summary>Whether each tick of a pool at rest over its cap advises again: with advice refused, and with it accepted but live blocks pinning the rest.</summary>
    public static TheoryData<bool> AdviceRefused => [true, false];

    [Theory]
    [MemberData(nameof(AdviceRefused))]
    public void APoolAtRestOverItsRetainedCapDoesNotAdviseOrEvictAgainAtEveryTick(bool refuseAdvice)
    {
        var time = new FakeTimeProvider();
        var allocator = new ScriptedPageAllocator { RefuseAdvice = refuseAdvice };
        TieredMemoryPoolOptions options = SafetyCases.Options(OwnerMode.Default, time);
        options.PageAllocator = allocator;
        options.MaxRetainedBytes = 0;
        using var pool = new TieredMemoryPool(options);

        var live = new List<IMemoryOwner<byte>>();
        var free = new List<IMemoryOwner<byte>>();
        foreach (int size in new[] { 600, 1500, 5000 })
        {
            for (int i = 0; i < 300; i++)
            {
                IMemoryOwner<byte> owner = pool.Rent(size);
                owner.Memory.Span.Fill((byte)i);
                (i % 5 == 2 ? live : free).Add(owner);
            }
        }

        free.ForEach(static owner => owner.Dispose());

        // The first ticks see the free memory over the cap and trim it; from then on the pool is at rest.
        SafetyCases.Advance(time, SafetyCases.IdleDelay * 3);
        TieredMemoryPoolStatistics settled = pool.GetStatistics();
        int adviceSettled = allocator.Advice.Count;
        SafetyCases.Advance(time, SafetyCases.IdleDelay * 5);
        TieredMemoryPoolStatistics later = pool.GetStatistics();

        Assert.Equal(adviceSettled, allocator.Advice.Count);
        Assert.Equal(settled.Small.BytesEvicted, later.Small.BytesEvicted);
        Assert.Equal(settled.Medium.BytesEvicted, later.Medium.BytesEvicted);
        Assert.Equal(settled.Small.BytesRetained, later.Small.BytesRetained);
        Assert.Equal(settled.Medium.BytesRetained, later.Medium.BytesRetained);
        Assert.Equal(settled.Small.BytesFragmented, later.Small.BytesFragmented);
        Assert.Equal(settled.Medium.BytesFragmented, later.Medium.BytesFragmented);
        if (!refuseAdvice)
        {
            Assert.True(later.Small.BytesFragmented + later.Medium.BytesFragmented > 0, "live blocks pin no free bytes, so the test proves nothing");
        }

        // Every live block was filled with its index within its size (2, 7, 12, ...: never zero, what a dropped page reads as).
        for (int i = 0; i < live.Count; i++)
        {
            byte expected = (byte)(((i % 60) * 5) + 2);
            Assert.True(live[i].Memory.Span.IndexOfAnyExcept(expected) < 0, $"live block {i} ({SafetyCases.RangeOf(live[i])}) lost its contents");
        }

        live.ForEach(static owner => owner.Dispose());
    }

    /// <summary>Rents <paramref name="count"/> blocks, fills the one in the middle and drops its owner; returns the others.</summary>
    [MethodImpl(MethodImplOptions.NoInlining)]
    private static (List<IMemoryOwner<byte>> Others, OwnerRange Leaked) RentAndLeakOneInTheMiddle(TieredMemoryPool pool, int size, int count)
    {
        var others = new List<IMemoryOwner<byte>>();
        OwnerRange leaked = default;
        for (int i = 0; i < count; i++)
        {
            if (i == count / 2)
            {
                leaked = LeakOne(pool, size);
                continue;
            }

            IMemoryOwner<byte> owner = pool.Rent(size);
            owner.Memory.Span.Fill(0x11);
            others.Add(owner);
        }

        return (others, leaked);
    }

    [MethodImpl(MethodImplOptions.NoInlining)]
    private static OwnerRange LeakOne(TieredMemoryPool pool, int size)
    {
        IMemoryOwner<byte> owner = pool.Rent(size);
        owner.Memory.Span.Fill(LeakedPattern);
        return SafetyCases.RangeOf(owner);
    }

    private static unsafe void AssertIntact(OwnerRange leaked, string when)
    {
        Assert.True(ProcessMappings.IsMapped(leaked.Start, leaked.Length), $"{when}: the quarantined block {leaked} is no longer mapped");
        var span = new ReadOnlySpan<byte>((void*)leaked.Start, leaked.Length);
        int wrong = span.IndexOfAnyExcept(LeakedPattern);
        Assert.True(wrong < 0, $"{when}: the quarantined block {leaked} lost its contents at byte {wrong} (a page under it was dropped)");
    }
}
