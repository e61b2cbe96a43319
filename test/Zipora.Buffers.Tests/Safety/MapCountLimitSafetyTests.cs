using System;
using System.Buffers;
using System.Collections.Generic;
using System.Linq;
using Microsoft.Extensions.Time.Testing;
using Zipora.Buffers.Native;

namespace Zipora.Buffers.Tests;

/// <summary>
/// The pool against the kernel's real <c>vm.max_map_count</c>, reached by the process itself (<see cref="MapEntryHog"/>):
/// rents either work or throw the documented exception, no byte goes to two owners, an unmap the kernel refuses is
/// counted and done once entries are free, and nothing the pool mapped is left in <c>/proc/self/maps</c>.
/// </summary>
public sealed class MapCountLimitSafetyTests
{
    private const int LargeSize = 100_000;
    private const int RegionsRented = 8;
    private const int HugeSize = 3_000_000;
    private const int AwayFromTheLimit = int.MaxValue;

    // The 112 KB class of a 100,000-byte rent, mapped whole.
    private const int LargeRegionBytes = 114_688;

    private static readonly int[] s_margins = [-1, 0, 1, 2, 5, 20];

    /// <summary>
    /// What the runtime itself needs to live at the limit: its write-xor-execute double mapping fails to release a
    /// view there and ends the process ("Releasing the double mapped memory failed"), and code compiled at the limit
    /// (a tier-up, say) needs new stub pages and ends it too (an uncaught <c>Exception*</c> from a refused mprotect).
    /// Every method runs once away from the limit, fully optimized, and is never compiled again.
    /// </summary>
    private static readonly (string Name, string Value)[] s_runtimeAtTheLimit = [("DOTNET_EnableWriteXorExecute", "0"), ("DOTNET_TieredCompilation", "0")];

    [Fact]
    public void EveryTierRentsOrRefusesAtEachMarginAndGivesEverythingBackOnceEntriesAreFree()
    {
        Skip.Unless(MapEntryHog.CanRun, "needs Linux's /proc/self/maps and a vm.max_map_count of at most 2^20");
        if (IsolatedProcess.RunsElsewhere(typeof(MapCountLimitSafetyTests), nameof(EveryTierRentsOrRefusesAtEachMarginAndGivesEverythingBackOnceEntriesAreFree), s_runtimeAtTheLimit))
        {
            return;
        }

        _ = AheadOfTheLimit.CompileAssembliesOf(typeof(TieredMemoryPool), typeof(PageAllocator), typeof(MapEntryHog));

        int before = MapEntryHog.EntriesNow();
        using var hog = new MapEntryHog();

        // Once away from the limit, so that every method the pass runs is compiled before the process is at it.
        EveryTierAtEachMargin(hog, atLimit: false);
        EveryTierAtEachMargin(hog, atLimit: true);
        TestContext.Current.SendDiagnosticMessage($"process had {before} entries before the hog, limit {MapEntryHog.MaxMapCount}");
    }

