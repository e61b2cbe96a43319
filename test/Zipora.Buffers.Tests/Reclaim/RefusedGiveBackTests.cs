using System;
using System.Buffers;
using System.Linq;
using System.Reflection;
using Microsoft.Extensions.Time.Testing;
using Zipora.Buffers.Native;

namespace Zipora.Buffers.Tests;

/// <summary>
/// A slab trim lets go of its wholly free slabs under the heap's lock, each begun as a release under way (a rent at
/// <c>MaxBytesInUse</c> waits for it), and gives them back after: the give-back of the first, a middle or the last
/// may be refused by the OS (locked pages), fail for want of managed memory (a refusal too) or throw (a custom
/// allocator's bug, passed on, with the slabs behind it listed untried). Whichever, every release begun ends, and
/// every slab is unmapped once its delay is over after the pool's dispose: none is left let go of and never given back.
/// </summary>
public sealed class RefusedGiveBackTests
{
    private const BindingFlags Private = BindingFlags.NonPublic | BindingFlags.Instance;
    private const int CachedSize = 4096;
    private const int Cached = 300;

    public enum Failure
    {
        Refused,
        OutOfMemory,
        Throws,
    }

    public enum Which
    {
        First,
        Middle,
        Last,
    }

    public static TheoryData<Failure, Which> Cases()
    {
        var cases = new TheoryData<Failure, Which>();
        foreach (Failure failure in Enum.GetValues<Failure>())
        {
            foreach (Which which in Enum.GetValues<Which>())
            {
                cases.Add(failure, which);
            }
        }

        return cases;
    }

    [Theory]
    [MemberData(nameof(Cases))]
    public void EveryReleaseBegunEndsAndEverySlabIsUnmappedAfterItsDelay(Failure failure, Which which)
    {
        int slabs = SlabsLetGoOf();
        Assert.True(slabs >= 3, $"the trim let go of {slabs} slabs: no first, middle and last");
        int failing = which switch
        {
            Which.First => 0,
            Which.Middle => slabs / 2,
            _ => slabs - 1,
        };

        var time = new FakeTimeProvider();
        var allocator = new LiveMappingsAllocator();
        var pool = new TieredMemoryPool(allocator.PoolOptions(OwnerMode.Default, time));
        FillAndReturn(pool);
        int drops = 0;
        allocator.AdviseOrRefuse = _ => failure != Failure.Refused || drops++ != failing;
        allocator.BeforeAdvise = advice =>
        {
            if (failure != Failure.Refused && advice == PageAdvice.DontNeed && drops++ == failing)
            {
                throw failure == Failure.OutOfMemory ? SlabTrimFault.OutOfMemory : new InvalidOperationException("a custom allocator's bug");
            }
        };

        if (failure == Failure.Throws)
        {
            _ = Assert.Throws<InvalidOperationException>(pool.Trim);
        }
        else
        {
            pool.Trim();
        }

        allocator.AdviseOrRefuse = null;
        allocator.BeforeAdvise = null;
        TieredMemoryPoolStatistics trimmed = pool.GetStatistics();
        Assert.True(BytesUnderWay(pool) == 0, $"{BytesUnderWay(pool)} bytes still counted as on their way out after the trim\n{trimmed}");
        Assert.True(SafetyCases.NegativeFigures(trimmed) is null, $"{SafetyCases.NegativeFigures(trimmed)}\n{trimmed}");
        Assert.True(trimmed.Medium.BytesRetained == 0, $"slabs let go of still counted as retained\n{trimmed}");

        // A slab whose pages stayed counts as evicted only at its unmap: till then it is awaiting release.
        Assert.True(trimmed.Medium.BytesAllocated - trimmed.Medium.BytesEvicted <= trimmed.BytesAwaitingRelease, $"slabs let go of are neither gone nor awaiting release\n{trimmed}");

        // The pool serves on: the slabs listed as refused wait out their delay (or are reused), and the pool's dispose
        // then leaves nothing mapped.
        FillAndReturn(pool);
        pool.Dispose();
        SafetyCases.AssertDrainedThreeDelaysLater(pool, time);
        allocator.AssertNoneLive($"three delays after the pool's dispose ({failure}, slab {failing} of {slabs})");
    }

    private static void FillAndReturn(TieredMemoryPool pool)
    {
        IMemoryOwner<byte>[] owners = [.. Enumerable.Range(0, Cached).Select(_ => pool.Rent(CachedSize))];
        Array.ForEach(owners, owner => owner.Memory.Span.Fill(0xC3));
        Array.ForEach(owners, owner => owner.Dispose());
    }

    /// <summary>How many slabs the trim lets go of in this test's pool: one page drop each (no slab is swept).</summary>
    private static int SlabsLetGoOf()
    {
        var allocator = new LiveMappingsAllocator();
        using var pool = new TieredMemoryPool(allocator.PoolOptions(OwnerMode.Default, new FakeTimeProvider()));
        FillAndReturn(pool);
        int drops = 0;
        allocator.BeforeAdvise = advice => drops += advice == PageAdvice.DontNeed ? 1 : 0;
        pool.Trim();
        return drops;
    }

    private static long BytesUnderWay(TieredMemoryPool pool)
    {
        object pages = typeof(TieredMemoryPool).GetField("_pages", Private)!.GetValue(pool)!;
        return (long)pages.GetType().GetField("_bytesUnderWay", Private)!.GetValue(pages)!;
    }
}