    private static void EveryTierAtEachMargin(MapEntryHog hog, bool atLimit)
    {
        var allocator = new LiveMappingsAllocator();
        var time = new FakeTimeProvider();
        foreach (OwnerMode mode in SafetyCases.BothOwnerModes)
        {
            var pool = new TieredMemoryPool(allocator.PoolOptions(mode, time));
            var live = new List<IMemoryOwner<byte>>();
            var refusals = new List<string>();
            int rents = 0;
            foreach (int margin in s_margins)
            {
                foreach (int size in SafetyCases.OneSizePerTier)
                {
                    for (int i = 0; i < 3; i++)
                    {
                        rents++;
                        IMemoryOwner<byte>? owner = null;
                        Exception? refused = null;
                        Action rent = () => refused = Record.Exception(() => owner = pool.Rent(size));
                        if (atLimit)
                        {
                            hog.AtMargin(margin, rent);
                        }
                        else
                        {
                            rent();
                        }

                        if (refused is not null)
                        {
                            Assert.True(refused is InsufficientMemoryException && refused.Message.Contains(TierOf(size), StringComparison.Ordinal), $"{mode}, margin {margin}, {size} bytes: a refused rent should throw InsufficientMemoryException naming the {TierOf(size)} tier, not {refused}");
                            refusals.Add($"{size}@{margin}");
                            continue;
                        }

                        live.Add(owner!);
                        SafetyCases.Stamp(owner!, live.Count, $"{mode} at margin {margin}");
                    }
                }

                SafetyCases.AssertDisjoint(live, $"{mode} at margin {margin}");
                SafetyCases.AssertStamps(live, [.. Enumerable.Range(1, live.Count).Select(static i => (long)i)], $"{mode} at margin {margin}");
            }

            // Half go back, and the pool is trimmed and ticked at the limit.
            Action letHalfGo = () =>
            {
                for (int i = 0; i < live.Count; i += 2)
                {
                    live[i].Dispose();
                }

                pool.Trim();
                SafetyCases.Advance(time, SafetyCases.IdleDelay * 2);
                pool.Trim();
                SafetyCases.Advance(time, SafetyCases.IdleDelay * 2);
            };
            if (atLimit)
            {
                hog.AtMargin(0, letHalfGo);
            }
            else
            {
                letHalfGo();
            }

            TieredMemoryPoolStatistics trimmed = pool.GetStatistics();
            List<IMemoryOwner<byte>> kept = [.. live.Where(static (_, i) => i % 2 == 1)];
            SafetyCases.AssertDisjoint(kept, $"{mode} after trims at the limit");
            SafetyCases.AssertStamps(kept, [.. Enumerable.Range(1, live.Count).Where(static i => i % 2 == 0).Select(static i => (long)i)], $"{mode} after trims at the limit");

            // The rest go back and the pool is disposed at the limit; once entries are free, everything goes.
            Action disposeAll = () =>
            {
                kept.ForEach(static owner => owner.Dispose());
                pool.Dispose();
            };
            if (atLimit)
            {
                hog.AtMargin(0, disposeAll);
                hog.GiveBack(int.MaxValue);
            }
            else
            {
                disposeAll();
            }

            SafetyCases.AssertDrainedThreeDelaysLater(pool, time);
            TieredMemoryPoolStatistics drained = pool.GetStatistics();
            allocator.AssertNoneLive($"{mode}: the pool disposed and drained once entries were free");
            Assert.True(Strays.Bytes == 0 && Strays.AbandonedBytes == 0, $"{mode}: strays left: {Strays.Bytes} bytes kept, {Strays.AbandonedBytes} abandoned");
            TestContext.Current.SendDiagnosticMessage($"{mode}{(atLimit ? " at the limit" : string.Empty)}: {rents} rents, refused {string.Join(' ', refusals)}; after trims {trimmed.UnmapFailures} unmaps refused, {trimmed.BytesAwaitingRelease} bytes awaiting; drained {drained.UnmapFailures} refused, {drained.MmapCalls} map calls, {drained.MunmapCalls} unmaps, {drained.FallbackAllocations} fallbacks");
        }
    }

    private static string TierOf(int size) => size switch
    {
        <= 1024 => "small",
        <= 16 * 1024 => "medium",
        <= 2 * 1024 * 1024 => "large",
        _ => "huge",
    };

    [Fact]
    public void ARegionTheKernelRefusesToUnmapAtTheLimitStaysMappedCountedAndGoesOnceEntriesAreFree()
    {
        Skip.Unless(MapEntryHog.CanRun, "needs Linux's /proc/self/maps and a vm.max_map_count of at most 2^20");
        if (IsolatedProcess.RunsElsewhere(typeof(MapCountLimitSafetyTests), nameof(ARegionTheKernelRefusesToUnmapAtTheLimitStaysMappedCountedAndGoesOnceEntriesAreFree), s_runtimeAtTheLimit))
        {
            return;
        }

        _ = AheadOfTheLimit.CompileAssembliesOf(typeof(TieredMemoryPool), typeof(PageAllocator), typeof(MapEntryHog));

        using var hog = new MapEntryHog();
        RefusedRegionUnmap(hog, atLimit: false);
        TieredMemoryPoolStatistics refused = RefusedRegionUnmap(hog, atLimit: true);
        TestContext.Current.SendDiagnosticMessage($"region unmap at the limit: {refused.UnmapFailures} refused, {refused.MunmapCalls} unmaps, {refused.MmapCalls} maps");
    }

    /// <summary>
    /// Large regions, one of them merged into one map entry with its neighbours on both sides; it goes back and is trimmed at the limit, where
    /// unmapping it would split the entry. Returns the statistics once everything was given back.
    /// </summary>
    private static TieredMemoryPoolStatistics RefusedRegionUnmap(MapEntryHog hog, bool atLimit)
    {
        var allocator = new LiveMappingsAllocator();
        var time = new FakeTimeProvider();
        var pool = new TieredMemoryPool(allocator.PoolOptions(OwnerMode.Default, time));
        var owners = new List<IMemoryOwner<byte>>();
        for (int i = 0; i < RegionsRented; i++)
        {
            owners.Add(pool.Rent(LargeSize));
            SafetyCases.Stamp(owners[i], i + 1, "a region");
        }

        // One whose neighbours the kernel merged it with on both sides (the first few land in holes between others').
        int inside = owners.FindIndex(static owner => ProcessMappings.IsStrictlyInsideOne(OwnerAddress.Of(owner), LargeRegionBytes));
        Assert.True(inside >= 0, $"of {RegionsRented} regions none shares one map entry with neighbours on both sides");
        nint middle = OwnerAddress.Of(owners[inside]);
        Action trim = () =>
        {
            owners[inside].Dispose();
            pool.Trim();
            SafetyCases.Advance(time, SafetyCases.IdleDelay * 2);
        };
        if (atLimit)
        {
            hog.AtMargin(0, trim);
        }
        else
        {
            trim();
        }

        TieredMemoryPoolStatistics trimmed = pool.GetStatistics();
        if (atLimit)
        {
            Assert.True(trimmed.UnmapFailures >= 1, $"unmapping from the middle of a map entry at the limit should be refused and counted: {trimmed}");
            Assert.True(trimmed.BytesAwaitingRelease >= LargeRegionBytes, $"a refused unmap stays counted as awaiting release: {trimmed}");
            Assert.True(ProcessMappings.IsMappedNow(middle, LargeRegionBytes), "a region whose unmap was refused is still mapped");
            hog.GiveBack(int.MaxValue);
        }

        owners.RemoveAt(inside);
        SafetyCases.AssertDisjoint(owners, "the regions beside one whose unmap was refused");
        SafetyCases.AssertStamps(owners, [.. Enumerable.Range(1, RegionsRented).Where(i => i != inside + 1).Select(static i => (long)i)], "the regions beside one whose unmap was refused");
        SafetyCases.Advance(time, SafetyCases.IdleDelay);
        TieredMemoryPoolStatistics retried = pool.GetStatistics();
        Assert.True(retried.BytesAwaitingRelease == 0, $"once entries are free the next tick unmaps what was refused: {retried}");
        Assert.False(ProcessMappings.IsMappedNow(middle, LargeRegionBytes), $"the region should be unmapped: {ProcessMappings.Describe(middle, LargeRegionBytes)}");
        owners.ForEach(static owner => owner.Dispose());
        pool.Dispose();
        SafetyCases.AssertDrainedThreeDelaysLater(pool, time);
        allocator.AssertNoneLive("the pool disposed and drained");
        TieredMemoryPoolStatistics drained = pool.GetStatistics();
        Assert.True(drained.MunmapCalls == RegionsRented && drained.UnmapFailures == trimmed.UnmapFailures, $"{RegionsRented} regions, each unmapped once, no refusal after entries were free: {drained}");
        return drained;
    }

    [Fact]
    public void AHugeBufferRentedAtTheLimitIsGivenBackToTheOSOnceItsOwnerAndThePoolAreDone()
    {
        Skip.Unless(MapEntryHog.CanRun, "needs Linux's /proc/self/maps and a vm.max_map_count of at most 2^20");
        if (IsolatedProcess.RunsElsewhere(typeof(MapCountLimitSafetyTests), nameof(AHugeBufferRentedAtTheLimitIsGivenBackToTheOSOnceItsOwnerAndThePoolAreDone), s_runtimeAtTheLimit))
        {
            return;
        }

        _ = AheadOfTheLimit.CompileAssembliesOf(typeof(TieredMemoryPool), typeof(PageAllocator), typeof(MapEntryHog));

        using var hog = new MapEntryHog();
        // Once away from the limit, so that every method the pass runs is compiled before the process is at it.
        HugeRentAtTheLimit(hog, margin: AwayFromTheLimit);
        foreach (int margin in new[] { -1, 0, 1 })
        {
            HugeRentAtTheLimit(hog, margin);
        }
    }

    /// <summary>
    /// Rents and fills a huge buffer with the process <paramref name="margin"/> entries short of the limit, returns it
    /// and disposes the pool there; once entries are free and the pool has drained, its pages must be gone from the
    /// process: neither mapped nor resident.
    /// </summary>
    private static void HugeRentAtTheLimit(MapEntryHog hog, int margin)
    {
        var allocator = new LiveMappingsAllocator();
        var time = new FakeTimeProvider();
        var pool = new TieredMemoryPool(allocator.PoolOptions(OwnerMode.Default, time));
        Action<Action> atMargin = margin == AwayFromTheLimit ? static call => call() : call => hog.AtMargin(margin, call);
        IMemoryOwner<byte>? owner = null;
        Exception? refused = null;
        atMargin(() => refused = Record.Exception(() => owner = pool.Rent(HugeSize)));
        if (refused is not null)
        {
            Assert.True(refused is InsufficientMemoryException && refused.Message.Contains("huge", StringComparison.Ordinal), $"margin {margin}: a refused huge rent should throw InsufficientMemoryException naming the huge tier, not {refused}");
            TestContext.Current.SendDiagnosticMessage($"huge rent at margin {margin}: refused ({refused.Message})");
            pool.Dispose();
            allocator.AssertNoneLive($"margin {margin}, the rent refused");
            return;
        }

        OwnerRange range = SafetyCases.RangeOf(owner!);
        owner!.Memory.Span.Fill(0x5A);
        long fallbacks = pool.GetStatistics().FallbackAllocations;
        bool native = allocator.Live().Any(mapping => mapping.Address <= range.Start && range.End <= mapping.Address + (nint)mapping.Length);
        atMargin(() =>
        {
            owner.Dispose();
            pool.Dispose();
            SafetyCases.Advance(time, SafetyCases.IdleDelay * 3);
        });
        hog.GiveBack(int.MaxValue);
        SafetyCases.AssertDrainedThreeDelaysLater(pool, time);
        allocator.AssertNoneLive($"margin {margin}");
        _ = MallocTrim(0);
        bool mapped = ProcessMappings.IsMappedNow(range.Start, range.Length);
        int resident = mapped ? ProcessMappings.ResidentPages(range.Start & ~(nint)(PageAllocator.PageSize - 1), range.Length) : 0;
        TieredMemoryPoolStatistics drained = pool.GetStatistics();
        TestContext.Current.SendDiagnosticMessage($"huge rent at margin {margin}: {(native ? "mmap" : "portable fallback")}, {fallbacks} fallbacks; afterwards mapped {mapped}, {resident} pages resident; {drained.MunmapCalls} unmaps, {drained.UnmapFailures} refused");
        Assert.True(resident == 0, $"margin {margin}: the {(native ? "mapped" : "portable fallback's")} huge buffer {range} was given back ({drained.MunmapCalls} unmaps counted, nothing awaiting release) but {resident} of its pages are still resident: {ProcessMappings.Describe(range.Start, range.Length)}");
    }

    [System.Runtime.InteropServices.DllImport("libc", EntryPoint = "malloc_trim")]
    private static extern int MallocTrim(nuint pad);

    private static StrayMappings Strays => ((UnixPageAllocator)PageAllocator.Default).Strays;
}
